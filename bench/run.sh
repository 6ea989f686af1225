#!/usr/bin/env bash
# Strata ingest benchmarks: strata vs sqlite3 .import, strata vs psql \copy, and the batch API.
#
#   bench/run.sh [ROWS]          (default 1000000)
#
# Environment:
#   STRATA_BIN=PATH   use this binary instead of target/release/strata (e.g. a debug build)
#   SKIP_BUILD=1      do not run `cargo build --release -p strata-cli`
#   REPS=N            repetitions per measurement (default 3; the median is reported)
#   CLIENTS=N         concurrent API clients (default 4)
#   PGHOST/PGPORT/PGUSER   PostgreSQL server (default 127.0.0.1:5432, user postgres, trust auth)
#   KEEP_WORK=1       keep the generated CSV and per-run files under bench/out/
#
# Writes bench/out/results.md (a Markdown table for docs/benchmarks.md) and prints it.
set -euo pipefail

ROWS=${1:-1000000}
REPS=${REPS:-3}
CLIENTS=${CLIENTS:-4}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER

if ! [[ $ROWS =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: bench/run.sh [ROWS]   (ROWS a positive integer, default 1000000)" >&2
    exit 2
fi

# Fixed locale: awk, sort -g and printf must all read and write "1.234".
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
cd "$ROOT"

# Every strata flag also reads a STRATA_* variable; a stray STRATA_DATABASE_URL would silently
# send the "SQLite" runs to PostgreSQL, so clear them and pass everything explicitly.
unset STRATA_DATABASE_URL STRATA_DATA_DIR STRATA_TENANT STRATA_HTTP_ADDR STRATA_PG_POOL_SIZE STRATA_LOG

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- the binary -------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release -p strata-cli"
    cargo build --release -p strata-cli
fi
if [[ -n ${STRATA_BIN:-} ]]; then
    STRATA=$STRATA_BIN
else
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $TARGET_DIR = /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR  # cargo resolves it from $ROOT
    STRATA=$TARGET_DIR/release/strata
fi
[[ -x $STRATA ]] || { echo "no strata binary at $STRATA (build it, or set STRATA_BIN)" >&2; exit 1; }
for tool in sqlite3 psql python3 curl; do
    command -v "$tool" >/dev/null || { echo "bench needs $tool on PATH" >&2; exit 1; }
done
# -X: ignore ~/.psqlrc; ON_ERROR_STOP: fail on any error; client_min_messages hides the
# "does not exist, skipping" notices of DROP DATABASE IF EXISTS (set for psql only, not strata).
PSQL=(env "PGOPTIONS=${PGOPTIONS:-} -c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d postgres -c 'SELECT 1' >/dev/null || { echo "cannot reach PostgreSQL at $PGHOST:$PGPORT as $PGUSER" >&2; exit 1; }

# --- work dir and cleanup ---------------------------------------------------------------------
mkdir -p "$BENCH/out"
WORK=$(mktemp -d "$BENCH/out/run-$(date -u +%Y%m%dT%H%M%SZ)-XXXX")
SERVER_PID=""
PG_DBS=()

cleanup() {
    local rc=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    for db in "${PG_DBS[@]}"; do
        "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    # The big files are cheap to regenerate; keep logs and reports for inspection.
    if [[ ${KEEP_WORK:-0} != 1 ]]; then
        rm -rf "$WORK"/*.csv "$WORK"/data
    fi
    if [[ $rc -ne 0 ]]; then
        echo "bench failed (exit $rc); logs in $WORK" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------------------------
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
# Median of the arguments (the middle one, or the mean of the two middle ones).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { printf f, (b > 0 ? a / b : 0) }'; }
met() { awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t ? "yes" : "no") }'; }
json_get() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A strata tenant with the HR dataset, departments and jobs loaded (untimed setup).
# Usage: setup_tenant STORAGE-FLAGS...   Prints the API key.
setup_tenant() {
    local key
    key=$("$STRATA" "$@" tenant create bench --dataset hr)
    "$STRATA" "$@" load --tenant bench --table departments "$ROOT/data/hr/departments.csv" >/dev/null
    "$STRATA" "$@" load --tenant bench --table jobs "$ROOT/data/hr/jobs.csv" >/dev/null
    echo "$key"
}

pg_recreate() {
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
    PG_DBS+=("$1")
}
pg_drop() { "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; }

# --- input ------------------------------------------------------------------------------------
CSV=$WORK/employees.csv
log "generating $ROWS rows into $CSV"
python3 "$BENCH/gen_employees.py" --rows "$ROWS" -o "$CSV"

# psql's \copy aborts the whole copy on a row with the wrong number of fields, even into TEXT
# columns, so its baseline gets a copy without those rows (prepared here, untimed).
PG_CSV=$WORK/employees.5fields.csv
python3 - "$CSV" "$PG_CSV" <<'EOF'
import csv, sys
with open(sys.argv[1], newline="") as src, open(sys.argv[2], "w", newline="") as dst:
    w = csv.writer(dst, lineterminator="\n")
    w.writerows(r for r in csv.reader(src) if len(r) == 5)
EOF
PG_ROWS=$(wc -l <"$PG_CSV")
# A second, stricter baseline: psql \copy into a table typed and keyed exactly like Strata's
# (BIGINT, TEXT, TIMESTAMPTZ, PRIMARY KEY), fed only the rows Strata accepts, since a typed
# \copy aborts on the first bad one. This isolates what typing and the key index cost.
PG_CLEAN_CSV=$WORK/employees.clean.csv
python3 - "$CSV" "$PG_CLEAN_CSV" <<'EOF'
import csv, re, sys
dt = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ$")
def ok(r):
    return (len(r) == 5 and all(r) and r[0].isdigit() and dt.match(r[2])
            and r[3].isdigit() and 1 <= int(r[3]) <= 12 and r[4].isdigit() and 1 <= int(r[4]) <= 183)
with open(sys.argv[1], newline="") as src, open(sys.argv[2], "w", newline="") as dst:
    w = csv.writer(dst, lineterminator="\n")
    w.writerows(r for r in csv.reader(src) if ok(r))
EOF
PG_CLEAN_ROWS=$(wc -l <"$PG_CLEAN_CSV")
mkdir -p "$WORK/data"

# --- (a) CSV load into SQLite: strata load vs sqlite3 .import ----------------------------------
SQLITE_DDL='CREATE TABLE employees (employee_id INTEGER PRIMARY KEY, employee_name TEXT, hiring_date TEXT, department_id INTEGER, job_id INTEGER);'
a_strata=() a_sqlite=()
for i in $(seq "$REPS"); do
    dir=$WORK/data/sqlite_strata_$i
    setup_tenant --data-dir "$dir" >/dev/null
    t0=$(now)
    "$STRATA" --data-dir "$dir" load --tenant bench --table employees "$CSV" --json >"$WORK/a_strata_$i.json"
    a_strata+=("$(since "$t0")")
    rm -rf "$dir"

    db=$WORK/data/sqlite3_$i.db
    sqlite3 "$db" "$SQLITE_DDL"
    t0=$(now)
    # .import reports rows it cannot insert (non-integer ids) on stderr and carries on.
    sqlite3 "$db" ".mode csv" ".import '$CSV' employees" 2>"$WORK/a_sqlite3_$i.err"
    a_sqlite+=("$(since "$t0")")
    a_sqlite_rows=$(sqlite3 "$db" 'SELECT count(*) FROM employees')
    rm -f "$db"
    log "(a) rep $i: strata load ${a_strata[-1]} s, sqlite3 .import ${a_sqlite[-1]} s"
done
A_STRATA=$(median "${a_strata[@]}")
A_SQLITE=$(median "${a_sqlite[@]}")
A_RATIO=$(div "$A_SQLITE" "$A_STRATA")
A_LOAD_RPS=$(div "$ROWS" "$A_STRATA" "%.0f")
A_INSERTED=$(json_get "$WORK/a_strata_1.json" inserted)
A_REJECTED=$(json_get "$WORK/a_strata_1.json" rejected)

# --- (b) CSV load into PostgreSQL: strata load vs psql \copy ---------------------------------
PG_DDL='CREATE TABLE employees (employee_id TEXT, employee_name TEXT, hiring_date TEXT, department_id TEXT, job_id TEXT);'
PG_TYPED_DDL='CREATE TABLE employees (employee_id BIGINT PRIMARY KEY, employee_name TEXT COLLATE "C" NOT NULL, hiring_date TIMESTAMPTZ NOT NULL, department_id BIGINT NOT NULL, job_id BIGINT NOT NULL);'
b_strata=() b_psql=() b_psql_typed=()
for i in $(seq "$REPS"); do
    db=bench_strata_$i
    url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
    pg_recreate "$db"
    setup_tenant --database-url "$url" >/dev/null
    t0=$(now)
    "$STRATA" --database-url "$url" load --tenant bench --table employees "$CSV" --json >"$WORK/b_strata_$i.json"
    b_strata+=("$(since "$t0")")
    pg_drop "$db"

    db=bench_psql_$i
    pg_recreate "$db"
    "${PSQL[@]}" -d "$db" -c "$PG_DDL"
    t0=$(now)
    "${PSQL[@]}" -d "$db" -c "\\copy employees FROM '$PG_CSV' WITH (FORMAT csv)"
    b_psql+=("$(since "$t0")")
    pg_drop "$db"

    db=bench_psqltyped_$i
    pg_recreate "$db"
    "${PSQL[@]}" -d "$db" -c "$PG_TYPED_DDL"
    t0=$(now)
    "${PSQL[@]}" -d "$db" -c "\\copy employees FROM '$PG_CLEAN_CSV' WITH (FORMAT csv)"
    b_psql_typed+=("$(since "$t0")")
    pg_drop "$db"
    log "(b) rep $i: strata load ${b_strata[-1]} s, psql \\copy ${b_psql[-1]} s"
done
B_STRATA=$(median "${b_strata[@]}")
B_PSQL=$(median "${b_psql[@]}")
B_RATIO=$(div "$B_PSQL" "$B_STRATA")
B_PSQL_TYPED=$(median "${b_psql_typed[@]}")
B_TYPED_RATIO=$(div "$B_PSQL_TYPED" "$B_STRATA")
B_INSERTED=$(json_get "$WORK/b_strata_1.json" inserted)
B_REJECTED=$(json_get "$WORK/b_strata_1.json" rejected)

# --- (c) the batch ingest API into SQLite ------------------------------------------------------
c_rps=()
for i in $(seq "$REPS"); do
    dir=$WORK/data/sqlite_api_$i
    key=$(setup_tenant --data-dir "$dir")
    port=$(free_port)
    "$STRATA" --data-dir "$dir" serve --grpc-addr 127.0.0.1:0 --http-addr "127.0.0.1:$port" >"$WORK/c_server_$i.log" 2>&1 &
    SERVER_PID=$!
    # Wait (bounded) for the server to answer /ready; give up if it died.
    for _ in $(seq 300); do
        curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "strata serve exited; see $WORK/c_server_$i.log" >&2; exit 1; }
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$port/ready" >/dev/null || { echo "strata serve not ready after 30 s" >&2; exit 1; }
    python3 "$BENCH/ingest_client.py" "$CSV" --port "$port" --key "$key" --clients "$CLIENTS" >"$WORK/c_client_$i.json"
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
    rm -rf "$dir"
    c_rps+=("$(json_get "$WORK/c_client_$i.json" rows_per_s)")
    log "(c) rep $i: API $(json_get "$WORK/c_client_$i.json" elapsed_s) s, ${c_rps[-1]} rows/s"
    if [[ $(json_get "$WORK/c_client_$i.json" failed_batches) != 0 ]]; then
        echo "ingest client reported failed batches; see $WORK/c_client_$i.json" >&2
        exit 1
    fi
done
C_RPS=$(median "${c_rps[@]}")
C_RATIO=$(div "$C_RPS" "$A_LOAD_RPS")
C_ACCEPTED=$(json_get "$WORK/c_client_1.json" accepted)
C_REJECTED=$(json_get "$WORK/c_client_1.json" rejected)

# --- report -----------------------------------------------------------------------------------
CPU=$(grep -m1 -E '^(model name|Model|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
fmt_rps() { python3 -c 'import sys; print(f"{float(sys.argv[1]):,.0f}")' "$1"; }  # 12,345
RESULTS=$WORK/results.md
{
    echo "### Strata ingest benchmark"
    echo
    echo "- Date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "- Machine: $(nproc) CPUs, ${CPU:-unknown CPU}"
    echo "- Rows: $ROWS employees ($(wc -c <"$CSV" | tr -d ' ') bytes of CSV), about 3% dirty"
    echo "- Strata: \`$("$STRATA" --version)\` ($STRATA)"
    echo "- Each figure is the median wall-clock time of $REPS runs, process start-up included"
    echo
    echo "| Measurement | Baseline | Strata | Ratio | Target | Met? |"
    echo "|---|---|---|---|---|---|"
    echo "| (a) CSV load into SQLite | sqlite3 \`.import\`: $A_SQLITE s | \`strata load\`: $A_STRATA s | $A_RATIO (sqlite3 / strata) | >= 1.0 | $(met "$A_RATIO" 1.0) |"
    echo "| (b) CSV load into PostgreSQL | psql \`\\copy\`: $B_PSQL s | \`strata load\`: $B_STRATA s | $B_RATIO (psql / strata) | >= 0.8 | $(met "$B_RATIO" 0.8) |"
    echo "| (b') same, baseline typed and keyed like Strata's table | psql \`\\copy\` of the $PG_CLEAN_ROWS valid rows: $B_PSQL_TYPED s | \`strata load\`: $B_STRATA s | $B_TYPED_RATIO (psql / strata) | context | |"
    echo "| (c) Batch API into SQLite, $CLIENTS clients x 1000-row batches | \`strata load\` from (a): $(fmt_rps "$A_LOAD_RPS") rows/s | API: $(fmt_rps "$C_RPS") rows/s | $C_RATIO (API / load) | >= 0.5 | $(met "$C_RATIO" 0.5) |"
    echo
    echo "Runs (seconds): (a) strata ${a_strata[*]}, sqlite3 ${a_sqlite[*]}; (b) strata ${b_strata[*]}, psql ${b_psql[*]}, typed psql ${b_psql_typed[*]}; (c) API rows/s ${c_rps[*]}."
    echo
    echo "What each side does:"
    echo
    echo "- \`strata load\` validates every field (types, RFC 3339 datetimes, required fields, column count), checks the foreign keys against departments and jobs, and writes rejected rows to the rejection log: $A_INSERTED inserted, $A_REJECTED rejected into SQLite; $B_INSERTED inserted, $B_REJECTED rejected into PostgreSQL. Untimed setup: tenant creation and loading departments and jobs."
    echo "- sqlite3 \`.import\` (csv mode) into a pre-created table \`employees(employee_id INTEGER PRIMARY KEY, employee_name TEXT, hiring_date TEXT, department_id INTEGER, job_id INTEGER)\`: skips rows it cannot insert (non-integer ids), pads or truncates rows with the wrong field count, and checks no datetimes or foreign keys; it kept $a_sqlite_rows rows."
    echo "- psql \`\\copy ... WITH (FORMAT csv)\` into an all-TEXT table with no key or constraints, because \`\\copy\` aborts on the first bad value with typed columns. It also aborts on a wrong field count even with TEXT columns, so it reads a copy of the file without those rows ($PG_ROWS of $ROWS rows, filtered untimed). It validates nothing. Each repetition uses a fresh database (bench_strata_N, bench_psql_N), created and dropped by the script."
    echo "- The API run starts \`strata serve\` on a fresh SQLite data dir and sends every row once as JSON batches over $CLIENTS keep-alive connections (bench/ingest_client.py, bodies serialized before the clock starts; client and server share the machine): $C_ACCEPTED accepted, $C_REJECTED rejected. The ratio compares rows/s with \`strata load\` into SQLite from (a) ($ROWS rows / $A_STRATA s)."
} >"$RESULTS"
cp "$RESULTS" "$BENCH/out/results.md"
cat "$RESULTS"
log "results written to bench/out/results.md (run files in ${WORK#"$ROOT"/})"
