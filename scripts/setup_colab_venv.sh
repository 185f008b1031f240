#!/usr/bin/env bash
# Creates .venv-colab, a Colab-like environment (Python 3.12 as Colab, Keras 3,
# keras-hub, current TensorFlow, Hugging Face, no TFF) for the export and
# notebook tests, from the lock requirements-colab.txt (every package pinned
# with its hashes, by scripts/lock.sh), or reuses it when the lock has not
# changed. Python: $PYTHON_COLAB, else python3.12, else pyenv's newest 3.12.*.
# Usage: scripts/setup_colab_venv.sh [VENV_DIR]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo/.venv-colab}"
python="$("$repo/scripts/find_python.sh" 3.12 "${PYTHON_COLAB:-}")"

"$repo/scripts/locked_venv.sh" "$venv" "$python" "$repo/requirements-colab.txt" "Python 3.12, Keras 3, keras-hub, Hugging Face; about 4 minutes, 7.4 GB"
