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

stamp="$venv/.requirements.sha256"
want="$(sha256sum < "$repo/requirements-colab.txt" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "Setting up $venv with $python (Python 3.12, Keras 3, keras-hub, Hugging Face; about 4 minutes, 7.4 GB)..." >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip==24.3.1
"$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$repo/requirements-colab.txt"
echo "$want" > "$stamp"
echo "Installed into $venv." >&2
