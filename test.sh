#!/usr/bin/env bash
# Sets up .venv (and .venv-colab, for the notebook tests) when missing or stale, then runs the linter, the formatter check
# and the whole test suite. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scripts/setup_venv.sh
scripts/setup_colab_venv.sh
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
