#!/usr/bin/env bash
# Counts the lines of strata-store written once per database: every file named sqlite.rs,
# postgres.rs or pg.rs under crates/strata-store/src, without blank lines, comment lines and
# `#[cfg(test)]` modules. docs/architecture.md quotes the figure.
set -euo pipefail
cd "$(dirname "$0")/../crates/strata-store/src"
total=0
while IFS= read -r f; do
  n=$(awk '/^#\[cfg\(test\)\]/ { exit } { sub(/^[ \t]+/, "") } $0 == "" || /^\/\// { next } { n++ } END { print n + 0 }' "$f")
  printf '%6d  %s\n' "$n" "$f"
  total=$((total + n))
done < <(find . \( -name sqlite.rs -o -name postgres.rs -o -name pg.rs \) | sort)
printf '%6d  total\n' "$total"
