#!/usr/bin/env bash
# Builds VENV with PYTHON from LOCK (every package pinned with its hashes, by scripts/lock.sh), or reuses it
# when the lock has not changed since (the lock's sha256 is kept in VENV/.requirements.sha256).
# Used by scripts/setup_colab_venv.sh and scripts/setup_peers_venv.sh.
# Usage: scripts/locked_venv.sh VENV PYTHON LOCK "WHAT IT HOLDS"
set -euo pipefail
venv="$1" python="$2" lock="$3" what="$4"

stamp="$venv/.requirements.sha256"
want="$(sha256sum < "$lock" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "Setting up $venv with $python ($what)..." >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip==24.3.1
"$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$lock"
echo "$want" > "$stamp"
echo "Installed into $venv." >&2
