#!/usr/bin/env bash
# Strata backup/restore benchmarks, on SQLite and on PostgreSQL side by side:
#   (1) strata backup  vs a Python script with fastavro (same table, same schema, zstandard)
#   (2) strata restore vs the same script reading the backup back and replacing the rows
#   (3) strata restore vs strata load of the same rows into an empty table
#
#   bench/backup.sh [ROWS]       (default 1000000 generated rows; about 97% are valid)
#
# Environment:
#   STRATA_BIN=PATH   use this binary instead of target/release/strata (e.g. a debug build)
#   SKIP_BUILD=1      do not run `cargo build --release -p strata-cli`
#   REPS=N            repetitions per measurement (default 3; the median is reported)
#   PG_RESTORE_METHOD the baseline's PostgreSQL restore: copy-binary (default), copy, executemany
#   BENCH_VENV=DIR    the Python venv for the baseline (default bench/out/venv; made if needed)
#   PGHOST/PGPORT/PGUSER   PostgreSQL server (default 127.0.0.1:5432, user postgres, trust auth)
#   KEEP_WORK=1       keep the generated CSV, data dirs and Avro files under bench/out/
#
# Writes bench/out/backup-results.md (a Markdown table for docs/benchmarks.md) and prints it.
set -euo pipefail

ROWS=${1:-1000000}
REPS=${REPS:-3}
PG_RESTORE_METHOD=${PG_RESTORE_METHOD:-copy-binary}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER

if ! [[ $ROWS =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: bench/backup.sh [ROWS]   (ROWS a positive integer, default 1000000)" >&2
    exit 2
fi
if ! [[ $REPS =~ ^[1-9][0-9]*$ ]]; then
    echo "REPS must be a positive integer" >&2
    exit 2
fi
case $PG_RESTORE_METHOD in
    copy-binary | copy | executemany) ;;
    *) echo "PG_RESTORE_METHOD must be copy-binary, copy or executemany" >&2; exit 2 ;;
esac

# Fixed locale: awk, sort -g and printf must all read and write "1.234".
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
cd "$ROOT"

# Every strata flag also reads a STRATA_* variable; a stray STRATA_DATABASE_URL would silently
# send the "SQLite" runs to PostgreSQL, so clear them and pass everything explicitly.
unset STRATA_DATABASE_URL STRATA_DATA_DIR STRATA_BACKUP_DIR STRATA_BACKUP_RETAIN STRATA_TENANT \
    STRATA_HTTP_ADDR STRATA_PG_POOL_SIZE STRATA_LOG

