#!/usr/bin/env bash
# Creates .venv-peers, the peer environment of the side-by-side benchmark
# (benchmarks/peers.py): Flower with its simulation engine, PyTorch,
# transformers and PEFT on Python 3.12, from the lock requirements-peers.txt
# (every package pinned with its hashes, by scripts/lock.sh), or reuses it when
# the lock has not changed. The project's own environment (.venv) is untouched.
# Python: $PYTHON_PEERS, else python3.12, else pyenv's newest 3.12.*.
# Usage: scripts/setup_peers_venv.sh [VENV_DIR]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo/.venv-peers}"
python="$("$repo/scripts/find_python.sh" 3.12 "${PYTHON_PEERS:-}")"

"$repo/scripts/locked_venv.sh" "$venv" "$python" "$repo/requirements-peers.txt" "Python 3.12, Flower, PyTorch, transformers, PEFT; several minutes"
