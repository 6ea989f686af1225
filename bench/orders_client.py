#!/usr/bin/env python3
"""Load and latency client for Strata's BTC buy orders (bench/orders.sh). Stdlib only, loopback only.

Three subcommands, each printing one JSON object on stdout:

  create  K threads, each with one keep-alive http.client connection, POST /v1/buy-orders with a
          unique Idempotency-Key per order (never retried), until --max-orders orders have been
          sent or --max-seconds have passed, whichever comes first. Request bodies are built
          before the clock starts. Reports orders/s (201s over the wall-clock time of the run)
          and the client-side latency of every request (p50, p90, p99, max).

  list    Times GET /v1/buy-orders?limit=N for page 1 against the page at a given depth.
          With --walk-pages P it first walks P pages of --walk-limit orders from the top
          (untimed), following next_cursor, checks that the rows come strictly newest first
          with no repeats, and uses the cursor it ends on; with --cursor it uses that cursor
          (and, if both are given, checks they are the same). Then --reps requests to each page,
          alternating page 1 and the deep page after a warm-up, and reports both medians.

  lag     Projection lag from the server's JSON log (lines with "event": "order.projected"
          and "lag_ms"; optionally only --tenant T), and from a /metrics scrape of the
          strata_projection_lag_seconds histogram (the p99 is the upper bound of the bucket that
          holds the 99th percentile). lag_ms counts from the order's created_at, which the
          server stamps before the create transaction waits for the database; so the log's
          timestamps also give the lag after the commit (line "order.created" to line
          "order.projected" of the same order), the part the outbox relay is responsible for.
"""

import argparse
import base64
import datetime
import http.client
import json
import math
import sys
import threading
import time
import uuid

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_values:
        return None
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def median(values):
    s = sorted(values)
    n = len(s)
    if not n:
        return None
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def check_host(host):
    if host not in LOOPBACK:
        sys.exit("orders_client: refusing a non-loopback host; this is a local benchmark")


# --- create ----------------------------------------------------------------------------------

def cmd_create(a):
    check_host(a.host)
    run = a.run_id or uuid.uuid4().hex[:12]
    currencies = ("EUR", "GBP", "USD")
    # Small varied amounts: 10.00 to 509.99, so the BTC total stays far below any sane cap.
    bodies = [
        json.dumps({"currency": currencies[i % 3], "amount": f"{10 + (i * 7919) % 500}.{i % 100:02d}"},
                   separators=(",", ":")).encode()
        for i in range(a.max_orders)
    ]
    keys = [f"bench-{run}-{i}" for i in range(a.max_orders)]
    base_headers = {"Authorization": f"Bearer {a.key}", "Content-Type": "application/json"}

    lock = threading.Lock()
    nxt = [0]
    status_counts = {}
    latencies = []  # seconds, every request that got a response
    errors = []
    deadline = [0.0]

    def worker():
        conn = http.client.HTTPConnection(a.host, a.port, timeout=60)
        mine, counts, errs = [], {}, []
        while True:
            if time.perf_counter() >= deadline[0]:
                break
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(bodies):
                break
            headers = dict(base_headers)
            headers["Idempotency-Key"] = keys[i]
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/buy-orders", body=bodies[i], headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                mine.append(time.perf_counter() - t0)
                counts[resp.status] = counts.get(resp.status, 0) + 1
                if resp.status != 201 and len(errs) < 3:
                    errs.append(f"order {i}: HTTP {resp.status}: {data[:300]!r}")
            except (OSError, http.client.HTTPException) as e:
                counts["error"] = counts.get("error", 0) + 1
                if len(errs) < 3:
                    errs.append(f"order {i}: {type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(a.host, a.port, timeout=60)
        conn.close()
        with lock:
            latencies.extend(mine)
            for k, v in counts.items():
                status_counts[k] = status_counts.get(k, 0) + v
            errors.extend(errs)

    threads = [threading.Thread(target=worker) for _ in range(max(1, a.clients))]
    started = time.perf_counter()
    deadline[0] = started + a.max_seconds
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started

    if errors:
        print(f"orders_client create: first non-201 answers: {errors[:3]}", file=sys.stderr)
    lat = sorted(latencies)
    created = status_counts.get(201, 0)
    ms = lambda v: None if v is None else round(v * 1000, 2)
    print(json.dumps({
        "clients": a.clients,
        "max_orders": a.max_orders,
        "max_seconds": a.max_seconds,
        "sent": sum(status_counts.values()),
        "created": created,
        "statuses": {str(k): v for k, v in sorted(status_counts.items(), key=lambda kv: str(kv[0]))},
        "elapsed_s": round(elapsed, 3),
        "orders_per_s": round(created / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": ms(percentile(lat, 50)),
        "p90_ms": ms(percentile(lat, 90)),
        "p99_ms": ms(percentile(lat, 99)),
        "max_ms": ms(lat[-1] if lat else None),
        "key_prefix": f"bench-{run}-",
    }))


# --- list ------------------------------------------------------------------------------------

def rfc3339_micros(s):
    """'2026-01-02T03:04:05.123456Z' (the fraction optional, 0 to 9 digits) as Unix microseconds."""
    base, _, frac = s.rstrip("Z").partition(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp()) * 1_000_000 + int((frac + "000000")[:6])


def decode_cursor(c):
    return json.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))


