#!/usr/bin/env bash
# The test command: sets up like test.sh (plus test tools), prepares the offline visdom page, runs pytest.
#    bash scripts/run_tests.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh requirements-dev.txt
if ! python -m scripts.visdom_offline; then
  echo "[run_tests] warning: the offline visdom page could not be prepared (npm registry?); the browser test will skip" >&2
fi
python -m ruff check .
set +e
python -m pytest -q "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "[run_tests] error: pytest collected no tests" >&2
fi
exit $status
