#!/usr/bin/env bash
# Sets up .venv when missing or stale, then trains the small GPT-2 with weighted
# FedAvg on the embedded federated Shakespeare. Extra arguments are absl flags
# of experiments/run_experiment.py (e.g. --total_rounds=20).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scripts/setup_venv.sh
exec .venv/bin/python -m experiments.run_experiment "$@"
