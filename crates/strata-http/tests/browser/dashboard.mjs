// End-to-end test of the reports dashboard (/reports) in Debian's headless Chromium.
//
//   node dashboard.mjs <base_url> <api_key> <artifacts_dir>
//
// <base_url> serves Strata (e.g. http://127.0.0.1:8080) for a tenant with the demo HR data
// loaded; <api_key> is that tenant's key. Screenshots go to <artifacts_dir>. Exits 0 when
// every check passes, 1 with the reason on stderr otherwise. Any console error or warning, or
// uncaught page error, fails the run, except Chromium's "Failed to load resource" lines for the
// error responses this test provokes on purpose (401 from /reports/session while signed out or
// for a bad key, 400 for year 0).
// Chromium: /usr/bin/chromium, or STRATA_TEST_CHROMIUM.
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [baseArg, apiKey, artifacts] = process.argv.slice(2);
if (!baseArg || !apiKey || !artifacts) {
  console.error('usage: node dashboard.mjs <base_url> <api_key> <artifacts_dir>');
  process.exit(1);
}
const base = baseArg.replace(/\/+$/, '');
const executablePath = process.env.STRATA_TEST_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = 15_000;
const OVERALL_MS = 180_000;

class Failure extends Error {}
function check(cond, message) {
  if (!cond) throw new Failure(message);
}
let current = '';
function step(name) {
  current = name;
  console.log('- ' + name);
}

const problems = [];
let expectedSeen = 0;
// Chromium logs every fetch that gets a 4xx as a console error; these are the ones we cause.
const expectedNetworkErrors = [
  { status: 401, path: /\/reports\/session$/ },
  { status: 400, path: /\/v1\/reports\/[a-z-]+$/, query: /(^|&)year=0(&|$)/ },
];
function isExpected(msg) {
  const m = /^Failed to load resource: the server responded with a status of (\d{3})/.exec(msg.text());
  if (!m) return false;
  let url;
  try { url = new URL(msg.location().url); } catch { return false; }
  return expectedNetworkErrors.some((e) => e.status === Number(m[1]) && e.path.test(url.pathname)
    && (!e.query || e.query.test(url.search.slice(1))));
}

mkdirSync(artifacts, { recursive: true });
const userDataDir = mkdtempSync(join(tmpdir(), 'strata-chromium-'));
let context;

