#!/usr/bin/env bash
# The tests, in two tiers.
#   ./test.sh           lint, the formatter check and the everyday tier (about 7 minutes on 2 cores, .venv
#                       only): every behaviour at small size, in process.
#   ./test.sh --full    everything: also what starts runs or workers as subprocesses, the Colab-like venv's
#                       tests (.venv-colab, built here when missing or stale), the benchmarks' quick modes
#                       and the Flower side by side (.venv-peers, built alike).
# Each sets up what it needs when missing or stale. Tests run in two pytest processes (pytest-xdist;
# TFF_GPT_TEST_PROCESSES sets how many, 0 runs them in this process). Other arguments go to pytest
# (e.g. a test file, or -k NAME).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
full=0
if [ "${1:-}" = "--full" ]; then
  full=1
  shift
fi
if [ "$full" = 1 ]; then
  # The two environments install side by side (mostly downloads and unpacking). A failure of either stops
  # here; the Colab install runs in its own process group so that an early exit stops all of it.
  set -m
  scripts/setup_colab_venv.sh &
  colab=$!
  set +m
  trap 'kill -- -"$colab" 2>/dev/null || true' EXIT
  scripts/setup_venv.sh
  wait "$colab"
  trap - EXIT
  scripts/setup_peers_venv.sh  # After the Colab one: the same torch wheel, from pip's cache.
  tier=()
else
  scripts/setup_venv.sh
  tier=(-m "not full")
fi
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Tests go to whichever process is free (--dist loadgroup); a file with module-scoped fixtures marks itself
# as one xdist group, so its shared run is built once.
.venv/bin/python -m pytest -n "${TFF_GPT_TEST_PROCESSES:-2}" --dist loadgroup "${tier[@]}" "$@"
