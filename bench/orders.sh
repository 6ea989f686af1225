#!/usr/bin/env bash
# Order benchmarks (BTC buy orders), side by side on SQLite and PostgreSQL in one run:
#   (1) create throughput and latency with concurrent clients,
#   (2) list latency at page 1 vs deep in a seeded 1,000,000-order book,
#   (3) projection lag (write model -> read model) under the load of (1).
#
#   bench/orders.sh [BOOK]       (BOOK = orders seeded for (2), default 1000000)
#
# Environment:
#   STRATA_BIN, SKIP_BUILD, PGHOST/PGPORT/PGUSER, KEEP_WORK   as in bench/run.sh
#   CLIENTS=N        concurrent create clients (default 32)
#   MAX_ORDERS=N     stop (1) after this many orders (default 20000) ...
#   MAX_SECONDS=S    ... or after this many seconds, whichever comes first (default 30)
#   DEPTH=N          rows above the deep page in (2) (default 100000, at most BOOK/10)
#   REPS=N           timed requests per page in (2) (default 50; medians)
#   WALK=0           build the deep page's cursor with SQL only, without also walking to it
#   BACKENDS="..."   default "sqlite postgres"
#
# Writes bench/out/orders-results.md and prints it.
set -euo pipefail

BOOK=${1:-1000000}
CLIENTS=${CLIENTS:-32}
MAX_ORDERS=${MAX_ORDERS:-20000}
MAX_SECONDS=${MAX_SECONDS:-30}
REPS=${REPS:-50}
WALK=${WALK:-1}
LIMIT=20          # the page size timed in (2)
WALK_LIMIT=100    # the page size of the untimed walk to the deep page
BACKENDS=${BACKENDS:-sqlite postgres}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER LC_ALL=C

if ! [[ $BOOK =~ ^[1-9][0-9]*$ ]] || (( BOOK < 2000 )); then
    echo "usage: bench/orders.sh [BOOK]   (BOOK an integer >= 2000, default 1000000)" >&2
    exit 2
fi
DEPTH=${DEPTH:-100000}
if (( DEPTH > BOOK / 10 )); then DEPTH=$(( BOOK / 10 / WALK_LIMIT * WALK_LIMIT )); fi
if [[ $WALK == 1 ]] && (( DEPTH % WALK_LIMIT )); then
    echo "DEPTH must be a multiple of $WALK_LIMIT to walk to it (or set WALK=0)" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
cd "$ROOT"
# A stray STRATA_DATABASE_URL would send the "SQLite" run to PostgreSQL: pass everything explicitly.
unset STRATA_DATABASE_URL STRATA_DATA_DIR STRATA_TENANT STRATA_HTTP_ADDR STRATA_PG_POOL_SIZE STRATA_LOG \
      STRATA_BACKUP_DIR STRATA_RATE_PROVIDER STRATA_FIXED_RATES STRATA_EVENTS_URL STRATA_LOG_FORMAT \
      STRATA_COMPAT_PY_DIST_ARCH_TENANT

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release -p strata-cli"
    cargo build --release -p strata-cli
fi
if [[ -n ${STRATA_BIN:-} ]]; then
    STRATA=$STRATA_BIN
else
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $TARGET_DIR = /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
    STRATA=$TARGET_DIR/release/strata
fi
[[ -x $STRATA ]] || { echo "no strata binary at $STRATA (build it, or set STRATA_BIN)" >&2; exit 1; }
for tool in sqlite3 psql python3 curl; do
    command -v "$tool" >/dev/null || { echo "bench needs $tool on PATH" >&2; exit 1; }
