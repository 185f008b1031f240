#!/usr/bin/env bash
# Compiles the .in files into the lock files that scripts/setup_*venv.sh install:
# every package of both environments, transitive ones included, pinned with the
# sha256 hashes of every file PyPI offers for it, so that an install next year
# gives what it gives today (pip refuses a file whose hash is not in the lock).
#
#   requirements.in        -> requirements.txt         (Python 3.11)
#   requirements-nodeps.in -> requirements-nodeps.txt  (Python 3.11, installed --no-deps: the pins alone)
#   requirements-colab.in  -> requirements-colab.txt   (Python 3.12, as Colab)
#   requirements-peers.in  -> requirements-peers.txt   (Python 3.12, Flower; benchmarks/peers.py)
#
# With `uv pip compile` (pinned below, in a throwaway venv), resolved for Linux
# x86_64 against PyPI. Usage: scripts/lock.sh  (well under a minute)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
UV="uv==0.13.9"

python311="$(scripts/find_python.sh 3.11 "${PYTHON:-}")"
"$python311" -m venv "$work/tools"
"$work/tools/bin/pip" install --quiet --disable-pip-version-check "$UV"

compile() {  # $1: Python version; $2: .in file; $3: lock file; then extra options
  local version="$1" in="$2" out="$3"
  shift 3
  UV_CUSTOM_COMPILE_COMMAND="scripts/lock.sh" "$work/tools/bin/uv" pip compile --quiet --generate-hashes \
    --python-version "$version" --python-platform x86_64-manylinux_2_31 --index-url https://pypi.org/simple \
    --no-config "$@" --output-file "$out" "$in"
}

compile 3.11 requirements.in requirements.txt
# These packages' declared dependencies cannot be installed (BUILD_NOTES.md): the pins alone, with hashes.
compile 3.11 requirements-nodeps.in requirements-nodeps.txt --no-deps
compile 3.12 requirements-colab.in requirements-colab.txt
compile 3.12 requirements-peers.in requirements-peers.txt
echo "Wrote requirements.txt, requirements-nodeps.txt, requirements-colab.txt and requirements-peers.txt." >&2
