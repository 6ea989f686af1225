#!/usr/bin/env bash
# Query service benchmark (issue 6), side by side in one run:
#   1. streaming one ~1,000,000-row SELECT through the Rust connector (every value decoded)
#      vs the database's own CLI dumping the same rows (sqlite3 -csv; psql \copy ... TO STDOUT);
#   2. query latency p50/p99 in steady state vs during blue/green switches (two instances,
#      nginx in front, `strata deploy switch` run repeatedly), 8 concurrent clients.
#
#   bench/grpc.sh [ROWS]      (default 1000000 generated; about 97% load, the rest is dirty)
#
# Environment: STRATA_BIN, SKIP_BUILD, REPS (default 3; medians), SWITCHES (default 6),
# PGHOST/PGPORT/PGUSER. Writes bench/out/grpc-results.md.
set -euo pipefail
ROWS=${1:-1000000}
REPS=${REPS:-3}
SWITCHES=${SWITCHES:-6}
PGHOST=${PGHOST:-127.0.0.1}; PGPORT=${PGPORT:-5432}; PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER LC_ALL=C PATH="$PATH:/usr/sbin"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
unset STRATA_DATABASE_URL STRATA_DATA_DIR STRATA_TENANT STRATA_HTTP_ADDR STRATA_GRPC_ADDR STRATA_STACK
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release -p strata-cli
    cargo build --release -p strata-client --example stream --example latency
fi
STRATA=${STRATA_BIN:-$TARGET/release/strata}
STREAM=$TARGET/release/examples/stream
LATENCY=$TARGET/release/examples/latency
for b in "$STRATA" "$STREAM" "$LATENCY"; do [[ -x $b ]] || { echo "missing $b" >&2; exit 1; }; done

mkdir -p bench/out
# Absolute: nginx resolves a relative -c against its -p prefix, which doubled the path and made
# every reload during a switch fail.
WORK=$(mktemp -d "$ROOT/bench/out/grpc-$(date -u +%Y%m%dT%H%M%SZ)-XXXX")
DB=bench_grpc_$$
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"/*.csv "$WORK"/data
}
trap cleanup EXIT

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0; t0=$(now); "$@" >/dev/null; awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}'; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log "generating $ROWS rows"
python3 bench/gen_employees.py --rows "$ROWS" -o "$WORK/employees.csv" >/dev/null
COLS="employee_id, employee_name, hiring_date, department_id, job_id"
SQL="SELECT $COLS FROM employees"

declare -A R
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
    start() { # stack, variable for its gRPC address
        # Not in a $(...) subshell: the server's pid must reach PIDS, or it outlives the run.
        local hp gp; hp=$(port); gp=$(port)
        "${S[@]}" serve --stack "$1" --http-addr "127.0.0.1:$hp" --grpc-addr "127.0.0.1:$gp" --rate-provider fixed \
            --deploy-poll-ms 50 >"$WORK/server-$backend-$1.log" 2>&1 &
        PIDS+=($!)
        for _ in $(seq 100); do curl -sf "http://127.0.0.1:$hp/ready" >/dev/null && break; sleep 0.1; done
        printf -v "$2" '%s' "127.0.0.1:$gp"
    }
    start blue BLUE
    start green GREEN

    # 1. Streaming.
    cli=() ours=()
    for _ in $(seq "$REPS"); do
        if [[ $backend == sqlite ]]; then
            cli+=("$(secs sqlite3 -csv "$data/tenants/bench.db" "$SQL")")
        else
            cli+=("$(secs psql -X -q -d "$DB" -c "\\copy (SELECT $COLS FROM tenant_bench.employees) TO STDOUT")")
        fi
        out=$("$STREAM" "http://$BLUE" bench "$KEY" "$SQL")
        R[$backend,rows]=${out%% *}
        ours+=("${out##* }")
    done
    R[$backend,cli]=$(median "${cli[@]}")
    R[$backend,ours]=$(median "${ours[@]}")
    log "$backend: ${R[$backend,rows]} rows; connector ${R[$backend,ours]} s vs CLI ${R[$backend,cli]} s"

    # 2. Latency across switches, through nginx.
    NP=$(port)
    scripts/nginx-grpc.sh "$WORK/nginx-$backend" "127.0.0.1:$NP" "$BLUE" "$GREEN" blue >/dev/null 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$NP) 2>/dev/null && break; sleep 0.1; done
    NGX=$WORK/nginx-$backend
    SWITCH="${S[*]} deploy switch --to {to} --announce-ms 1000 --drain-timeout-secs 30 --actor bench --nginx-active-file $NGX/active-stack.conf --nginx-reload 'nginx -p $NGX -c $NGX/nginx.conf -s reload' >/dev/null"
    R[$backend,lat]=$("$LATENCY" "http://127.0.0.1:$NP" bench "$KEY" "$SWITCHES" "$SWITCH")
    log "$backend latency: ${R[$backend,lat]}"
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
j() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
{
    echo "### Query service benchmark"
    echo
    echo "- Date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S'); machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); client, server and database share it"
    echo "- Streaming: \`$SQL\`, median of $REPS runs; the connector decodes every value into typed Rust values; CLIs write CSV/text to /dev/null"
    echo
    echo "| Backend | Rows | CLI dump | Rust connector | Connector rows/s | Ratio (CLI time / connector time) | Target | Met? |"
    echo "|---|---|---|---|---|---|---|---|"
    for backend in sqlite postgres; do
        r=$(ratio "${R[$backend,cli]}" "${R[$backend,ours]}")
        rps=$(awk -v n="${R[$backend,rows]}" -v s="${R[$backend,ours]}" 'BEGIN {printf "%.0f", n / s}')
        met=$(awk -v r="$r" 'BEGIN {print (r >= 0.5) ? "yes" : "no"}')
        cliname=$([[ $backend == sqlite ]] && echo "sqlite3 -csv" || echo "psql \\\\copy")
        echo "| $backend | ${R[$backend,rows]} | $cliname ${R[$backend,cli]} s | ${R[$backend,ours]} s | $rps | $r | >= 0.5 | $met |"
    done
    echo
    echo "- Latency: 8 tasks on one connection through nginx, a small GROUP BY query in a loop; $SWITCHES switches (announce 1 s, nginx reload each time), 3 s apart"
    echo
    echo "| Backend | Steady p50 | Steady p99 | During switch p50 | During switch p99 | p99 ratio | Target | Met? | Queries (steady / during) | Failed |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for backend in sqlite postgres; do
        l=${R[$backend,lat]}
        r=$(ratio "$(j "$l" switch_p99)" "$(j "$l" steady_p99)")
        met=$(awk -v r="$r" 'BEGIN {print (r <= 2.0) ? "yes" : "no"}')
        echo "| $backend | $(j "$l" steady_p50) ms | $(j "$l" steady_p99) ms | $(j "$l" switch_p50) ms | $(j "$l" switch_p99) ms | $r | <= 2.0 | $met | $(j "$l" steady_n) / $(j "$l" switch_n) | $(j "$l" failures) |"
    done
} | tee bench/out/grpc-results.md