done
PSQL=(env "PGOPTIONS=${PGOPTIONS:-} -c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1)
if [[ " $BACKENDS " == *" postgres "* ]]; then
    "${PSQL[@]}" -d postgres -c 'SELECT 1' >/dev/null || { echo "cannot reach PostgreSQL at $PGHOST:$PGPORT as $PGUSER" >&2; exit 1; }
fi

# --- work dir and cleanup ---------------------------------------------------------------------
mkdir -p "$BENCH/out"
WORK=$(mktemp -d "$BENCH/out/orders-$(date -u +%Y%m%dT%H%M%SZ)-XXXX")
DB=bench_orders_$$
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
    # The seeded book is cheap to regenerate; keep logs and JSON for inspection.
    if [[ ${KEEP_WORK:-0} != 1 ]]; then
        rm -rf "$WORK"/data
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
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
json_get() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print("" if v is None else v)' "$1" "$2"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
met() { awk -v r="$1" -v t="$2" 'BEGIN { print (r != "" && r <= t ? "yes" : "no") }'; }
fmt_int() { python3 -c 'import sys; print(f"{float(sys.argv[1]):,.0f}")' "$1"; }
die() { echo "bench: $*" >&2; exit 1; }
# base64url (no padding) of {"t": MICROS, "i": "UUID"}: the cursor the list endpoint issues.
make_cursor() { python3 -c 'import base64, json, sys; print(base64.urlsafe_b64encode(json.dumps({"t": int(sys.argv[1]), "i": sys.argv[2]}, separators=(",", ":")).encode()).decode().rstrip("="))' "$1" "$2"; }
metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# The seeded book: order i (0-based, oldest first) is created at T0 + i * STEP microseconds,
# STEP = 50 ms, ending a minute before the run. Its id is a UUIDv7 built from that millisecond
# (48-bit Unix ms, version 7, variant 10, the rest from i, so ids are unique and sort like
# created_at); currency cycles EUR, GBP, USD at the fixed provider's rates; the amount is 10.00
# to 5,009.99; btc_sats = ceil(minor * 10^(scale + 6) / rate_units), Strata's own rounding.
STEP=50000
T0=$(( $(date +%s%6N) - BOOK * STEP - 60000000 ))

seed_sqlite() {  # FILE
    sqlite3 "$1" <<SQL
.timeout 10000
PRAGMA cache_size = -262144;
BEGIN IMMEDIATE;
INSERT INTO _strata_orders (id, created_at, currency, amount_minor, exchange_rate, btc_sats, idempotency_key)
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $(( BOOK - 1 ))),
r AS (SELECT i, $T0 + i * $STEP AS t, i % 3 AS c, 1000 + (i * 7919) % 500000 AS minor FROM n)
SELECT printf('%08x-%04x-7%03x-%04x-%012x', (t / 1000) >> 16, (t / 1000) & 65535, i & 4095, 32768 | ((i >> 12) & 16383), i),
       t,
       CASE c WHEN 0 THEN 'EUR' WHEN 1 THEN 'GBP' ELSE 'USD' END,
       minor,
       CASE c WHEN 0 THEN '59000' WHEN 1 THEN '51000.5' ELSE '64000.12' END,
       CASE c WHEN 0 THEN (minor * 1000000 + 58999) / 59000
              WHEN 1 THEN (minor * 10000000 + 510004) / 510005
              ELSE (minor * 100000000 + 6400011) / 6400012 END,
       'seed-' || i
FROM r;
UPDATE _strata_order_book SET total_sats = (SELECT sum(btc_sats) FROM _strata_orders) WHERE id = 1;
COMMIT;
SQL
}

seed_pg() {  # (tenant schema tenant_book)
    "${PSQL[@]}" -d "$DB" <<SQL
SET search_path TO tenant_book;
BEGIN;
INSERT INTO _strata_orders (id, created_at, currency, amount_minor, exchange_rate, btc_sats, idempotency_key)
SELECT (lpad(to_hex((t / 1000) >> 16), 8, '0') || '-' || lpad(to_hex((t / 1000) & 65535), 4, '0') || '-7'
        || lpad(to_hex(i & 4095), 3, '0') || '-' || to_hex(32768 | ((i >> 12) & 16383)) || '-' || lpad(to_hex(i), 12, '0'))::uuid,
       TIMESTAMPTZ 'epoch' + (t / 1000000) * INTERVAL '1 second' + (t % 1000000) * INTERVAL '1 microsecond',
       CASE c WHEN 0 THEN 'EUR' WHEN 1 THEN 'GBP' ELSE 'USD' END,
       minor,
       CASE c WHEN 0 THEN 59000::numeric WHEN 1 THEN 51000.5::numeric ELSE 64000.12::numeric END,
       CASE c WHEN 0 THEN (minor * 1000000 + 58999) / 59000
              WHEN 1 THEN (minor * 10000000 + 510004) / 510005
              ELSE (minor * 100000000 + 6400011) / 6400012 END,
       'seed-' || i
FROM (SELECT i, $T0::bigint + i::bigint * $STEP AS t, i % 3 AS c, 1000 + (i::bigint * 7919) % 500000 AS minor
      FROM generate_series(0, $(( BOOK - 1 ))) AS g(i)) r;
UPDATE _strata_order_book SET total_sats = (SELECT sum(btc_sats) FROM _strata_orders) WHERE id = 1;
COMMIT;
SQL
}

