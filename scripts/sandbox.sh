#!/usr/bin/env bash
# Set up and run the sandbox: ./scripts/sandbox.sh  → http://localhost:8000/admin/ (admin / admin)
# Creates .venv, installs the package, migrates, creates the demo data that is missing (edits
# to the demo actions are kept), starts a django-q2 worker (qcluster) next to the development
# server. PORT=8001 ./scripts/sandbox.sh to use another port.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${PORT:-8000}
# Before anything else: a taken port would only fail after the set-up, with Django's error.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "Port $port is already in use (another sandbox or server?)." >&2
  echo "Stop it, or pick another port: PORT=$((port + 1)) ./scripts/sandbox.sh" >&2
  exit 1
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
stamp=.venv/.sandbox-$(cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e ".[sandbox]"
  rm -f .venv/.sandbox-*
  touch "$stamp"
fi
export LITELLM_LOCAL_MODEL_COST_MAP=True
python sandbox/manage.py migrate --noinput
python sandbox/manage.py load_demo_data

python sandbox/manage.py qcluster &
worker=$!
trap 'kill $worker 2>/dev/null || true' EXIT INT TERM
python sandbox/manage.py runserver "0.0.0.0:$port"
