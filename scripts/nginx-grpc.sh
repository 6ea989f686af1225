#!/usr/bin/env bash
# Renders deploy/nginx/strata-grpc.conf into PREFIX and runs nginx in the foreground.
#
#   scripts/nginx-grpc.sh PREFIX LISTEN BLUE_GRPC GREEN_GRPC [ACTIVE]
#   scripts/nginx-grpc.sh /tmp/strata-nginx 127.0.0.1:50050 127.0.0.1:50051 127.0.0.1:50052 blue
#
# Then keep calls without a strategy header on the active stack across switches with
#   strata deploy switch --to green --nginx-active-file PREFIX/active-stack.conf \
#       --nginx-reload "nginx -p PREFIX -c PREFIX/nginx.conf -s reload"
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
prefix=$1 listen=$2 blue=$3 green=$4 active=${5:-blue}
case "$active" in blue|green) ;; *) echo "ACTIVE must be blue or green" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
sed -e "s|@PREFIX@|$prefix|g" -e "s|@LISTEN@|$listen|g" -e "s|@BLUE@|$blue|g" -e "s|@GREEN@|$green|g" \
  "$here/deploy/nginx/strata-grpc.conf" >"$prefix/nginx.conf"
if [ ! -f "$prefix/active-stack.conf" ]; then
  printf 'map $host $strata_active { default %s; }\n' "$active" >"$prefix/active-stack.conf"
fi
nginx=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
"$nginx" -t -q -p "$prefix" -c "$prefix/nginx.conf"
exec "$nginx" -p "$prefix" -c "$prefix/nginx.conf"
