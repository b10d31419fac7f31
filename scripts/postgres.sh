#!/usr/bin/env bash
# A PostgreSQL server for tests, the demo and the benchmarks: Debian's PostgreSQL (15),
# one cluster in a data directory of its own, listening on 127.0.0.1 only (and a unix
# socket in the data directory), trust authentication — a test server, never a
# production one.
#
#   scripts/postgres.sh start   # initdb once (UTF-8, C.UTF-8 locale), start, wait until ready
#   scripts/postgres.sh stop    # fast shutdown (waits)
#   scripts/postgres.sh status  # exit 0 when running and answering
#   scripts/postgres.sh url [DB]  # the connection URL (database DB, default postgres)
#
# Environment (all optional):
#   QA_PG_DIR      data directory (default <repo>/out/postgres)
#   QA_PG_PORT     port on 127.0.0.1 (default 55432)
#   QA_PG_BIN      PostgreSQL's programs (default: the newest /usr/lib/postgresql/*/bin)
#   QA_PG_USER     system user that runs the server when this script runs as root
#                  (initdb refuses root; default postgres)
#   QA_PG_TIMEOUT  seconds to wait for the server to answer (default 30)
#   QA_PG_SHARED_BUFFERS  the server's shared_buffers (default 512MB: the search index of
#                  100,000 calls, 256 MB, stays in memory; PostgreSQL's own default,
#                  128MB, is sized for a small machine; a deployment sets ~25 % of RAM)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QA_PG_DIR="${QA_PG_DIR:-$ROOT/out/postgres}"
QA_PG_PORT="${QA_PG_PORT:-55432}"
QA_PG_USER="${QA_PG_USER:-postgres}"
QA_PG_TIMEOUT="${QA_PG_TIMEOUT:-30}"
DATA="$QA_PG_DIR/data"
LOG_FILE="$QA_PG_DIR/postgres.log"

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_bin() {
  if [[ -n "${QA_PG_BIN:-}" ]]; then
    echo "$QA_PG_BIN"
    return
  fi
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -n "$d" && -x "$d/initdb" ]] \
    || die "PostgreSQL not found. Install it: apt-get install -y postgresql (or scripts/setup --test)"
  echo "$d"
}

# run a PostgreSQL program as the server's user (root: via runuser)
as_pg() {
  if [[ "$(id -u)" -eq 0 ]]; then
    runuser -u "$QA_PG_USER" -- "$@"
  else
    "$@"
  fi
}

url() {
  echo "postgresql://postgres@127.0.0.1:$QA_PG_PORT/${1:-postgres}"
}

ready() {
  as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$QA_PG_PORT" -d postgres -U postgres
}

is_running() {
  [[ -f "$DATA/postmaster.pid" ]] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
  if is_running; then
    ready || die "running but not answering on 127.0.0.1:$QA_PG_PORT; see $LOG_FILE"
    log "already running (port $QA_PG_PORT, $DATA)"
    return 0
  fi
  mkdir -p "$QA_PG_DIR"
  if [[ "$(id -u)" -eq 0 ]]; then
    id "$QA_PG_USER" >/dev/null 2>&1 || die "user $QA_PG_USER missing (Debian's postgresql creates it)"
    chown "$QA_PG_USER" "$QA_PG_DIR"
    runuser -u "$QA_PG_USER" -- test -w "$QA_PG_DIR" \
      || die "user $QA_PG_USER cannot reach $QA_PG_DIR (a parent directory is closed to it); set QA_PG_DIR, e.g. /tmp/qa-postgres"
  fi
  if [[ ! -f "$DATA/PG_VERSION" ]]; then
    rm -rf "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -E UTF8 --locale=C.UTF-8 -A trust -U postgres -N \
      >"$QA_PG_DIR/initdb.log" 2>&1 || die "initdb failed; see $QA_PG_DIR/initdb.log"
    log "initialised $DATA (UTF8, C.UTF-8)"
  fi
  # loopback only; the unix socket in the data directory (not /var/run/postgresql);
  # a test server: no fsync wait per commit (initdb -N: no sync of the new cluster either)
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG_FILE" -w -t "$QA_PG_TIMEOUT" \
    -o "-c listen_addresses=127.0.0.1 -p $QA_PG_PORT -c unix_socket_directories='$DATA' -c max_connections=200 -c shared_buffers=${QA_PG_SHARED_BUFFERS:-512MB} -c synchronous_commit=off -c fsync=off -c full_page_writes=off" \
    start >/dev/null || die "did not start; see $LOG_FILE"
  local waited=0
  until ready; do
    (( waited++ < QA_PG_TIMEOUT * 10 )) || die "not answering after ${QA_PG_TIMEOUT}s; see $LOG_FILE"
    sleep 0.1
  done
  log "running on 127.0.0.1:$QA_PG_PORT ($DATA)"
}

stop() {
  if ! is_running; then
    log "not running"
    return 0
  fi
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null || die "did not stop; see $LOG_FILE"
  log "stopped"
}

BIN="$(find_bin)"
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) is_running && ready ;;
  url) url "${2:-}" ;;
  *) echo "usage: $0 start|stop|status|url [DB]" >&2; exit 2 ;;
esac
