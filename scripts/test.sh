#!/usr/bin/env bash
# Runs Strata's whole test suite: unit tests and the integration tests, which start the real
# server on port 0 against SQLite files and against PostgreSQL databases of their own.
#
# Needs: a Rust toolchain and PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres
# (override with STRATA_TEST_DATABASE_URL=postgres://user@host:port/admin_db). Each test creates
# and drops its own database; nothing else on the server is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

admin_url="${STRATA_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if command -v pg_isready >/dev/null 2>&1; then
  if ! pg_isready -d "$admin_url" -q; then
    echo "PostgreSQL is not reachable at $admin_url; the suite runs every test on it too." >&2
    echo "Start it, or point STRATA_TEST_DATABASE_URL at one you may create databases in." >&2
    exit 1
  fi
fi

# Leftover databases from an interrupted earlier run (tests drop their own on success).
if command -v psql >/dev/null 2>&1; then
  psql "$admin_url" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'strata_test_%'" 2>/dev/null \
    | while read -r db; do
        # Only drop databases nobody is connected to: a concurrent run keeps its own.
        psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
      done
fi

# Python libraries written by others, which the interoperability tests use as the judge
# (fastavro reads our backups and writes files we must restore). Installed once into a venv.
venv="${STRATA_TEST_VENV:-$HOME/.cache/strata-test-venv}"
if ! "$venv/bin/python" -c 'import fastavro, backports.zstd, cramjam' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'fastavro==1.13.1' 'backports.zstd>=1.0' 'cramjam>=2.8'
fi
export STRATA_TEST_PYTHON="$venv/bin/python"

cargo test --workspace --locked "$@"
