#!/usr/bin/env bash
# Sets up .venv (and .venv-colab, for the notebook tests) when missing or stale, then runs the linter, the formatter check
# and the whole test suite in two pytest processes (pytest-xdist; TFF_GPT_TEST_PROCESSES sets how many, 0 runs
# them in this process). Extra arguments go to pytest (e.g. -m "not slow", or a test file).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# The two environments install side by side (mostly downloads and unpacking). A failure of either stops here;
# the Colab install runs in its own process group so that an early exit stops all of it.
set -m
scripts/setup_colab_venv.sh &
colab=$!
set +m
trap 'kill -- -"$colab" 2>/dev/null || true' EXIT
scripts/setup_venv.sh
wait "$colab"
trap - EXIT
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Tests go to whichever process is free (--dist loadgroup); a file with module-scoped fixtures marks itself
# as one xdist group, so its shared run is built once.
.venv/bin/python -m pytest -n "${TFF_GPT_TEST_PROCESSES:-2}" --dist loadgroup "$@"
