#!/usr/bin/env bash
# Source files stay under about 600 lines unless their top says why (a `//! Size:` line):
# a long file is a sign that it holds more than one thing. Part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=650
bad=0
while IFS= read -r f; do
  n=$(wc -l < "$f")
  if (( n > limit )) && ! head -40 "$f" | grep -q '^//! Size:'; then
    echo "$f has $n lines and no '//! Size:' reason at its top (limit $limit)" >&2
    bad=1
  fi
done < <(find crates -path '*/src/*' -name '*.rs' | sort)
exit $bad