# One SQL query on the backend under test, rows as "a|b".
q() {
    if [[ $backend == sqlite ]]; then
        sqlite3 -cmd '.timeout 10000' "$DATA/tenants/$1.db" "$2"
    else
        "${PSQL[@]}" -At -F '|' -d "$DB" -c "SET search_path TO tenant_$1" -c "$2"
    fi
}
micros() { [[ $backend == sqlite ]] && echo created_at || echo "(extract(epoch FROM created_at) * 1000000)::bigint"; }

# --- per backend ------------------------------------------------------------------------------
declare -A R
for backend in $BACKENDS; do
    DATA=$WORK/data/$backend
    mkdir -p "$DATA"
    if [[ $backend == sqlite ]]; then
        S=("$STRATA" --data-dir "$DATA")
    elif [[ $backend == postgres ]]; then
        "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
        PG_DBS+=("$DB")
        S=("$STRATA" --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$DB")
    else
        die "unknown backend $backend (sqlite or postgres)"
    fi

    # Untimed setup: two tenants, caps raised so nothing is refused, the book seeded and projected.
    LOAD_KEY=$("${S[@]}" tenant create load)
    BOOK_KEY=$("${S[@]}" tenant create book)
    for t in load book; do "${S[@]}" orders set-cap --tenant "$t" --btc 100000000 >/dev/null; done
    log "$backend: seeding $BOOK orders into book's write model"
    t0=$(now)
    if [[ $backend == sqlite ]]; then seed_sqlite "$DATA/tenants/book.db"; else seed_pg; fi
    R[$backend,seed_s]=$(since "$t0")
    t0=$(now)
    "${S[@]}" orders rebuild-read-model --tenant book >"$WORK/$backend-rebuild.txt"
    R[$backend,rebuild_s]=$(since "$t0")
    log "$backend: seeded in ${R[$backend,seed_s]} s; $(cat "$WORK/$backend-rebuild.txt") in ${R[$backend,rebuild_s]} s"

    # The seed must be what it claims: every row in the read model, the total equal to the sum.
    [[ $(q book "SELECT count(*) FROM _strata_orders_view") == "$BOOK" ]] || die "$backend: the read model does not hold $BOOK orders"
    [[ $(q book "SELECT count(DISTINCT created_at) FROM _strata_orders") == "$BOOK" ]] || die "$backend: seeded created_at values are not unique"
    [[ $(q book "SELECT (SELECT total_sats FROM _strata_order_book) = (SELECT sum(btc_sats) FROM _strata_orders)") =~ ^(1|t)$ ]] \
        || die "$backend: the book total is not the sum of the seeded orders"
    [[ $(q book "SELECT min($(micros)) FROM _strata_orders") == "$T0" ]] || die "$backend: seeded created_at is not exact to the microsecond"
    "${S[@]}" orders book --tenant book >"$WORK/$backend-book.txt"

    # The deep page: the DEPTH-th row newest-first is the last one above it.
    row=$(q book "SELECT $(micros), id FROM _strata_orders_view ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET $(( DEPTH - 1 ))")
    CURSOR=$(make_cursor "${row%%|*}" "${row#*|}")
    DEEP_FIRST=$(q book "SELECT id FROM _strata_orders_view ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET $DEPTH")

    # Settle the database so (1) does not pay for the seed's writes.
    if [[ $backend == sqlite ]]; then
        sqlite3 "$DATA/tenants/book.db" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
    else
        "${PSQL[@]}" -d "$DB" -c 'VACUUM (ANALYZE) tenant_book._strata_orders, tenant_book._strata_orders_view' -c 'CHECKPOINT'
    fi

    PORT=$(free_port)
    SERVER_LOG=$WORK/$backend-server.log
    "${S[@]}" serve --grpc-addr 127.0.0.1:0 --http-addr "127.0.0.1:$PORT" --rate-provider fixed >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "strata serve exited; see $SERVER_LOG"
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null || die "strata serve not ready after 30 s"

    # (1) create load; (3) the lag of the projections it causes.
    log "$backend: (1) creating up to $MAX_ORDERS orders with $CLIENTS clients for at most $MAX_SECONDS s"
    python3 "$BENCH/orders_client.py" create --port "$PORT" --key "$LOAD_KEY" --clients "$CLIENTS" \
        --max-orders "$MAX_ORDERS" --max-seconds "$MAX_SECONDS" >"$WORK/$backend-create.json"
    created=$(json_get "$WORK/$backend-create.json" created)
    sent=$(json_get "$WORK/$backend-create.json" sent)
    [[ $created == "$sent" ]] || die "$backend: $sent orders sent but only $created created: $(json_get "$WORK/$backend-create.json" statuses)"
    # Every created order must reach the read model (bounded wait), then the lag is complete.
    t0=$(now)
    for _ in $(seq 1200); do
        n=$(metric strata_projection_lag_seconds_count); n=${n:-0}
        (( ${n%.*} >= created )) && break
        sleep 0.1
    done
    R[$backend,catchup_s]=$(since "$t0")
    (( ${n%.*} >= created )) || die "$backend: only $n of $created orders projected after 120 s"
    [[ $(q load "SELECT count(*) FROM _strata_orders_view") == "$created" ]] || die "$backend: the read model does not hold the $created created orders"
    curl -fsS "http://127.0.0.1:$PORT/metrics" >"$WORK/$backend-metrics.txt"
    python3 "$BENCH/orders_client.py" lag "$SERVER_LOG" --tenant load --metrics "$WORK/$backend-metrics.txt" >"$WORK/$backend-lag.json"
    log "$backend: (1) $(cat "$WORK/$backend-create.json")"
    log "$backend: (3) $(cat "$WORK/$backend-lag.json")"

    # (2) list latency, page 1 vs the page below DEPTH rows.
    walk=()
    [[ $WALK == 1 ]] && walk=(--walk-pages $(( DEPTH / WALK_LIMIT )) --walk-limit "$WALK_LIMIT")
    log "$backend: (2) list latency, page 1 vs depth $DEPTH${walk:+ (walking to it first)}"
    python3 "$BENCH/orders_client.py" list --port "$PORT" --key "$BOOK_KEY" --limit "$LIMIT" --reps "$REPS" \
        --cursor "$CURSOR" "${walk[@]}" >"$WORK/$backend-list.json"
    [[ $(json_get "$WORK/$backend-list.json" depth_first_id) == "$DEEP_FIRST" ]] || die "$backend: the deep page does not start at row $(( DEPTH + 1 ))"
    log "$backend: (2) $(cat "$WORK/$backend-list.json")"

    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
    for k in orders_per_s p50_ms p99_ms created elapsed_s; do R[$backend,c_$k]=$(json_get "$WORK/$backend-create.json" "$k"); done
    for k in page1_median_ms depth_median_ms ratio; do R[$backend,l_$k]=$(json_get "$WORK/$backend-list.json" "$k"); done
    R[$backend,l_walk]=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("walk_page_median_ms", ""))' "$WORK/$backend-list.json")
    for k in projected p50_ms p99_ms max_ms metrics_p99_le_ms after_commit_p50_ms after_commit_p99_ms; do R[$backend,g_$k]=$(json_get "$WORK/$backend-lag.json" "$k"); done
    if [[ $backend == sqlite ]]; then rm -rf "$DATA"; else "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; fi
