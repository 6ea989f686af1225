#!/usr/bin/env bash
# Report benchmark (issue 4): each report's API response time vs the equivalent single SQL
# statement in the database's own CLI, on the same 1,000,000-row employees table.
#
#   bench/reports.sh [ROWS]      (default 1000000)
#
# Environment: STRATA_BIN, SKIP_BUILD, REPS (default 7; medians), PGHOST/PGPORT/PGUSER, as in
# bench/run.sh. Writes bench/out/reports-results.md.
set -euo pipefail
ROWS=${1:-1000000}
REPS=${REPS:-7}
PGHOST=${PGHOST:-127.0.0.1}; PGPORT=${PGPORT:-5432}; PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
unset STRATA_DATABASE_URL STRATA_DATA_DIR STRATA_TENANT STRATA_HTTP_ADDR STRATA_LOG STRATA_BACKUP_DIR
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then cargo build --release -p strata-cli; fi
STRATA=${STRATA_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/strata}
[[ -x $STRATA ]] || { echo "no strata binary at $STRATA" >&2; exit 1; }

mkdir -p bench/out
WORK=$(mktemp -d "bench/out/reports-$(date -u +%Y%m%dT%H%M%SZ)-XXXX")
DB=bench_reports_$$
SERVER=""
cleanup() {
    [[ -n $SERVER ]] && kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"/*.csv "$WORK"/data
}
trap cleanup EXIT

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Times a command REPS times (after one warm-up) and prints the median in milliseconds.
time_ms() {
    "$@" >/dev/null
    local runs=()
    for _ in $(seq "$REPS"); do
        local t0; t0=$(now)
        "$@" >/dev/null
        runs+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", (b - a) * 1000}')")
    done
    median "${runs[@]}"
}

log "generating $ROWS rows"
python3 bench/gen_employees.py --rows "$ROWS" -o "$WORK/employees.csv" >/dev/null

# Quarter bounds of 2021 in microseconds (SQLite storage) and as timestamps (PostgreSQL).
B0=1609459200000000; B1=1617235200000000; B2=1625097600000000; B3=1633046400000000; B4=1640995200000000
SQLITE_Q1="SELECT d.department_name, j.job_name, sum(e.hiring_date < $B1), sum(e.hiring_date >= $B1 AND e.hiring_date < $B2), sum(e.hiring_date >= $B2 AND e.hiring_date < $B3), sum(e.hiring_date >= $B3) FROM employees e JOIN departments d ON d.department_id = e.department_id JOIN jobs j ON j.job_id = e.job_id WHERE e.hiring_date >= $B0 AND e.hiring_date < $B4 GROUP BY d.department_id, j.job_id ORDER BY d.department_name, j.job_name, d.department_id, j.job_id;"
SQLITE_Q2="WITH h AS (SELECT e.department_id, count(*) AS hired FROM employees e WHERE e.hiring_date >= $B0 AND e.hiring_date < $B4 GROUP BY e.department_id) SELECT d.department_id, d.department_name, h.hired FROM h JOIN departments d ON d.department_id = h.department_id WHERE h.hired * (SELECT count(*) FROM departments) > (SELECT sum(hired) FROM h) ORDER BY h.hired DESC, d.department_name;"
PG_Q1="SELECT d.department_name, j.job_name, count(*) FILTER (WHERE e.hiring_date < '2021-04-01Z'), count(*) FILTER (WHERE e.hiring_date >= '2021-04-01Z' AND e.hiring_date < '2021-07-01Z'), count(*) FILTER (WHERE e.hiring_date >= '2021-07-01Z' AND e.hiring_date < '2021-10-01Z'), count(*) FILTER (WHERE e.hiring_date >= '2021-10-01Z') FROM employees e JOIN departments d ON d.department_id = e.department_id JOIN jobs j ON j.job_id = e.job_id WHERE e.hiring_date >= '2021-01-01Z' AND e.hiring_date < '2022-01-01Z' GROUP BY d.department_id, d.department_name, j.job_id, j.job_name ORDER BY d.department_name, j.job_name"
PG_Q2="WITH h AS (SELECT e.department_id, count(*) AS hired FROM employees e WHERE e.hiring_date >= '2021-01-01Z' AND e.hiring_date < '2022-01-01Z' GROUP BY e.department_id) SELECT d.department_id, d.department_name, h.hired FROM h JOIN departments d ON d.department_id = h.department_id WHERE h.hired * (SELECT count(*) FROM departments) > (SELECT sum(hired) FROM h) ORDER BY h.hired DESC, d.department_name"

declare -A RESULT
for backend in sqlite postgres; do
    data=$WORK/data/$backend
    mkdir -p "$data"
    if [[ $backend == sqlite ]]; then
        S=("$STRATA" --data-dir "$data")
    else
        psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null 2>&1
        S=("$STRATA" --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$DB")
    fi
    KEY=$("${S[@]}" tenant create bench --dataset hr)
    for t in departments jobs; do "${S[@]}" load --tenant bench --table "$t" "data/hr/$t.csv" >/dev/null; done
    "${S[@]}" load --tenant bench --table employees "$WORK/employees.csv" >/dev/null
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${S[@]}" serve --grpc-addr 127.0.0.1:0 --http-addr "127.0.0.1:$PORT" >"$WORK/server-$backend.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.1; done
    api() { curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/reports/$1?year=2021"; }
    if [[ $backend == sqlite ]]; then
        file=$data/tenants/bench.db
        RESULT[$backend,q1,cli]=$(time_ms sqlite3 "$file" "$SQLITE_Q1")
        RESULT[$backend,q2,cli]=$(time_ms sqlite3 "$file" "$SQLITE_Q2")
    else
        RESULT[$backend,q1,cli]=$(time_ms psql -X -q -d "$DB" -c "SET search_path TO tenant_bench" -c "$PG_Q1")
        RESULT[$backend,q2,cli]=$(time_ms psql -X -q -d "$DB" -c "SET search_path TO tenant_bench" -c "$PG_Q2")
    fi
    RESULT[$backend,q1,api]=$(time_ms api hires-by-quarter)
    RESULT[$backend,q2,api]=$(time_ms api departments-above-mean)
    log "$backend: hires-by-quarter api ${RESULT[$backend,q1,api]} ms vs cli ${RESULT[$backend,q1,cli]} ms; above-mean api ${RESULT[$backend,q2,api]} ms vs cli ${RESULT[$backend,q2,cli]} ms"
    kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=""
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
met() { awk -v r="$1" 'BEGIN {print (r <= 1.5) ? "yes" : "no"}'; }
{
    echo "### Report benchmark"
    echo
    echo "- Date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S'); machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "- $ROWS employees (about 3% dirty, so $(( ROWS * 97 / 100 )) or so loaded); year 2021; median of $REPS runs after a warm-up, process start-up included on both sides (curl vs the CLI)"
    echo
    echo "| Backend | Report | CLI (one SQL statement) | Strata API | Ratio (API / CLI) | Target | Met? |"
    echo "|---|---|---|---|---|---|---|"
    for backend in sqlite postgres; do
        for q in q1 q2; do
            name=$([[ $q == q1 ]] && echo hires-by-quarter || echo departments-above-mean)
            r=$(ratio "${RESULT[$backend,$q,api]}" "${RESULT[$backend,$q,cli]}")
            echo "| $backend | $name | ${RESULT[$backend,$q,cli]} ms | ${RESULT[$backend,$q,api]} ms | $r | <= 1.5 | $(met "$r") |"
        done
    done
} | tee bench/out/reports-results.md