def cmd_list(a):
    check_host(a.host)
    headers = {"Authorization": f"Bearer {a.key}"}
    conn = http.client.HTTPConnection(a.host, a.port, timeout=60)

    def get(query):
        t0 = time.perf_counter()
        conn.request("GET", "/v1/buy-orders?" + query, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        dt = time.perf_counter() - t0
        if resp.status != 200:
            sys.exit(f"orders_client list: GET ?{query}: HTTP {resp.status}: {data[:300]!r}")
        return json.loads(data), dt

    out = {"limit": a.limit, "reps": a.reps}
    cursor = a.cursor
    if a.walk_pages:
        # Untimed: follow next_cursor from the top and check the order is strict and complete.
        c, seen, last, walk_times = None, 0, None, []
        ids = set()
        for _ in range(a.walk_pages):
            q = f"limit={a.walk_limit}" + (f"&cursor={c}" if c else "")
            page, dt = get(q)
            walk_times.append(dt)
            for o in page["orders"]:
                key = (rfc3339_micros(o["created_at"]), o["id"])
                if last is not None and not key < last:
                    sys.exit(f"orders_client list: walk out of order at row {seen}: {key} after {last}")
                if o["id"] in ids:
                    sys.exit(f"orders_client list: walk repeated order {o['id']}")
                ids.add(o["id"])
                last = key
                seen += 1
            c = page["next_cursor"]
            if not c:
                sys.exit(f"orders_client list: walk ran out of pages after {seen} rows")
        out["walk_rows"] = seen
        out["walk_page_median_ms"] = round(median(walk_times) * 1000, 3)
        if cursor and decode_cursor(cursor) != decode_cursor(c):
            sys.exit(f"orders_client list: walked cursor {decode_cursor(c)} != built cursor {decode_cursor(cursor)}")
        out["cursor_check"] = "walked cursor equals the SQL-built cursor" if cursor else "walked"
        cursor = c
    if not cursor:
        sys.exit("orders_client list: need --cursor or --walk-pages")
    out["depth_cursor"] = decode_cursor(cursor)

    q1 = f"limit={a.limit}"
    qd = f"limit={a.limit}&cursor={cursor}"
    for _ in range(5):  # warm-up
        get(q1)
        get(qd)
    p1, pd = [], []
    first_page = deep_page = None
    for _ in range(a.reps):
        body, dt = get(q1)
        p1.append(dt)
        first_page = first_page or body
        body, dt = get(qd)
        pd.append(dt)
        deep_page = deep_page or body
    if len(first_page["orders"]) != a.limit or len(deep_page["orders"]) != a.limit:
        sys.exit("orders_client list: a timed page came back short")
    m1, md = median(p1), median(pd)
    out.update({
        "page1_median_ms": round(m1 * 1000, 3),
        "page1_p90_ms": round(percentile(sorted(p1), 90) * 1000, 3),
        "depth_median_ms": round(md * 1000, 3),
        "depth_p90_ms": round(percentile(sorted(pd), 90) * 1000, 3),
        "ratio": round(md / m1, 3),
        "page1_first_id": first_page["orders"][0]["id"],
        "depth_first_id": deep_page["orders"][0]["id"],
    })
    conn.close()
    print(json.dumps(out))


# --- lag -------------------------------------------------------------------------------------

def cmd_lag(a):
    lags = []
    created_at_log, after_commit = {}, []
    with open(a.log, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "order.projected" not in line and "order.created" not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if a.tenant and rec.get("tenant") != a.tenant:
                continue
            if rec.get("event") == "order.created":
                created_at_log[rec.get("order_id")] = rfc3339_micros(rec["timestamp"])
            elif rec.get("event") == "order.projected" and "lag_ms" in rec:
                lags.append(float(rec["lag_ms"]))
                # lag_ms runs from the order's created_at, stamped before its transaction waits
                # for the database; the log line "order.created" is written after the commit.
                t = created_at_log.get(rec.get("order_id"))
                if t is not None:
                    after_commit.append((rfc3339_micros(rec["timestamp"]) - t) / 1000)
    lags.sort()
    after_commit.sort()
    out = {
        "projected": len(lags),
        "p50_ms": percentile(lags, 50),
        "p99_ms": percentile(lags, 99),
        "max_ms": lags[-1] if lags else None,
        "after_commit_p50_ms": percentile(after_commit, 50),
        "after_commit_p99_ms": percentile(after_commit, 99),
    }
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}
    if a.metrics:
        buckets, count = [], None
        with open(a.metrics, encoding="utf-8") as f:
            for line in f:
                if line.startswith("strata_projection_lag_seconds_bucket{"):
                    le = line.split('le="', 1)[1].split('"', 1)[0]
                    buckets.append((math.inf if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
                elif line.startswith("strata_projection_lag_seconds_count"):
                    count = float(line.rsplit(" ", 1)[1])
        buckets.sort()
        out["metrics_count"] = count
        out["metrics_buckets_s"] = [b for b, _ in buckets if b != math.inf]
        if count:
            need = math.ceil(0.99 * count)
            bound = next((b for b, c in buckets if c >= need), None)
            out["metrics_p99_le_ms"] = None if bound in (None, math.inf) else round(bound * 1000, 3)
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("create")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--key", required=True)
    c.add_argument("--clients", type=int, default=32)
    c.add_argument("--max-orders", type=int, default=20000)
    c.add_argument("--max-seconds", type=float, default=30.0)
    c.add_argument("--run-id", help="Idempotency-Key infix (default: random)")

    l = sub.add_parser("list")
    l.add_argument("--port", type=int, required=True)
    l.add_argument("--host", default="127.0.0.1")
    l.add_argument("--key", required=True)
    l.add_argument("--limit", type=int, default=20)
    l.add_argument("--reps", type=int, default=50)
    l.add_argument("--cursor", help="the deep page's cursor")
    l.add_argument("--walk-pages", type=int, default=0)
    l.add_argument("--walk-limit", type=int, default=100)

    g = sub.add_parser("lag")
    g.add_argument("log")
    g.add_argument("--tenant")
    g.add_argument("--metrics", help="a saved /metrics scrape")

    a = p.parse_args()
    {"create": cmd_create, "list": cmd_list, "lag": cmd_lag}[a.cmd](a)


if __name__ == "__main__":
    main()
