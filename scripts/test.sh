#!/usr/bin/env bash
# Install everything (system packages, npm servers, rhfs with its test extras),
# then run the whole test suite, lint and type checks. This is the README's
# second set-up command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

python3 -m ruff check rhfs tests scripts
python3 -m ruff format --check rhfs tests scripts
python3 -m mypy
python3 -m pytest -q -p no:cacheprovider "$@"
