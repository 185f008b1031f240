#!/usr/bin/env bash
# Starts a TFF worker on this host for runs elsewhere (`--workers=HOST:PORT,...`),
# setting up .venv first when missing, as ./run.sh does. Stops on Ctrl-C or SIGTERM.
# Unauthenticated: keep the port on a private network.
# Usage: scripts/start_worker.sh --port=N [--max_concurrent_computation_calls=K]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup_venv.sh
exec .venv/bin/python -m experiments.start_worker "$@"
