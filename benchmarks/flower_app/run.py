"""Runs the Flower app on a data directory, or scores Hugging Face models on its held-out batches.

  .venv-peers/bin/python -m benchmarks.flower_app.run --data DIR
      # trains: DIR/flower_rounds.json (each round's seconds, clients, tokens, train loss), DIR/flower_final/
  .venv-peers/bin/python -m benchmarks.flower_app.run --data DIR --evaluate tff=PATH flower=PATH
      # prints {"tff": {"loss", "tokens"}, ...} as JSON: the held-out loss of each model, in one place

Flower's simulation engine (Ray) runs `plan.json`'s clients at once
(`concurrency`, one CPU each) on as many SuperNodes as the largest round has
clients, each client with `threads` PyTorch threads, as tff_gpt's worker
runs its client computations.
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def simulate(data_dir: str) -> None:
  from benchmarks.flower_app import lm

  plan = lm.read_plan(data_dir)
  os.environ["PEERS_DATA"] = os.path.abspath(data_dir)  # Before Ray starts: its workers inherit it.
  os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
  from flwr.simulation import run_simulation

  from benchmarks.flower_app.app import client_app, server_app

  run_simulation(
    server_app=server_app,
    client_app=client_app,
    num_supernodes=max(plan["clients"]),
    backend_config={
      "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
      "init_args": {"num_cpus": plan["concurrency"], "include_dashboard": False},
    },
  )
  if not os.path.exists(os.path.join(data_dir, f"flower_rounds_{lm.adapters()}.json")):
    sys.exit("error: the Flower run ended without its rounds' results; see the log above.")


def evaluate(data_dir: str, models: list[str]) -> dict:
  from benchmarks.flower_app import lm

  threads = lm.read_plan(data_dir)["threads"]
  scores = {}
  for spec in models:
    name, _, path = spec.partition("=")
    scores[name] = lm.heldout_loss(lm.load_hf(path, threads), data_dir)
  return scores


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data", required=True, help="The directory benchmarks/peers.py wrote.")
  parser.add_argument("--evaluate", nargs="*", help="NAME=HF_DIR ...: score these instead of training.")
  args = parser.parse_args(argv)
  if args.evaluate:
    print(json.dumps(evaluate(args.data, args.evaluate)))
  else:
    simulate(args.data)


if __name__ == "__main__":
  main()
