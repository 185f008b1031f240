#!/usr/bin/env bash
# Prints the path of a working Python X.Y interpreter, or explains how to get one (exit 2).
#
# Usage: scripts/find_python.sh 3.11 [CANDIDATE]
# Tries CANDIDATE (a command or path) when given, then pythonX.Y, then pyenv's
# newest X.Y.* (a bare pythonX.Y may be a pyenv shim that fails until
# PYENV_VERSION names a version; the development machines have 3.12 that way).
set -euo pipefail
want="$1"
candidate="${2:-}"

try() {  # $1: command; prints its sys.executable when it is Python $want.
  "$@" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$want'; print(sys.executable)" 2>/dev/null
}

if [ -n "$candidate" ]; then
  try "$candidate" && exit 0
  echo "error: '$candidate' is not a working Python $want." >&2
  exit 2
fi
try "python$want" && exit 0
if command -v pyenv >/dev/null 2>&1; then
  version="$(pyenv versions --bare 2>/dev/null | grep -E "^${want//./\\.}\.[0-9]+$" | sort -V | tail -1 || true)"
  if [ -n "$version" ]; then
    PYENV_VERSION="$version" try "python$want" && exit 0
  fi
fi
echo "error: no working Python $want found (python$want, or pyenv's $want.*). Install it, or name one" >&2
echo "  with PYTHON=/path/to/python$want (training) or PYTHON_COLAB=/path/to/python3.12 (Colab-like)." >&2
exit 2
