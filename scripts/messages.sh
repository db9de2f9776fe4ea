#!/usr/bin/env bash
# Regenerate and compile the message catalogues: ./scripts/messages.sh
# Extracts every translatable string of wagtail_llm_actions (Python and templates; the browser
# scripts get their texts from Python, panels.editor_messages) into
# wagtail_llm_actions/locale/{en,de,fr}/LC_MESSAGES/django.po, keeps the translations already
# there (msgmerge; changed strings become fuzzy), then compiles the .mo files.
# tests/test_translations.py fails until this has been run and every new string translated.
# Needs GNU gettext (Debian: apt-get install gettext).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then . .venv/bin/activate; fi
ROOT=$PWD
export PYTHONPATH="$ROOT:$ROOT/sandbox${PYTHONPATH:+:$PYTHONPATH}"
export DJANGO_SETTINGS_MODULE=tests.settings
export LITELLM_LOCAL_MODEL_COST_MAP=True
cd wagtail_llm_actions
django-admin makemessages --locale en --locale de --locale fr --no-obsolete --add-location file
cd "$ROOT"
# A run that changed nothing but the POT-Creation-Date header leaves the file as it was.
for po in wagtail_llm_actions/locale/*/LC_MESSAGES/django.po; do
  if git ls-files --error-unmatch "$po" >/dev/null 2>&1 &&
    git diff --quiet -I '^"POT-Creation-Date: ' -- "$po"; then
    git checkout --quiet -- "$po"
  fi
done
cd wagtail_llm_actions
django-admin compilemessages --locale en --locale de --locale fr
# What is left to translate (tests/test_translations.py fails until it is nothing).
for lang in de fr; do
  printf '%s: ' "$lang"
  msgfmt --statistics --output-file /dev/null "locale/$lang/LC_MESSAGES/django.po"
done
