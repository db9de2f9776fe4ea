#!/usr/bin/env bash
# Set up and run the test suite: ./scripts/test.sh [pytest args]
# Creates .venv (if needed), installs the package with its test extras, installs Debian's
# chromium for the browser tests and gettext for the catalogue tests (when missing and apt-get
# is usable), lints, then runs pytest.
# DATABASE_URL=postgres://... runs the suite on PostgreSQL instead of SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.installed-$(cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=$(command -v sudo || true)
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "Installing Debian's chromium for the browser tests…"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed and apt-get is not usable: browser tests will be skipped."
  fi
fi

if ! command -v msgfmt >/dev/null 2>&1 || ! command -v xgettext >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=$(command -v sudo || true)
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "Installing Debian's gettext for the translation tests…"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gettext >/dev/null
  else
    echo "gettext is not installed and apt-get is not usable: catalogue tests will be skipped."
  fi
fi

ruff check wagtail_llm_actions tests sandbox bench
ruff format --check wagtail_llm_actions tests sandbox bench

export LITELLM_LOCAL_MODEL_COST_MAP=True
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose." >&2
  exit 1
fi
exit "$status"
