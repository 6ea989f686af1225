#!/usr/bin/env bash
# Writes the data of a released Strata, for the upgrade test (crates/strata-cli/tests/upgrade.rs):
# a SQLite data directory and a PostgreSQL dump holding every kind of stored state.
#
#   scripts/make-upgrade-fixture.sh STRATA_BIN OUTDIR
#
# Both backends get the same story: tenant `acme` with the HR dataset loaded from data/hr (70
# rows rejected into the log), a second dataset `shop` with typed rows, an idempotent batch,
# backups (one table, then all tables as a set), three BTC orders placed through the API (with
# their events projected into the read model, one replayed), a raised cap, and a blue -> green
# switch in the deployment history. OUTDIR gets:
#   sqlite/            the data directory (control.db, tenants/, backups/)
#   postgres.sql       pg_dump of the database (plain SQL, no owners)
#   postgres-backups/  the PostgreSQL run's backup directory
#   fixture.json       the keys and ids the test needs (fixture data, not real secrets)
#
# Needs curl, jq, psql and pg_dump, and PostgreSQL at 127.0.0.1:5432 (user postgres, trust).
set -euo pipefail
BIN=$(realpath "$1")
OUT=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG=${STRATA_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=strata_fixture_$$
ADMIN=fixture-admin-token-0123456789
rm -rf "$OUT" && mkdir -p "$OUT"
OUT=$(realpath "$OUT")
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -X -q "$PG" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
unset STRATA_DATABASE_URL STRATA_DATA_DIR STRATA_HTTP_ADDR STRATA_GRPC_ADDR
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cat > "$WORK/shop.toml" <<'TOML'
name = "shop"

[[tables]]
name = "products"
primary_key = "sku"
columns = [
  { name = "sku", type = "string", max_length = 12 },
  { name = "price", type = "decimal", precision = 10, scale = 2, min = 0 },
  { name = "launched", type = "date", required = false },
  { name = "active", type = "boolean" },
  { name = "updated_at", type = "datetime", required = false },
]
TOML
printf 'A-1,19.99,2024-02-29,true,2024-02-29T12:34:56.789123Z\nB-2,0.05,1969-07-20,false,\nC-3,123456.70,,1,1999-12-31T23:59:59Z\n' \
    > "$WORK/products.csv"

story() { # backend, strata args...
    local backend=$1; shift
    local S=("$BIN" "$@")
    local key
    key=$("${S[@]}" tenant create acme --dataset hr)
    for t in departments jobs employees; do "${S[@]}" load --tenant acme --table "$t" "$ROOT/data/hr/$t.csv" >/dev/null; done
    "${S[@]}" dataset apply --tenant acme "$WORK/shop.toml" >/dev/null
    "${S[@]}" load --tenant acme --table products "$WORK/products.csv" >/dev/null
    "${S[@]}" backup --tenant acme --table employees >/dev/null
    "${S[@]}" backup --tenant acme --all >/dev/null

    local hb gb hg gg
    hb=$(port); gb=$(port); hg=$(port); gg=$(port)
    "${S[@]}" serve --stack blue --http-addr "127.0.0.1:$hb" --grpc-addr "127.0.0.1:$gb" --rate-provider fixed \
        --fixed-rates USD=48478.88,EUR=59000,GBP=51000.5 --admin-token "$ADMIN" --deploy-poll-ms 50 \
        >"$WORK/$backend-blue.log" 2>&1 &
    PIDS+=($!)
    "${S[@]}" serve --stack green --http-addr "127.0.0.1:$hg" --grpc-addr "127.0.0.1:$gg" --rate-provider fixed \
        --fixed-rates USD=48478.88,EUR=59000,GBP=51000.5 --admin-token "$ADMIN" --deploy-poll-ms 50 \
        >"$WORK/$backend-green.log" 2>&1 &
    PIDS+=($!)
    for p in $hb $hg; do
        for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/ready" >/dev/null && break; sleep 0.1; done
    done
    local api="http://127.0.0.1:$hb"
    order() { # key currency amount
        curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -H "Idempotency-Key: $1" \
            -d "{\"currency\": \"$2\", \"amount\": \"$3\"}" "$api/v1/buy-orders"
    }
    local o1 o2 o3
    o1=$(order fixture-order-1 USD 100.00 | jq -r .id)
    o2=$(order fixture-order-2 EUR 250.50 | jq -r .id)
    o3=$(order fixture-order-3 GBP 12.34 | jq -r .id)
    order fixture-order-1 USD 100.00 >/dev/null   # a replay
    curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -H 'Idempotency-Key: fixture-batch-1' \
        -d '{"rows": [{"employee_id": 5000, "employee_name": "Ada Lovelace", "hiring_date": "2021-07-27T16:02:08Z",
             "department_id": 1, "job_id": 2}]}' "$api/v1/tables/employees/rows" >/dev/null
    # The read model catches up within milliseconds; wait until all three orders are listed.
    for _ in $(seq 100); do
        [[ $(curl -sf -H "Authorization: Bearer $key" "$api/v1/buy-orders?limit=10" | jq '.orders | length') == 3 ]] && break
        sleep 0.1
    done
    "${S[@]}" orders set-cap --tenant acme --btc 250 >/dev/null
    "${S[@]}" deploy switch --to green --announce-ms 200 --drain-timeout-secs 10 --actor fixture >/dev/null
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
    jq -n --arg key "$key" --arg o1 "$o1" --arg o2 "$o2" --arg o3 "$o3" \
        '{key: $key, orders: {"fixture-order-1": $o1, "fixture-order-2": $o2, "fixture-order-3": $o3}}' \
        > "$WORK/$backend.json"
}

story sqlite --data-dir "$OUT/sqlite"
# Fold each write-ahead log into its database, so the fixture is plain database files.
python3 - "$OUT"/sqlite/control.db "$OUT"/sqlite/tenants/*.db <<'PY'
import sqlite3, sys
for path in sys.argv[1:]:
    c = sqlite3.connect(path)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.execute("PRAGMA journal_mode=DELETE")
    c.close()
PY

psql -X -q "$PG" -c "CREATE DATABASE $DB" >/dev/null
URL="${PG%/*}/$DB"
story postgres --database-url "$URL" --backup-dir "$OUT/postgres-backups"
pg_dump --no-owner --no-privileges "$URL" > "$OUT/postgres.sql"

jq -n --arg version "$("$BIN" --version)" --arg admin "$ADMIN" \
    --slurpfile s "$WORK/sqlite.json" --slurpfile p "$WORK/postgres.json" \
    '{written_by: $version, admin_token: $admin, sqlite: $s[0], postgres: $p[0]}' > "$OUT/fixture.json"
echo "fixture written to $OUT" >&2
