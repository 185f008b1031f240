#!/usr/bin/env bash
# Creates .venv-colab, a Colab-like environment (Keras 3, keras-hub, current
# TensorFlow, no TFF) for the export and notebook tests, or reuses it when
# requirements-colab.txt has not changed. Colab runs Python 3.12; the first of
# python3.12, python3.11, python3 that runs is used (or $PYTHON_COLAB). Usage: scripts/setup_colab_venv.sh [VENV_DIR]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo/.venv-colab}"
python="${PYTHON_COLAB:-}"
if [ -z "$python" ]; then
  for candidate in python3.12 python3.11 python3; do
    if "$candidate" -c "import sys; assert sys.version_info >= (3, 10)" >/dev/null 2>&1; then
      python="$candidate"
      break
    fi
  done
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum < "$repo/requirements-colab.txt" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "Setting up $venv with $python (Colab-like: Keras 3, keras-hub; about 2 minutes, 2.7 GB)..." >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$repo/requirements-colab.txt"
echo "$want" > "$stamp"
echo "Installed into $venv." >&2
