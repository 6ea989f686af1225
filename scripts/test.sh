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
# The real e6data Python connector (the version ../shared/protocols/e6data-wire.md studied) is
# the judge of the gRPC query service; it needs a C compiler for Thrift's accelerator.
# Schemathesis judges the HTTP API against its served OpenAPI document.
if ! "$venv/bin/python" -c 'import fastavro, backports.zstd, cramjam, e6data_python_connector, schemathesis' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'fastavro==1.13.1' 'backports.zstd>=1.0' 'cramjam>=2.8' 'e6data-python-connector==3.0.2' \
    'schemathesis==4.32.5'
fi
export STRATA_TEST_PYTHON="$venv/bin/python"

# Blue/green tests put real nginx (Debian's package) in front of two query-service stacks,
# with the config in deploy/nginx and scripts/nginx-grpc.sh. The package's own service on
# port 80 is left alone; tests run private instances on ephemeral ports.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's nginx for the blue/green tests…" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  else
    echo "warning: nginx is missing and cannot be installed here (needs root and apt-get);" >&2
    echo "         the blue/green tests will fail. Install Debian's nginx." >&2
  fi
fi
export PATH="$PATH:/usr/sbin"

# The README's examples (run in order by crates/strata-cli/tests/readme.rs) use curl and jq.
if ! command -v jq >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing curl and jq for the README test…" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl jq >/dev/null
  else
    echo "warning: curl or jq is missing and cannot be installed here; the README test will fail." >&2
  fi
fi

# The browser test of the reports dashboard drives Debian's Chromium with playwright-core
# (crates/strata-http/tests/browser). Chromium comes from apt (needs root, as on CI);
# playwright-core from npm, at the exact version package.json pins, into that folder's
# node_modules (git-ignored). Both are installed once and skipped when already there.
chromium="${STRATA_TEST_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ "$chromium" = /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's chromium for the browser tests…" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: $chromium is missing and cannot be installed here (needs root and apt-get);" >&2
    echo "         the browser tests will fail. Install Debian's chromium or set STRATA_TEST_CHROMIUM." >&2
  fi
fi
export STRATA_TEST_CHROMIUM="$chromium"
browser_dir="$PWD/crates/strata-http/tests/browser"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  want=$(D="$browser_dir" node -p "require(process.env.D + '/package.json').dependencies['playwright-core']")
  have=$(D="$browser_dir" node -p "require(process.env.D + '/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    (cd "$browser_dir" && npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null)
  fi
else
  echo "warning: node and npm are missing; the browser tests will fail. Install Node.js 20 or newer." >&2
fi
export STRATA_TEST_BROWSER_DIR="$browser_dir"
export STRATA_TEST_NODE_MODULES="$browser_dir/node_modules"

# Style and lints are part of the suite: unformatted code or a clippy warning fails it.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/check-file-size.sh

cargo test --workspace --locked "$@"
