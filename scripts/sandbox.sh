#!/usr/bin/env bash
# Set up and run the sandbox: ./scripts/sandbox.sh  → http://localhost:8000/admin/ (admin / admin)
# Creates .venv, installs the package, migrates, loads demo data, starts a django-q2 worker
# (qcluster) next to the development server. PORT=8001 to change the port.
set -euo pipefail
cd "$(dirname "$0")/.."

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
python sandbox/manage.py runserver "0.0.0.0:${PORT:-8000}"
