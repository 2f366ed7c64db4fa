#!/usr/bin/env bash
# Start the Ledgerline demo: database, demo data, Tryton (the ERP), a django-q2 worker, the web server.
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
echo "==> Loading demo usage and billing (metrics, plans, contracts, a month of events, last month's run)"
$PY manage.py load_demo_billing

pids=()
cleanup() { echo; echo "==> Stopping demo"; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [[ "${tryton_started:-0}" == 1 ]]; then bash scripts/tryton.sh stop || true; fi; }
trap cleanup EXIT INT TERM

# Tryton, the demo's ERP (scripts/tryton.sh: .venv-tryton, database under var/tryton/).
# If it does not start, the demo goes on without it (postings wait and retry).
tryton_started=0
echo "==> Starting Tryton, the ERP (first run builds .venv-tryton and its database: about a minute; log: var/log/tryton.log)"
if bash scripts/tryton.sh --background >var/log/tryton.log 2>&1; then
  tryton_started=1
  echo "    Tryton on http://127.0.0.1:${TRYTON_PORT:-8010}/ (JSON-RPC: /${TRYTON_DB:-ledgerline}/rpc/), login admin / ${TRYTON_ADMIN_PASSWORD:-admin}"
else
  echo "    WARNING: Tryton did not start (see var/log/tryton.log); the demo continues without the ERP"
fi

# The ERP side (erp_sync/demo.py): a Tryton connection per entity, last month finalized and
# booked, a credit memo, a void and a payment; staged failures (README, "ERP in the demo").
# The worker reads the Tryton password from this variable (connections store only its name).
export TRYTON_API_PASSWORD="${TRYTON_API_PASSWORD:-ledgerline-api}"
echo "==> Loading the demo's ERP side (connections, ledger, outbox)"
if [[ "$tryton_started" == 1 ]]; then $PY manage.py load_demo_erp; else $PY manage.py load_demo_erp --no-tryton; fi

echo "==> Starting the django-q2 worker (log: var/log/worker.log)"
$PY manage.py qcluster >var/log/worker.log 2>&1 &
pids+=($!)

echo "==> Ledgerline on http://127.0.0.1:${PORT}/  (API docs: /api/docs/, health: /readyz)"
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload &
pids+=($!)
wait -n "${pids[@]}"
