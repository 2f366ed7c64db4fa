#!/usr/bin/env bash
# Start the Ledgerline demo: database, demo data, a django-q2 worker, the web server.
# Ctrl-C stops everything it started. Running it again reuses var/ (data kept).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DEBUG="${DEBUG:-1}"
PORT="${PORT:-8000}"
mkdir -p var/log

echo "==> Migrating the database (${DATABASE_URL:-SQLite under var/})"
$PY manage.py migrate --no-input -v0
echo "==> Loading demo data"
$PY manage.py load_demo

pids=()
cleanup() { echo; echo "==> Stopping demo"; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

echo "==> Starting the django-q2 worker (log: var/log/worker.log)"
$PY manage.py qcluster >var/log/worker.log 2>&1 &
pids+=($!)

echo "==> Ledgerline on http://127.0.0.1:${PORT}/  (API docs: /api/docs/, health: /readyz)"
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload &
pids+=($!)
wait -n "${pids[@]}"
