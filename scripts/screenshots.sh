#!/usr/bin/env bash
# Refresh the README's screenshots in docs/screenshots/ from the browser tests.
# A plain test run writes screenshots to test-artifacts/ only, so it never changes tracked files.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_SCREENSHOTS=1 exec ./scripts/test.sh -m browser "$@"
