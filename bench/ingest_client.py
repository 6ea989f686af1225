#!/usr/bin/env python3
"""Push a header-less employees CSV through Strata's batch ingest API and time it.

Reads the CSV, turns every row into a JSON object, groups them into {"rows": [...]} batches of
1000 (the API's maximum) and serializes every request body *before* the clock starts, so the
measurement is the server's ingest rate, not Python's JSON encoder. Then K threads, each with
one keep-alive http.client connection, take batches from a shared counter and POST them to
http://HOST:PORT/v1/tables/employees/rows. Every batch is sent exactly once (no retries), so the
run is bounded. One JSON line goes to stdout:

    {"rows": ..., "accepted": ..., "rejected": ..., "failed_batches": ..., "elapsed_s": ..., "rows_per_s": ...}

Field conversion mirrors what a well-behaved client would send: the integer columns become JSON
integers when they parse, otherwise they stay strings so the server rejects them; empty fields
are omitted (the server reports them missing); a row with extra fields carries them under
unknown column names (rejected as unknown columns). Standard library only; loopback only.
"""

import argparse
import csv
import http.client
import json
import re
import sys
import threading
import time

COLUMNS = ("employee_id", "employee_name", "hiring_date", "department_id", "job_id")
INTEGER_COLUMNS = {"employee_id", "department_id", "job_id"}
# Stricter than int(), which would also accept " 12", "1_000" and non-ASCII digits.
INTEGER = re.compile(r"-?[0-9]+")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def to_object(fields):
    obj = {}
    for i, value in enumerate(fields):
        name = COLUMNS[i] if i < len(COLUMNS) else f"extra_{i}"
        if value == "":
            continue
        if name in INTEGER_COLUMNS and INTEGER.fullmatch(value):
            obj[name] = int(value)
        else:
            obj[name] = value
    return obj


def build_bodies(path, batch_size):
    bodies, batch, rows = [], [], 0
    with open(path, newline="", encoding="utf-8") as f:
        for fields in csv.reader(f):
            if not fields:
                continue
            batch.append(to_object(fields))
            rows += 1
            if len(batch) == batch_size:
                bodies.append((len(batch), json.dumps({"rows": batch}, separators=(",", ":")).encode()))
                batch = []
    if batch:
        bodies.append((len(batch), json.dumps({"rows": batch}, separators=(",", ":")).encode()))
    return bodies, rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", help="header-less employees CSV")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    p.add_argument("--key", required=True, help="tenant API key (Bearer token)")
    p.add_argument("--table", default="employees")
    p.add_argument("--clients", type=int, default=4, help="concurrent connections (default 4)")
    p.add_argument("--batch", type=int, default=1000, help="rows per batch (default 1000, the API maximum)")
    a = p.parse_args()
    if a.host not in LOOPBACK:
        sys.exit("ingest_client: refusing a non-loopback host; this is a local benchmark")

    bodies, total_rows = build_bodies(a.csv, a.batch)
    path = f"/v1/tables/{a.table}/rows"
    headers = {"Authorization": f"Bearer {a.key}", "Content-Type": "application/json"}

    lock = threading.Lock()
    next_batch = [0]
    totals = {"accepted": 0, "rejected": 0, "failed_batches": 0}
    first_error = []

    def worker():
        conn = http.client.HTTPConnection(a.host, a.port, timeout=300)
        accepted = rejected = failed = 0
        while True:
            with lock:
                i = next_batch[0]
                next_batch[0] += 1
            if i >= len(bodies):
                break
            n, body = bodies[i]
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 200:
                    report = json.loads(data)
                    accepted += report["accepted"]
                    rejected += report["rejected"]
                else:
                    failed += 1
                    with lock:
                        first_error.append(f"batch {i}: HTTP {resp.status}: {data[:300]!r}")
            except (OSError, http.client.HTTPException) as e:
                # Counted, not retried: the run stays bounded. Reconnect for the next batch.
                failed += 1
                with lock:
                    first_error.append(f"batch {i}: {type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(a.host, a.port, timeout=300)
        conn.close()
        with lock:
            totals["accepted"] += accepted
            totals["rejected"] += rejected
            totals["failed_batches"] += failed

    threads = [threading.Thread(target=worker) for _ in range(max(1, a.clients))]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started

    if first_error:
        print(f"ingest_client: {len(first_error)} failed batches; first: {first_error[0]}", file=sys.stderr)
    print(json.dumps({
        "rows": total_rows,
        "batches": len(bodies),
        "clients": a.clients,
        "accepted": totals["accepted"],
        "rejected": totals["rejected"],
        "failed_batches": totals["failed_batches"],
        "elapsed_s": round(elapsed, 3),
        "rows_per_s": round(total_rows / elapsed, 1) if elapsed > 0 else None,
    }))


if __name__ == "__main__":
    main()