done

# --- report -----------------------------------------------------------------------------------
CPU=$(grep -m1 -E '^(model name|Model|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
PGVER=$("${PSQL[@]}" -At -d postgres -c 'SHOW server_version' 2>/dev/null || echo unknown)
hdr=$(for b in $BACKENDS; do [[ $b == sqlite ]] && printf ' SQLite |' || printf ' PostgreSQL |'; done)
sep=$(for _ in $BACKENDS; do printf -- '---|'; done)
row() { local name=$1 target=$2 metfn=$3; shift 3; local cells=() m=(); for b in $BACKENDS; do cells+=("$("$@" "$b")"); [[ -n $metfn ]] && m+=("$b: $("$metfn" "$b")"); done
        printf '| %s |' "$name"; printf ' %s |' "${cells[@]}"; printf ' %s | %s |\n' "$target" "${m[*]:-}"; }
c_rate() { echo "$(fmt_int "${R[$1,c_orders_per_s]}") orders/s (${R[$1,c_created]} in ${R[$1,c_elapsed_s]} s)"; }
c_lat() { echo "${R[$1,c_p50_ms]} / ${R[$1,c_p99_ms]} ms"; }
l_p1() { echo "${R[$1,l_page1_median_ms]} ms"; }
l_deep() { echo "${R[$1,l_depth_median_ms]} ms"; }
l_ratio() { echo "${R[$1,l_ratio]}"; }
l_met() { met "${R[$1,l_ratio]}" 1.3; }
g_log() { echo "${R[$1,g_p99_ms]} ms (p50 ${R[$1,g_p50_ms]} ms, max ${R[$1,g_max_ms]} ms; ${R[$1,g_projected]} events)"; }
g_commit() { echo "${R[$1,g_after_commit_p99_ms]} ms (p50 ${R[$1,g_after_commit_p50_ms]} ms)"; }
g_met() { echo "<= ${R[$1,g_metrics_p99_le_ms]:-?} ms"; }
setup() { echo "seed ${R[$1,seed_s]} s, rebuild ${R[$1,rebuild_s]} s"; }
RESULTS=$WORK/orders-results.md
{
    echo "### Strata order benchmark"
    echo
    echo "- Date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "- Machine: $(nproc) CPUs, ${CPU:-unknown CPU}, $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo); PostgreSQL $PGVER"
    echo "- Strata: \`$("$STRATA" --version)\` ($STRATA), \`serve --rate-provider fixed\`, logging JSON lines at info to a file"
    echo "- Client and server share the machine (Python client, $CLIENTS threads with keep-alive connections)"
    echo
    echo "| Measurement |$hdr Target | Met? |"
    echo "|---|$sep---|---|"
    row "(1) Create throughput, $CLIENTS clients, up to $(fmt_int "$MAX_ORDERS") orders or $MAX_SECONDS s" "context" "" c_rate
    row "(1) Create latency p50 / p99 (client side)" "context" "" c_lat
    row "(2) List, page 1 (limit=$LIMIT), median of $REPS" "" "" l_p1
    row "(2) List at depth $(fmt_int "$DEPTH") of $(fmt_int "$BOOK") (limit=$LIMIT), median of $REPS" "" "" l_deep
    row "(2) Ratio depth / page 1" "<= 1.3" l_met l_ratio
    row "(3) Projection lag p99 under (1), from the log's lag_ms" "context" "" g_log
    row "(3) Same, from /metrics (bucket upper bound)" "context" "" g_met
    row "(3) Of which after the commit: log line order.created to order.projected, p99" "context" "" g_commit
    echo
    echo "Setup (untimed): $(for b in $BACKENDS; do printf '%s: %s; ' "$b" "$(setup "$b")"; done)caught up with the read model $(for b in $BACKENDS; do printf '%s %s s, ' "$b" "${R[$b,catchup_s]}"; done | sed 's/, $//') after (1) ended.$( [[ $WALK == 1 ]] && printf ' Walking to the deep page with limit=%s (untimed, every row checked newest first and unique, the cursor checked against the SQL-built one): median page %s.' "$WALK_LIMIT" "$(for b in $BACKENDS; do printf '%s %s ms, ' "$b" "${R[$b,l_walk]}"; done | sed 's/, $//')")"
} >"$RESULTS"
cp "$RESULTS" "$BENCH/out/orders-results.md"
cat "$RESULTS"
log "results written to bench/out/orders-results.md (run files in ${WORK#"$ROOT"/})"
