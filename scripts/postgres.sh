#!/usr/bin/env bash
# Start (or reuse) a private PostgreSQL server on 127.0.0.1 for the database tests and print its URL.
# Needs Debian's `postgresql` package (its binaries); the cluster lives in a throwaway folder.
# `--running` exits 0 when the server is up (and starts nothing); `--stop` stops it.
# The test server runs with fsync=off (throwaway data, faster tests). For benchmark figures a user's server
# would give, start a second, durable one: MS_PG_DIR=/tmp/ms-pg-durable MS_PG_PORT=55433 MS_PG_FSYNC=on.
set -euo pipefail
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$PGBIN" ]; then
  echo "PostgreSQL binaries not found (apt-get install postgresql)" >&2
  exit 1
fi
DIR=${MS_PG_DIR:-/tmp/marketing-suite-pg}
PORT=${MS_PG_PORT:-55432}
FSYNC=${MS_PG_FSYNC:-off}
AS=()
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); fi
case "${1:-}" in
  --running) [ -f "$DIR/PG_VERSION" ] && "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; exit $? ;;
  --stop) "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null 2>&1 || true; exit 0 ;;
esac
if [ ! -f "$DIR/PG_VERSION" ]; then
  mkdir -p "$DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; fi
  "${AS[@]}" "$PGBIN/initdb" -D "$DIR" -A trust -U postgres >"$DIR.initdb.log" 2>&1
fi
if ! "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR" -w -l "$DIR/server.log" \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=$FSYNC" start >/dev/null
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