const watchdog = setTimeout(() => {
  console.error(`FAIL: the browser test did not finish within ${OVERALL_MS / 1000} s`);
  process.exit(1);
}, OVERALL_MS);

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    acceptDownloads: false,
  });
  context.setDefaultTimeout(TIMEOUT_MS);
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (msg) => {
    const type = msg.type();
    if (type !== 'error' && type !== 'warning') return;
    if (isExpected(msg)) { expectedSeen++; return; }
    const loc = msg.location();
    problems.push(`console.${type}: ${msg.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('response', (resp) => {
    if (resp.status() >= 500) problems.push(`HTTP ${resp.status()} from ${resp.request().method()} ${resp.url()}`);
  });
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.method()} ${req.url()}: ${req.failure()?.errorText}`));

  const waitState = async (sel, st) => {
    try {
      await page.locator(sel).first().waitFor({ state: st });
    } catch (e) {
      if (e && e.name === 'TimeoutError') throw new Failure(`${sel} did not become ${st} within ${TIMEOUT_MS / 1000} s (step: ${current})`);
      throw e;
    }
  };
  const visible = (sel) => waitState(sel, 'visible');
  const hidden = (sel) => waitState(sel, 'hidden');
  const attr = (sel, name) => page.locator(sel).first().getAttribute(name);
  const count = (sel) => page.locator(sel).count();
  const inPage = (path) => page.evaluate(async (p) => {
    const r = await fetch(p, { headers: { Accept: 'application/json' } });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), text, json };
  }, path);
  const css = (s) => JSON.stringify(String(s)); // a quoted CSS attribute value

  step('open /reports signed out');
  const resp = await page.goto(base + '/reports');
  check(resp && resp.status() === 200, `GET /reports answered ${resp && resp.status()}`);
  const csp = resp.headers()['content-security-policy'] || '';
  check(csp.includes("default-src 'self'"), `GET /reports has no restrictive Content-Security-Policy (got ${JSON.stringify(csp)})`);
  await visible('#signin-form');
  check(await page.locator('#dashboard').isHidden(), 'the dashboard shows before signing in');
  check((await attr('#api-key', 'type')) === 'password', '#api-key is not a password input');

  step('a wrong key is refused');
  await page.fill('#api-key', 'strata_' + 'x'.repeat(43));
  await page.press('#api-key', 'Enter');
  await visible('#signin-error');
  const signinErr = await page.textContent('#signin-error');
  check(/not valid/i.test(signinErr), `the sign-in error says ${JSON.stringify(signinErr)}, expected the API's "not valid" message`);
  check(await page.locator('#dashboard').isHidden(), 'the dashboard shows after a wrong key');

  step('sign in');
  await page.fill('#api-key', apiKey);
  await page.click('#signin-form button[type=submit]');
  await page.waitForFunction(() => !document.getElementById('dashboard').hidden || !document.getElementById('signin-error').hidden);
  if (await page.locator('#signin-error').isVisible()) {
    throw new Failure(`signing in with the given API key failed: ${await page.textContent('#signin-error')}`);
  }
  await visible('#dashboard');
  await visible('#signout');
  check((await page.inputValue('#year')) === '2021', `the year defaults to ${await page.inputValue('#year')}, not 2021`);
  check((await page.inputValue('#api-key')) === '', 'the API key is left in the page after signing in');
  await visible('#hires-chart .cell');
  await visible('#mean-chart [data-department-id]');
  check(await page.locator('#error').isHidden(), `the error box shows for 2021: ${await page.textContent('#error')}`);

  step('heat map totals match GET /v1/reports/hires-by-quarter?year=2021');
  const hires = await inPage('/v1/reports/hires-by-quarter?year=2021');
  check(hires.status === 200 && hires.json && Array.isArray(hires.json.rows),
    `in-page fetch of hires-by-quarter answered ${hires.status}: ${hires.text.slice(0, 200)}`);
  const Q = ['Q1', 'Q2', 'Q3', 'Q4'];
  const byDept = new Map();
  for (const r of hires.json.rows) {
    const t = byDept.get(r.department_name) || [0, 0, 0, 0];
    Q.forEach((q, i) => { t[i] += r[q]; });
    byDept.set(r.department_name, t);
  }
  check(byDept.has('Support'), 'the API has no Support rows for 2021');
  const cells = await page.$$eval('#hires-chart .cell', (els) => els.map((e) => ({
    department: e.getAttribute('data-department'), job: e.getAttribute('data-job'),
    quarter: e.getAttribute('data-quarter'), count: e.getAttribute('data-count'), text: e.textContent.trim(),
  })));
  check(cells.length === byDept.size * 4, `the heat map has ${cells.length} cells, expected ${byDept.size} departments x 4`);
  for (const [dept, totals] of byDept) {
    Q.forEach((q, i) => {
      const c = cells.find((x) => x.department === dept && x.quarter === q);
      check(c, `no heat map cell for ${dept} ${q}`);
      check(c.job === null, `the department cell ${dept} ${q} carries data-job ${c.job}`);
      check(c.count === String(totals[i]), `heat map ${dept} ${q}: data-count ${c.count}, the API sums to ${totals[i]}`);
      check(c.text === String(totals[i]), `heat map ${dept} ${q} prints ${JSON.stringify(c.text)}, expected ${totals[i]}`);
    });
  }
  const supportCells = await count('#hires-chart .cell[data-department="Support"]');
  check(supportCells === 4, `Support has ${supportCells} cells, expected 4`);
  const tableRows = await count('#hires-table tbody tr');
  check(tableRows === hires.json.rows.length, `#hires-table has ${tableRows} rows, the API ${hires.json.rows.length}`);
  const first = hires.json.rows[0];
  const firstCells = await page.$$eval('#hires-table tbody tr:first-child td', (tds) => tds.map((td) => td.textContent));
  const want = [first.department_name, first.job_name, ...Q.map((q) => String(first[q]))];
  check(JSON.stringify(firstCells) === JSON.stringify(want), `#hires-table's first row is ${JSON.stringify(firstCells)}, expected ${JSON.stringify(want)}`);

  step('hover tooltip on the heat map');
  await page.hover('#hires-chart .cell[data-department="Support"][data-quarter="Q2"]');
  await visible('#tooltip');
  const tip1 = await page.textContent('#tooltip');
  check(tip1.includes('Support') && tip1.includes('Q2') && tip1.includes(String(byDept.get('Support')[1])),
    `the heat map tooltip says ${JSON.stringify(tip1)}`);

  step('bar chart of departments above the mean');
  const above = await inPage('/v1/reports/departments-above-mean?year=2021');
  check(above.status === 200 && above.json, `in-page fetch of departments-above-mean answered ${above.status}`);
  const bars = await page.$$eval('#mean-chart [data-department-id]', (els) => els.map((e) => ({
    id: e.getAttribute('data-department-id'), name: e.getAttribute('data-department'), hired: e.getAttribute('data-hired'),
  })));
  check(bars.length === 7, `the mean chart has ${bars.length} bars, expected 7`);
  check(JSON.stringify(bars.map((b) => [b.id, b.hired])) === JSON.stringify(above.json.rows.map((r) => [String(r.department_id), String(r.hired)])),
    `the bars ${JSON.stringify(bars)} differ from the API's rows`);
  const supportId = above.json.rows.find((r) => r.department_name === 'Support')?.department_id;
  check(supportId != null, 'Support is not above the mean in the API');
  const supportHired = await attr(`#mean-chart [data-department-id=${css(supportId)}]`, 'data-hired');
  check(supportHired === '216', `the Support bar has data-hired ${supportHired}, expected 216`);
  check(await count('#mean-chart [data-mean]') === 1, 'the mean chart has no single [data-mean] line');
  const meanAttr = await attr('#mean-chart [data-mean]', 'data-mean');
  check(meanAttr === '136.92', `the mean line has data-mean ${meanAttr}, expected 136.92`);
  const meanLabel = await page.locator('#mean-chart text', { hasText: 'mean 136.92' }).count();
  check(meanLabel === 1, 'the mean line is not labelled "mean 136.92"');
  const dash = await page.$eval('#mean-chart [data-mean]', (e) => getComputedStyle(e).strokeDasharray);
  check(dash && dash !== 'none', `the mean line is not dashed (stroke-dasharray ${dash})`);
  check(await count('#mean-table tbody tr') === 7, 'the mean table does not have 7 rows');
  const meanFirst = await page.$$eval('#mean-table tbody tr:first-child td', (tds) => tds.map((td) => td.textContent));
  check(JSON.stringify(meanFirst) === JSON.stringify(['8', 'Support', '216']), `the mean table's first row is ${JSON.stringify(meanFirst)}`);
  await page.hover(`#mean-chart [data-department-id=${css(supportId)}]`);
  await visible('#tooltip');
  const tip2 = await page.textContent('#tooltip');
  check(tip2.includes('Support') && tip2.includes('216'), `the bar tooltip says ${JSON.stringify(tip2)}`);

  step('CSV links');
  for (const [sel, name, header] of [['#hires-csv', 'hires-by-quarter', 'department_name,job_name,Q1,Q2,Q3,Q4'],
    ['#mean-csv', 'departments-above-mean', 'department_id,department_name,hired']]) {
    await visible(sel);
    const href = await page.$eval(sel, (a) => a.href);
    const u = new URL(href);
    check(u.pathname === `/v1/reports/${name}` && u.searchParams.get('year') === '2021' && u.searchParams.get('format') === 'csv',
      `${sel} points at ${href}`);
    const got = await inPage(u.pathname + u.search);
    check(got.status === 200 && /text\/csv/.test(got.type || '') && got.text.startsWith(header + '\n'),
      `${sel} (${href}) answered ${got.status} ${got.type}: ${got.text.slice(0, 80)}`);
    check(/attachment/.test(got.disposition || ''), `${sel} is not served as an attachment`);
  }

  await page.mouse.move(0, 0);
  await hidden('#tooltip');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(artifacts, 'dashboard-2021.png'), fullPage: true });

  step('drill into Support');
  await page.click('#hires-chart .cell[data-department="Support"][data-quarter="Q1"]');
  await visible('#hires-chart .cell[data-job]');
  await visible('#hires-back');
  const jobRows = hires.json.rows.filter((r) => r.department_name === 'Support');
  const jobCells = await page.$$eval('#hires-chart .cell', (els) => els.map((e) => ({
    department: e.getAttribute('data-department'), job: e.getAttribute('data-job'),
    quarter: e.getAttribute('data-quarter'), count: e.getAttribute('data-count'),
  })));
  check(jobCells.length === jobRows.length * 4, `the drill-down has ${jobCells.length} cells, expected ${jobRows.length} jobs x 4`);
  check(jobCells.every((c) => c.department === 'Support' && c.job), 'a drill-down cell is not a Support job cell');
  for (const r of jobRows) {
    for (const q of Q) {
      const c = jobCells.find((x) => x.job === r.job_name && x.quarter === q);
      check(c && c.count === String(r[q]), `drill-down ${r.job_name} ${q}: ${c && c.count}, the API says ${r[q]}`);
    }
  }
  check(await count('#hires-table tbody tr') === jobRows.length, 'the table does not list just the Support jobs');
  const job0 = jobRows[0].job_name;
  await page.hover(`#hires-chart .cell[data-job=${css(job0)}][data-quarter="Q1"]`);
  await visible('#tooltip');
  const tip3 = await page.textContent('#tooltip');
  check(tip3.includes('Support') && tip3.includes(job0) && tip3.includes('Q1'), `the drill-down tooltip says ${JSON.stringify(tip3)}`);
  await page.mouse.move(0, 0);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(artifacts, 'drilldown.png'), fullPage: true });
  await page.click('#hires-back');
  await hidden('#hires-back');
  check(await count('#hires-chart .cell[data-job]') === 0, 'job cells remain after going back');
  check(await count('#hires-chart .cell') === byDept.size * 4, 'the department heat map did not come back');

  step('a year without hires shows empty states');
  await page.fill('#year', '2019');
  await page.press('#year', 'Enter');
  await visible('#hires-empty');
  await visible('#mean-empty');
  const e1 = (await page.textContent('#hires-empty')).trim(), e2 = (await page.textContent('#mean-empty')).trim();
  check(e1 === 'No hires in 2019.', `#hires-empty says ${JSON.stringify(e1)}`);
  check(e2 === 'No hires in 2019.', `#mean-empty says ${JSON.stringify(e2)}`);
  check(await page.locator('#error').isHidden(), `an error shows for 2019: ${await page.textContent('#error')}`);
  check(await count('#hires-chart .cell') === 0 && await count('#mean-chart [data-department-id]') === 0, 'charts remain for 2019');
  check(await page.locator('#hires-table').isHidden() && await page.locator('#mean-table').isHidden(), 'tables show for 2019');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(artifacts, 'empty-2019.png'), fullPage: true });

  step('a bad year shows the API error');
  await page.fill('#year', '0');
  await page.click('#load');
  await visible('#error');
  const err = await page.textContent('#error');
  check(/year/i.test(err), `#error says ${JSON.stringify(err)}, expected the API's message about the year`);
  check(await page.locator('#hires-empty').isHidden(), '#hires-empty still shows beside the error');

  step('back to 2021 clears the error');
  await page.fill('#year', '2021');
  await page.click('#load');
  await visible('#hires-chart .cell');
  await hidden('#error');

  step('sign out');
  await page.click('#signout');
  await visible('#signin-form');
  check(await page.locator('#dashboard').isHidden(), 'the dashboard still shows after signing out');
  check(await count('#hires-chart .cell') === 0, 'report data stays in the page after signing out');
  const after = await inPage('/reports/session');
  check(after.status === 401, `GET /reports/session answers ${after.status} after signing out`);
  await page.reload();
  await visible('#signin-form');
  check(await page.locator('#dashboard').isHidden(), 'the dashboard shows after reloading signed out');

  check(problems.length === 0, 'the page logged problems:\n  ' + problems.join('\n  '));
}

let code = 0;
try {
  await main();
  console.log(`dashboard browser test: all checks passed (${expectedSeen} expected "Failed to load resource" lines ignored)`);
} catch (e) {
  code = 1;
  console.error('FAIL: ' + (e instanceof Failure ? e.message : e && e.stack ? e.stack : String(e)));
  if (problems.length && !(e instanceof Failure && e.message.startsWith('the page logged'))) {
    console.error('console problems so far:\n  ' + problems.join('\n  '));
  }
  try {
    const page = context && context.pages()[0];
    if (page) await page.screenshot({ path: join(artifacts, 'failure.png'), fullPage: true });
  } catch { /* best effort */ }
} finally {
  try { if (context) await context.close(); } catch { /* already gone */ }
  rmSync(userDataDir, { recursive: true, force: true });
  clearTimeout(watchdog);
}
process.exit(code);
