#!/usr/bin/env bash
# The second leg of the tested version matrix: Python 3.13 + Django 6.0 (the main run,
# scripts/test.sh, is Python 3.11 + Django 5.2). Creates .venv-py313-dj60 with the package's
# dependencies and test extras (the package itself is imported from this checkout), then runs
# the non-browser suite on SQLite. Extra arguments go to pytest.
#   MATRIX_PYTHON=python3.12 MATRIX_DJANGO="Django>=5.2,<6.0" MATRIX_VENV=.venv-py312-dj52 \
#     ./scripts/test-matrix.sh
set -euo pipefail
cd "$(dirname "$0")/.."

want=${MATRIX_PYTHON:-python3.13}
django=${MATRIX_DJANGO:-Django>=6.0,<6.1}
venv=${MATRIX_VENV:-.venv-py313-dj60}

# A pyenv shim answers "command not found" unless its version is active: ask pyenv then.
find_python() {
  if "$1" -c "" >/dev/null 2>&1; then command -v "$1"; return; fi
  local version=${1#python}
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version"*/bin/"$1"; do
    [ -x "$candidate" ] && { echo "$candidate"; return; }
  done
  return 1
}
if ! python=$(find_python "$want"); then
  if [ "${REQUIRE_MATRIX:-}" = 1 ]; then
    echo "$want is not installed: the version matrix cannot run." >&2
    exit 1
  fi
  echo "$want is not installed: version matrix leg skipped."
  exit 0
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
stamp=$venv/.installed-$(printf '%s' "$django" | cat - setup.cfg pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  # install_requires and the test extras from setup.cfg, Django pinned to this leg's series
  mapfile -t requirements < <("$venv/bin/python" - <<'PY'
import configparser

config = configparser.ConfigParser()
config.read("setup.cfg")
lines = config["options"]["install_requires"].splitlines()
lines += config["options.extras_require"]["test"].splitlines()
for line in lines:
    line = line.strip()
    # no browser in this leg, and no build tools (the packaging tests run in the main leg)
    if line and not line.startswith(("playwright", "ruff", "build", "wheel")):
        print(line)
PY
  )
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "${requirements[@]}" "$django"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi

"$venv/bin/python" -c 'import sys, django, wagtail; print(f"=== Python {sys.version.split()[0]}, Django {django.__version__}, Wagtail {wagtail.__version__}")'
export LITELLM_LOCAL_MODEL_COST_MAP=True
"$venv/bin/python" -m pytest -q -m "not browser and not packaging" -p no:cacheprovider "$@"
