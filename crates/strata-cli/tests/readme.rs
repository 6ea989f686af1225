//! The README's shell examples, run in order, as written, against a fresh data directory: the
//! tour a stranger takes. The examples are read from README.md itself, so this test breaks
//! when the README drifts from what Strata does.
//!
//! How the README is read:
//! * every ```sh block runs, in order, in one bash session (variables such as `$KEY` carry
//!   over), except a block right after a `<!-- readme-test: skip ... -->` comment (one that
//!   needs PostgreSQL and nginx, or starts the demo);
//! * a fenced block whose first line is `# <file name>` (the `shop.toml` example) is written
//!   to that file first;
//! * each command must exit 0, and the full-line comments right below it are what it prints:
//!   compared with blanks removed, `...` standing for any text;
//! * the only edit is the address: the README's `127.0.0.1:8080` and `127.0.0.1:50051` become
//!   free ports, so the test never collides with anything else on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Block {
    lang: String,
    lines: Vec<String>,
    skip: bool,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = readme.lines();
    let mut last_text = String::new();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let mut body = Vec::new();
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                body.push(l.to_string());
            }
            let skip = last_text.trim_start().starts_with("<!-- readme-test: skip");
            out.push(Block { lang: info.trim().to_string(), lines: body, skip });
            last_text.clear();
        } else if !line.trim().is_empty() {
            last_text = line.to_string();
        }
    }
    out
}

/// One command (continuation lines joined) and the output the README shows for it.
struct Step {
    command: String,
    expected: Vec<String>,
}

fn steps(block: &Block) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut pending: Option<String> = None;
    for line in &block.lines {
        if let Some(cmd) = pending.as_mut() {
            cmd.push('\n');
            cmd.push_str(line);
            if !continues(cmd) {
                out.push(Step { command: pending.take().unwrap(), expected: Vec::new() });
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(step) = out.last_mut() {
                step.expected.push(comment.strip_prefix(' ').unwrap_or(comment).to_string());
            }
        } else if !line.trim().is_empty() {
            if continues(line) {
                pending = Some(line.to_string());
            } else {
                out.push(Step { command: line.to_string(), expected: Vec::new() });
            }
        }
    }
    out
}

/// A command goes on to the next line after a `\` or inside an open single-quoted string
/// (a JSON body written over several lines).
fn continues(cmd: &str) -> bool {
    cmd.trim_end().ends_with('\\') || cmd.matches('\'').count() % 2 == 1
}

/// `expected` (blanks removed) occurs in `actual` (blanks removed), `...` matching any text.
fn shows(actual: &str, expected: &str) -> bool {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let (actual, expected) = (squash(actual), squash(expected));
    let mut at = 0;
    for part in expected.split("...") {
        if part.is_empty() {
            continue;
        }
        // Each piece follows the one before it.
        match actual[at..].find(part) {
            Some(pos) => at += pos + part.len(),
            None => return false,
        }
    }
    true
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_readme_examples_run_in_order_and_print_what_the_readme_shows() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("data"), work.path().join("data")).unwrap();
    let (http, grpc) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let out_dir = work.path().join(".readme-test");
    std::fs::create_dir(&out_dir).unwrap();

    let bin = Path::new(env!("CARGO_BIN_EXE_strata")).parent().unwrap().display().to_string();
    let mut script = format!(
        "export PATH='{bin}':\"$PATH\"\nexport STRATA_DATA_DIR='{}' STRATA_HTTP_ADDR='{http}' STRATA_GRPC_ADDR='{grpc}'\n\
         trap 'kill $(jobs -p) 2>/dev/null' EXIT\ncd '{}'\n",
        work.path().join("strata-data").display(),
        work.path().display()
    );
    let mut all: Vec<Step> = Vec::new();
    for b in blocks(&readme) {
        if let Some(name) =
            b.lines.first().and_then(|l| l.strip_prefix("# ")).filter(|n| {
                !n.contains(' ') && n.contains('.') && b.lang != "sh" && b.lang != "json" && b.lang != "python"
            })
        {
            std::fs::write(work.path().join(name), b.lines.join("\n") + "\n").unwrap();
            continue;
        }
        if b.lang != "sh" || b.skip {
            continue;
        }
        for s in steps(&b) {
            let n = all.len();
            let cmd = s.command.replace("127.0.0.1:8080", &http).replace("127.0.0.1:50051", &grpc);
            script.push_str(&format!("{{ {cmd}\n}} > .readme-test/{n}.out 2>&1\necho $? > .readme-test/{n}.rc\n"));
            if cmd.trim_start().starts_with("strata serve") && cmd.trim_end().ends_with('&') {
                // A server started in the background: wait until it answers, as a person would.
                script.push_str(&format!(
                    "for _ in $(seq 100); do curl -sf http://{http}/ready >/dev/null && break; sleep 0.1; done\n"
                ));
            }
            all.push(s);
        }
    }
    assert!(all.len() > 30, "the README has lost its examples? only {} commands", all.len());
    std::fs::write(out_dir.join("tour.sh"), &script).unwrap();

    let mut child = Command::new("bash").arg(out_dir.join("tour.sh")).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the README tour ran over 5 minutes");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut failures = Vec::new();
    for (n, s) in all.iter().enumerate() {
        let rc = std::fs::read_to_string(out_dir.join(format!("{n}.rc"))).unwrap_or_default();
        let output = std::fs::read_to_string(out_dir.join(format!("{n}.out"))).unwrap_or_default();
        let chars: Vec<char> = output.chars().collect();
        let shown: String = if chars.len() > 1600 {
            format!(
                "{} [...] {}",
                chars[..800].iter().collect::<String>(),
                chars[chars.len() - 800..].iter().collect::<String>()
            )
        } else {
            output.clone()
        };
        if rc.trim() != "0" {
            failures.push(format!("`{}` exited {:?}:\n{shown}", s.command, rc.trim()));
        } else if !s.expected.is_empty() && !shows(&output, &s.expected.join("\n")) {
            failures.push(format!(
                "`{}` printed:\n{shown}\nbut the README shows:\n{}",
                s.command,
                s.expected.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} README commands differ:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_output_matcher_treats_blanks_and_ellipses_as_the_readme_means_them() {
    assert!(shows("{\"a\":1,\"b\":[1,2]}\n", "{\"a\": 1, ...}"));
    assert!(shows("x: 1999 rows read in 0.03s", "1999 rows read in ...s"));
    assert!(!shows("{\"a\":2}", "{\"a\": 1, ...}"));
    assert!(shows("head\nline 1\nline 2\n", "line 1\nline 2"));
    assert!(!shows("line 2\nline 1", "line 1\nline 2"));
}
