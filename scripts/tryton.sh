#!/usr/bin/env bash
# Ledgerline's local Tryton server (the ERP of the demo and the end-to-end tests).
#
#   scripts/tryton.sh                 prepare if needed, run trytond in the foreground
#   scripts/tryton.sh --background    same, detached; pid file and log in $TRYTON_DB_DIR
#   scripts/tryton.sh prepare         only build .venv-tryton and the database
#   scripts/tryton.sh stop            stop the server started with --background
#   scripts/tryton.sh status          say whether it answers
#
# Environment (defaults): TRYTON_PORT (8010), TRYTON_DB_DIR (var/tryton),
# TRYTON_DB (ledgerline), TRYTON_DB_URI (sqlite://; postgresql://postgres@127.0.0.1:5432/
# runs Tryton on PostgreSQL, in a database of its own named TRYTON_DB),
# TRYTON_VENV (.venv-tryton), TRYTON_PYTHON (python3.11),
# TRYTON_ADMIN_PASSWORD (admin), TRYTON_API_LOGIN (ledgerline),
# TRYTON_API_PASSWORD (ledgerline-api), TRYTON_START_TIMEOUT (60 s).
#
# Tryton lives in a venv of its own so its pins never meet Django's.
# Exit codes: 0 ok, 1 failure, 3 .venv-tryton could not be built (no network?).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

PORT="${TRYTON_PORT:-8010}"
DB="${TRYTON_DB:-ledgerline}"
DB_URI="${TRYTON_DB_URI:-sqlite://}"
DB_DIR="${TRYTON_DB_DIR:-var/tryton}"
VENV="${TRYTON_VENV:-.venv-tryton}"
PYTHON="${TRYTON_PYTHON:-python3.11}"
START_TIMEOUT="${TRYTON_START_TIMEOUT:-60}"
REQS=erp/tryton/requirements.txt
mkdir -p "$DB_DIR"
DB_DIR="$(cd "$DB_DIR" && pwd)"
CONF="$DB_DIR/trytond.conf"
PIDFILE="$DB_DIR/trytond.pid"
LOG="$DB_DIR/trytond.log"
URL="http://127.0.0.1:${PORT}"

say() { echo "tryton: $*"; }

ensure_venv() {
  local stamp="$VENV/.installed-stamp"
  mkdir -p "$VENV"
  echo '*' >"$VENV/.gitignore"  # the venv (and its lock) is never committed
  (
    flock 9
    if [[ ! -f "$stamp" || "$REQS" -nt "$stamp" ]]; then
      command -v "$PYTHON" >/dev/null || { say "needs $PYTHON on PATH (set TRYTON_PYTHON)"; exit 3; }
      say "building $VENV from $REQS"
      test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV" || exit 3
      if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" \
          >"$VENV/pip.log" 2>&1; then
        grep -v "is ignored: it is neither" "$VENV/pip.log" | tail -n 15 >&2
        say "cannot install $REQS into $VENV (no network to the package index?)"; exit 3
      fi
      touch "$stamp"
    fi
    # Ledgerline's own Tryton module (erp/tryton/modules): copied in on every run, it is tiny.
    local modules
    modules="$("$VENV/bin/python" -c 'import os, trytond.modules as m; print(os.path.dirname(m.__file__))')"
    for mod in erp/tryton/modules/*/; do
      rm -rf "${modules:?}/$(basename "$mod")"
      cp -r "$mod" "$modules/"
    done
  ) 9>"$VENV/.lock"
}

render_conf() {
  sed -e "s#@DB_DIR@#${DB_DIR}#g" -e "s#@PORT@#${PORT}#g" -e "s#@DB_URI@#${DB_URI}#g" \
    erp/tryton/trytond.conf >"$CONF"
}

ensure_db() {
  if [[ "$DB_URI" == postgres* ]]; then
    local started=$SECONDS
    # on start only what is missing; `prepare` checks every step of an existing database too
    "$VENV/bin/python" erp/tryton/prepare_db.py --uri "$DB_URI" --database "$DB" --config "$CONF" \
      ${1:+--if-missing}
    say "database $DB on PostgreSQL ready in $(( SECONDS - started ))s"
  elif [[ -f "$DB_DIR/$DB.sqlite" ]]; then
    say "database $DB_DIR/$DB.sqlite exists"
  else
    local started=$SECONDS
    "$VENV/bin/python" erp/tryton/prepare_db.py --db-dir "$DB_DIR" --database "$DB" --config "$CONF"
    say "database prepared in $(( SECONDS - started ))s"
  fi
}

answers() {
  curl -sf -m 2 -H 'Content-Type: application/json' \
    -d '{"id": 0, "method": "common.server.version", "params": []}' "$URL/rpc/" >/dev/null 2>&1
}

running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    say "not running (no live pid in $PIDFILE)"; rm -f "$PIDFILE"; return 0
  fi
  kill "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  say "stopped (pid $pid)"
}

start() {
  local background=$1
  if answers; then say "something already answers on $URL; stop it or set TRYTON_PORT"; exit 1; fi
  ensure_venv || exit $?
  render_conf
  ensure_db if-missing
  local cmd=("$VENV/bin/trytond" -c "$CONF" -d "$DB")
  if [[ "$background" != 1 ]]; then
    say "serving database $DB on $URL (JSON-RPC: $URL/$DB/rpc/); Ctrl-C stops"
    exec "${cmd[@]}"
  fi
  local started=$SECONDS
  setsid nohup "${cmd[@]}" >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  until answers; do
    if ! running_pid >/dev/null; then
      say "trytond exited during start; last lines of $LOG:"; tail -n 20 "$LOG" >&2; rm -f "$PIDFILE"; exit 1
    fi
    if (( SECONDS - started > START_TIMEOUT )); then
      say "trytond did not answer on $URL within ${START_TIMEOUT}s (log: $LOG)"; stop; exit 1
    fi
    sleep 0.3
  done
  say "serving database $DB on $URL (JSON-RPC: $URL/$DB/rpc/), pid $(cat "$PIDFILE"), up in $(( SECONDS - started ))s, log $LOG"
}

case "${1:-start}" in
  start) start "$([[ "${2:-}" == --background ]] && echo 1 || echo 0)" ;;
  --background) start 1 ;;
  prepare) ensure_venv || exit $?; render_conf; ensure_db ;;
  stop) stop ;;
  status) if answers; then say "answers on $URL"; else say "no answer on $URL"; exit 1; fi ;;
  *) echo "usage: $0 [start [--background] | --background | prepare | stop | status]" >&2; exit 2 ;;
esac
