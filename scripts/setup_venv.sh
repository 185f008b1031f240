#!/usr/bin/env bash
# Creates .venv with the pinned stack, or reuses it when it is up to date.
#
# Installs the lock files (requirements.txt, then requirements-nodeps.txt without
# dependencies): every package pinned with its hashes, written by scripts/lock.sh.
# The venv is "up to date" when the hash of the lock files matches the one
# stored after the last successful install, so a second call installs nothing.
# Usage: scripts/setup_venv.sh [VENV_DIR]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo/.venv}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  python="$("$repo/scripts/find_python.sh" 3.11 2>/dev/null || echo python3)"
fi

version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
if [ "$version" != "3.11" ]; then
  echo "error: tff_gpt needs Python 3.11 (tensorflow-federated 0.87 supports" >&2
  echo "  Python >=3.9,<3.12 and tensorflow 2.14 has no 3.12 wheels); found" >&2
  echo "  '${version:-none}' at '$python'. Install Python 3.11 and run again with" >&2
  echo "  PYTHON=/path/to/python3.11." >&2
  exit 2
fi

stamp="$venv/.requirements.sha256"
want="$(cat "$repo/requirements.txt" "$repo/requirements-nodeps.txt" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "Setting up $venv (about 1-2 minutes, 2.9 GB)..." >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip==24.3.1
"$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$repo/requirements.txt"
"$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
  -r "$repo/requirements-nodeps.txt"
echo "$want" > "$stamp"
echo "Installed into $venv." >&2