log() { printf '[backup-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { echo "backup bench: $*" >&2; exit 1; }

# --- the binary and the tools -----------------------------------------------------------------
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
[[ -x $STRATA ]] || die "no strata binary at $STRATA (build it, or set STRATA_BIN)"
for tool in sqlite3 psql python3; do
    command -v "$tool" >/dev/null || die "needs $tool on PATH"
done
# -X: ignore ~/.psqlrc; ON_ERROR_STOP: fail on any error; client_min_messages hides the
# "does not exist, skipping" notices of DROP DATABASE IF EXISTS (set for psql only, not strata).
PSQL=(env "PGOPTIONS=${PGOPTIONS:-} -c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d postgres -c 'SELECT 1' >/dev/null || die "cannot reach PostgreSQL at $PGHOST:$PGPORT as $PGUSER"

# --- the baseline's Python packages, in a venv of their own (installed once) -------------------
# Pinned so that runs on different days compare the same baseline; fastavro as in scripts/test.sh.
PY_PKGS=('fastavro==1.13.1' 'psycopg[binary]==3.3.9' 'backports.zstd==1.8.0')
VENV=${BENCH_VENV:-$BENCH/out/venv}
PY=$VENV/bin/python
venv_ok() {
    [[ -x $PY ]] && "$PY" - "${PY_PKGS[@]}" >/dev/null 2>&1 <<'EOF'
import re, sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = re.fullmatch(r"([\w.]+)(?:\[\w+\])?==(.+)", spec).groups()
    assert version(name) == want, spec
import fastavro, psycopg, backports.zstd
assert psycopg.pq.__impl__ in ("binary", "c"), psycopg.pq.__impl__  # not the slow pure-Python libpq wrapper
EOF
}
if ! venv_ok; then
    log "installing ${PY_PKGS[*]} into ${VENV#"$ROOT"/}"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check "${PY_PKGS[@]}"
    venv_ok || die "the venv at $VENV lacks ${PY_PKGS[*]} after installing them"
fi

# --- work dir and cleanup ---------------------------------------------------------------------
mkdir -p "$BENCH/out"
WORK=$(mktemp -d "$BENCH/out/backup-$(date -u +%Y%m%dT%H%M%SZ)-XXXX")
PG_DBS=()

# No server is started here (every step is a CLI process that exits), so cleanup only drops
# the databases and the bulky files.
cleanup() {
    local rc=$?
    for db in "${PG_DBS[@]}"; do
        "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    # The big files are cheap to regenerate; keep logs, reports and results for inspection.
    if [[ ${KEEP_WORK:-0} != 1 ]]; then
        rm -rf "$WORK"/*.csv "$WORK"/*.avro "$WORK"/data
    fi
    if [[ $rc -ne 0 ]]; then
        echo "backup bench failed (exit $rc); logs in $WORK" >&2
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
met_ge() { awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t ? "yes" : "no") }'; }
met_le() { awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t ? "yes" : "no") }'; }
# json_get FILE KEY [INDEX]: a top-level key of a JSON object, or of the INDEX-th element of an array.
json_get() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d = d[int(sys.argv[3])] if len(sys.argv) > 3 else d; print(d[sys.argv[2]])' "$@"; }

# A strata tenant with the HR dataset, departments and jobs loaded (untimed setup).
# Usage: setup_tenant STORAGE-FLAGS...
setup_tenant() {
    "$STRATA" "$@" tenant create bench --dataset hr >/dev/null
    "$STRATA" "$@" load --tenant bench --table departments "$ROOT/data/hr/departments.csv" >/dev/null
    "$STRATA" "$@" load --tenant bench --table jobs "$ROOT/data/hr/jobs.csv" >/dev/null
}

pg_recreate() {
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
    PG_DBS+=("$1")
}
pg_drop() { "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; }

# The employees table's contents, summarized: count, then sums over every column. Equal digests
# before the backup and after a restore mean the same rows came back (not just as many).
# Usage: digest sqlite DBFILE | digest pg DBNAME
digest() {
    if [[ $1 == sqlite ]]; then
        sqlite3 "$2" "SELECT count(*), sum(employee_id), sum(length(employee_name)), sum(unicode(employee_name)),
                             sum(hiring_date / 1000000), sum(hiring_date % 1000000), sum(department_id), sum(job_id)
                      FROM employees"
    else
        "${PSQL[@]}" -d "$2" -tA -F '|' -c "SELECT count(*), sum(employee_id), sum(length(employee_name)), sum(ascii(employee_name)),
                             sum(extract(epoch FROM hiring_date)::bigint), sum(extract(microseconds FROM hiring_date)::bigint % 1000000),
                             sum(department_id), sum(job_id)
                      FROM tenant_bench.employees"
    fi
}
# Usage: check_restored LABEL KIND DB EXPECTED-DIGEST
check_restored() {
    local got
    got=$(digest "$2" "$3")
    if [[ ${got%%|*} != "${4%%|*}" ]]; then
        die "$1: the table has ${got%%|*} rows after the restore, expected ${4%%|*}"
    fi
    [[ $got == "$4" ]] || die "$1: the restored rows differ from the backed-up ones (digest $got, expected $4)"
}

# Before each timed step, settle what the previous step left behind, so that neither side pays
# for the other: SQLite folds its WAL back into the database file; PostgreSQL vacuums away
# dead rows of the last restore and sets the hint bits a bulk load leaves for the first reader.
settle() {
    if [[ $1 == sqlite ]]; then
        sqlite3 "$2" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
    else
        "${PSQL[@]}" -d "$2" -c 'VACUUM (ANALYZE) tenant_bench.employees'
    fi
}

# --- input ------------------------------------------------------------------------------------
CSV=$WORK/employees.csv
log "generating $ROWS rows into ${CSV#"$ROOT"/}"
python3 "$BENCH/gen_employees.py" --rows "$ROWS" -o "$CSV"
# (3) loads exactly the rows a backup holds: the ones Strata accepts from the generated file
# (the same filter as bench/run.sh's typed baseline; checked below against what Strata kept).
CLEAN_CSV=$WORK/employees.clean.csv
python3 - "$CSV" "$CLEAN_CSV" <<'EOF'
import csv, re, sys
dt = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ$")
def ok(r):
    return (len(r) == 5 and all(r) and r[0].isdigit() and dt.match(r[2])
            and r[3].isdigit() and 1 <= int(r[3]) <= 12 and r[4].isdigit() and 1 <= int(r[4]) <= 183)
with open(sys.argv[1], newline="") as src, open(sys.argv[2], "w", newline="") as dst:
    w = csv.writer(dst, lineterminator="\n")
    w.writerows(r for r in csv.reader(src) if ok(r))
EOF
CLEAN_ROWS=$(wc -l <"$CLEAN_CSV")
mkdir -p "$WORK/data"

# --- one database kind: (1) backup, (2) restore, (3) restore vs load ---------------------------
# Usage: bench_kind sqlite|pg   Appends the seconds of each rep to the arrays <kind>_sb (strata
# backup), _pb (script backup), _sr (strata restore), _pr (script restore), _ld (strata load), and
# sets <kind>_bytes to the sizes of the two backup files.
bench_kind() {
    local kind=$1 i dir db db_ref url id file pyfile ref t0 load_db load_dir
    local -a st ld_st py_db
    local -n SB=${kind}_sb PB=${kind}_pb SR=${kind}_sr PR=${kind}_pr LD=${kind}_ld BYTES=${kind}_bytes
    for i in $(seq "$REPS"); do
        dir=$WORK/data/${kind}_$i
        if [[ $kind == sqlite ]]; then
            st=(--data-dir "$dir" --backup-dir "$dir/backups")
            db_ref=$dir/tenants/bench.db
            py_db=(--sqlite "$db_ref")
        else
            db=bench_bk_pg_$i
            pg_recreate "$db"
            url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
            st=(--database-url "$url" --backup-dir "$dir/backups")
            db_ref=$db
            py_db=(--pg "$url" --pg-schema tenant_bench)
        fi

        # Untimed setup: the tenant, departments, jobs and the generated employees.
        setup_tenant "${st[@]}"
        "$STRATA" "${st[@]}" load --tenant bench --table employees "$CSV" --json >"$WORK/${kind}_setup_$i.json"
        ref=$(digest "$kind" "$db_ref")
        [[ ${ref%%|*} == "$CLEAN_ROWS" ]] \
            || die "$kind: strata load kept ${ref%%|*} employees, but the valid-row filter found $CLEAN_ROWS"
        TABLE_ROWS=${ref%%|*}

        # (1) backup: strata, then the fastavro script (with Strata's writer schema).
        settle "$kind" "$db_ref"
        t0=$(now)
        "$STRATA" "${st[@]}" backup --tenant bench --table employees --codec zstd --json >"$WORK/${kind}_backup_$i.json"
        SB+=("$(since "$t0")")
        id=$(json_get "$WORK/${kind}_backup_$i.json" id 0)
        file=$dir/backups/bench/employees/$id.avro
        [[ -f $file ]] || die "$kind: strata backup $id has no file at $file"
        [[ $(json_get "$WORK/${kind}_backup_$i.json" rows 0) == "$TABLE_ROWS" ]] \
            || die "$kind: strata backup $id holds $(json_get "$WORK/${kind}_backup_$i.json" rows 0) rows, the table $TABLE_ROWS"

        pyfile=$WORK/${kind}_fastavro_$i.avro
        settle "$kind" "$db_ref"
        t0=$(now)
        "$PY" "$BENCH/fastavro_backup.py" backup "${py_db[@]}" --schema-from "$file" "$pyfile" >"$WORK/${kind}_pybackup_$i.json"
        PB+=("$(since "$t0")")
        # Untimed: both files hold the same schema, codec and records.
        "$PY" - "$file" "$pyfile" >"$WORK/${kind}_compare_$i.txt" <<'EOF' || die "$kind: the fastavro backup differs from Strata's; see $WORK/${kind}_compare_$i.txt"
import sys, fastavro
a, b = (fastavro.reader(open(p, "rb")) for p in sys.argv[1:])
if a.writer_schema != b.writer_schema or a.codec != b.codec:
    sys.exit(f"schema/codec differ: {a.writer_schema} {a.codec} vs {b.writer_schema} {b.codec}")
n = 0
for x, y in zip(a, b, strict=True):
    if x != y:
        sys.exit(f"record {n} differs: {x} vs {y}")
    n += 1
print(f"{n} identical records, codec {a.codec}")
EOF

        # (2) restore: strata from its backup, then the script from the same file. Each replaces
        # the table's current rows, so the table is full before both.
        settle "$kind" "$db_ref"
        t0=$(now)
        "$STRATA" "${st[@]}" restore --tenant bench --table employees --backup "$id" --json >"$WORK/${kind}_restore_$i.json"
        SR+=("$(since "$t0")")
        check_restored "$kind strata restore (rep $i)" "$kind" "$db_ref" "$ref"

        settle "$kind" "$db_ref"
        t0=$(now)
        if [[ $kind == sqlite ]]; then
            "$PY" "$BENCH/fastavro_backup.py" restore "${py_db[@]}" "$file" >"$WORK/${kind}_pyrestore_$i.json"
        else
            "$PY" "$BENCH/fastavro_backup.py" restore "${py_db[@]}" --method "$PG_RESTORE_METHOD" "$file" >"$WORK/${kind}_pyrestore_$i.json"
        fi
        PR+=("$(since "$t0")")
        check_restored "$kind fastavro restore (rep $i)" "$kind" "$db_ref" "$ref"
        [[ $(json_get "$WORK/${kind}_pyrestore_$i.json" rows) == "$TABLE_ROWS" ]] || die "$kind: the fastavro restore read $(json_get "$WORK/${kind}_pyrestore_$i.json" rows) rows"

        # (3) strata load of the same rows into an empty employees table of a fresh tenant.
        load_dir=$WORK/data/${kind}_load_$i
        if [[ $kind == sqlite ]]; then
            ld_st=(--data-dir "$load_dir")
            load_db=$load_dir/tenants/bench.db
        else
            load_db=bench_bk_pgload_$i
            pg_recreate "$load_db"
            ld_st=(--database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$load_db" --backup-dir "$load_dir/backups")
        fi
        setup_tenant "${ld_st[@]}"
        t0=$(now)
        "$STRATA" "${ld_st[@]}" load --tenant bench --table employees "$CLEAN_CSV" --json >"$WORK/${kind}_load_$i.json"
        LD+=("$(since "$t0")")
        [[ $(json_get "$WORK/${kind}_load_$i.json" inserted) == "$TABLE_ROWS" && $(json_get "$WORK/${kind}_load_$i.json" rejected) == 0 ]] \
            || die "$kind: strata load of the valid rows inserted $(json_get "$WORK/${kind}_load_$i.json" inserted), rejected $(json_get "$WORK/${kind}_load_$i.json" rejected); expected $TABLE_ROWS and 0"
        check_restored "$kind strata load (rep $i)" "$kind" "$load_db" "$ref"

        # Sizes for the report, then free the space (and the databases) before the next rep.
        BYTES=("$(wc -c <"$file" | tr -d ' ')" "$(wc -c <"$pyfile" | tr -d ' ')")
        if [[ $kind == pg ]]; then
            pg_drop "$db"
            pg_drop "$load_db"
        fi
        rm -rf "$dir" "$load_dir" "$pyfile"
        log "$kind rep $i: backup strata ${SB[-1]} s, script ${PB[-1]} s; restore strata ${SR[-1]} s, script ${PR[-1]} s; load ${LD[-1]} s"
    done
}

sqlite_sb=() sqlite_pb=() sqlite_sr=() sqlite_pr=() sqlite_ld=() sqlite_bytes=()
pg_sb=() pg_pb=() pg_sr=() pg_pr=() pg_ld=() pg_bytes=()
TABLE_ROWS=0
log "SQLite: $REPS repetitions"
bench_kind sqlite
log "PostgreSQL: $REPS repetitions"
bench_kind pg

# --- report -----------------------------------------------------------------------------------
CPU=$(grep -m1 -E '^(model name|Model|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
PYVERS=$("$PY" -c 'import sys, fastavro, psycopg; from importlib.metadata import version; z = version("backports.zstd"); print(f"Python {sys.version.split()[0]}, fastavro {fastavro.__version__}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), backports.zstd {z}")')
fmt_int() { python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$1"; }

# Usage: rows KIND LABEL   Prints the three table rows of one database kind.
rows() {
    local kind=$1 label=$2 sb pb sr pr ld r1 r2 r3
    local -n SB=${kind}_sb PB=${kind}_pb SR=${kind}_sr PR=${kind}_pr LD=${kind}_ld
    sb=$(median "${SB[@]}") pb=$(median "${PB[@]}") sr=$(median "${SR[@]}") pr=$(median "${PR[@]}") ld=$(median "${LD[@]}")
    r1=$(div "$pb" "$sb")
    r2=$(div "$pr" "$sr")
    r3=$(div "$sr" "$ld")
    echo "| (1) backup, $label | fastavro script: $pb s | \`strata backup\`: $sb s | $r1 (script / strata) | >= 3.0 | $(met_ge "$r1" 3.0) |"
    echo "| (2) restore, $label | fastavro script: $pr s | \`strata restore\`: $sr s | $r2 (script / strata) | >= 3.0 | $(met_ge "$r2" 3.0) |"
    echo "| (3) restore vs load, $label | \`strata load\` into an empty table: $ld s | \`strata restore\`: $sr s | $r3 (restore / load) | <= 1.5 | $(met_le "$r3" 1.5) |"
}
runs() {
    local -n SB=${1}_sb PB=${1}_pb SR=${1}_sr PR=${1}_pr LD=${1}_ld
    echo "backup strata ${SB[*]}, script ${PB[*]}; restore strata ${SR[*]}, script ${PR[*]}; load ${LD[*]}"
}

RESULTS=$WORK/backup-results.md
{
    echo "### Strata backup and restore benchmark"
    echo
    echo "- Date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "- Machine: $(nproc) CPUs, ${CPU:-unknown CPU}"
    echo "- Rows: $(fmt_int "$TABLE_ROWS") employees in the table (the valid rows of $(fmt_int "$ROWS") generated by bench/gen_employees.py)"
    echo "- Backup files (zstandard): Strata $(fmt_int "${sqlite_bytes[0]}") bytes, fastavro $(fmt_int "${sqlite_bytes[1]}") bytes (SQLite); Strata $(fmt_int "${pg_bytes[0]}") bytes, fastavro $(fmt_int "${pg_bytes[1]}") bytes (PostgreSQL)"
    echo "- Strata: \`$("$STRATA" --version)\` ($STRATA)"
    echo "- Baseline: bench/fastavro_backup.py on $PYVERS"
    echo "- Each figure is the median wall-clock time of $REPS runs, process start-up (and Python imports) included"
    echo
    echo "| Measurement | Baseline | Strata | Ratio | Target | Met? |"
    echo "|---|---|---|---|---|---|"
    rows sqlite SQLite
    rows pg PostgreSQL
    echo
    echo "Runs (seconds): SQLite: $(runs sqlite). PostgreSQL: $(runs pg)."
    echo
    echo "What each side does:"
    echo
    echo "- \`strata backup --tenant bench --table employees --codec zstd\` reads the table in one snapshot in key order, writes an Avro container file (1 MiB blocks, zstd level 3) with a SHA-256 as it goes, fsyncs and renames it, and registers it with a manifest."
    echo "- The script's backup: $(json_get "$WORK/sqlite_pybackup_1.json" how) (SQLite, hiring_date stored as integer microseconds); $(json_get "$WORK/pg_pybackup_1.json" how) (PostgreSQL). Strata's writer schema comes from the header of Strata's file (\`--schema-from\`). It does not fsync. Both files were checked (untimed) to hold the same schema, codec and records."
    echo "- \`strata restore --backup ID\` checks the file's SHA-256 against the manifest, validates every row against the data dictionary, replaces the rows (DELETE, then insert) in one transaction and checks the foreign keys before committing."
    echo "- The script's restore reads the same Strata file with fastavro: SQLite: $(json_get "$WORK/sqlite_pyrestore_1.json" how) (Python's sqlite3, so no foreign-key checks; datetimes converted back to integer microseconds); PostgreSQL: $(json_get "$WORK/pg_pyrestore_1.json" how) (\`PG_RESTORE_METHOD=$PG_RESTORE_METHOD\`; copy-binary beat text COPY and executemany in trials). No validation, no checksum."
    echo "- (3) \`strata load\` reads a CSV of exactly the rows in the backup (the generated file without its invalid rows, filtered untimed) into the empty employees table of a fresh tenant; the restore it is compared with replaces a full table."
    echo "- Every restore and load is followed by a check (untimed) that the table has the backed-up number of rows and the same column sums. Untimed setup: a fresh tenant per repetition (data dir, or PostgreSQL databases bench_bk_pg_N and bench_bk_pgload_N, dropped by the script), departments, jobs and the generated employees loaded with \`strata load\`; before each timed step a WAL checkpoint (SQLite) or \`VACUUM (ANALYZE)\` (PostgreSQL)."
} >"$RESULTS"
cp "$RESULTS" "$BENCH/out/backup-results.md"
cat "$RESULTS"
log "results written to bench/out/backup-results.md (run files in ${WORK#"$ROOT"/})"
