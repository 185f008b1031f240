"""Where a LoRA round's time goes at GPT-2 124M's shape: the per-client fixed cost against the steps.

  .venv/bin/python -m benchmarks.client_cost --out benchmarks/results_client_cost.json   # ~10 min on 2 cores
  .venv/bin/python -m benchmarks.client_cost --model_size tiny --rounds 2               # seconds

The peers benchmark's 12x768h12 LoRA 8 row (`benchmarks.peers.SIZES`: 4
clients a round, 2 at a time on one worker, batches of 8) is built once in
this process and its round (`process.next`) timed on the same 4 clients
given 0, 1 and 2 batches each (the first batches of their round-1 datasets;
0 batches: every client's computation runs, with no step). Each count is
timed `--rounds` times after one warm-up round; medians. With them:

- per round with no step: broadcast, each client's set-up (the frozen base
  read from disk and assigned to fresh variables: `tff_gpt/models/frozen.py`),
  serialization of the trained part, aggregation, the state's round trip;
- per batch: the slope of the median round over batches per client (each
  worker slot runs 2 clients, so one more batch a client adds 2 steps to a
  round's critical path);
- the CPU seconds per round of this Python process and of TFF's worker
  process (the client work, frozen reads included, runs in the worker).
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import psutil

from benchmarks import peers
from tff_gpt import runtime
from tff_gpt.runtime import host

host.configure()  # Before TensorFlow runs anything; the worker inherits the environment.

BATCHES = (0, 1, 2)


def _cpu(process: psutil.Process) -> float:
  return sum(process.cpu_times()[:2])


def timed_rounds(run, state, datasets: list, rounds: int) -> dict:
  """Median wall seconds of `rounds` rounds on `datasets` after a warm-up, and CPU seconds per round of
  this process and of the worker."""
  run.process.next(state, datasets)
  me = psutil.Process()
  workers = [c for c in me.children(recursive=True) if c.name() == "worker_binary"]
  before = (_cpu(me), sum(_cpu(w) for w in workers))
  seconds = []
  for _ in range(rounds):
    start = time.perf_counter()
    run.process.next(state, datasets)
    seconds.append(time.perf_counter() - start)
  after = (_cpu(me), sum(_cpu(w) for w in workers))
  return {
    "s_per_round": statistics.median(seconds),
    "rounds_s": seconds,
    "python_cpu_s_per_round": (after[0] - before[0]) / rounds,
    "worker_cpu_s_per_round": (after[1] - before[1]) / rounds,
  }


def measure(model_size: str, trainable: str, rounds: int, concurrent: int | None = None) -> dict:
  from tff_gpt.training import config as config_lib
  from tff_gpt.training import trainer

  size = dict(peers.SIZES["12x768, LoRA 8"], model_size=model_size, trainable=trainable)
  if concurrent:
    size["max_concurrent_computation_calls"] = concurrent
  with tempfile.TemporaryDirectory(prefix="client-cost-") as root:
    settings = peers.run_settings(size, 1, size["clients_per_round"], root, "cost")
    config = config_lib.ExperimentConfig(**settings)
    with runtime.execution_context(**config.context_args()):  # As `experiments.run_experiment` runs it.
      run = trainer.FederatedExperiment(config, progress=False).context
      state = run.initial_state()
      clients = run.clients_for_round(1)
      full = run.task.train_datasets(clients, 1)
      by_batches = {n: timed_rounds(run, state, [d.take(n) for d in full], rounds) for n in BATCHES}
  medians = [by_batches[n]["s_per_round"] for n in BATCHES]
  slope = statistics.linear_regression(BATCHES, medians).slope
  return {
    "settings": dict(
      size,
      clients=clients,
      batch_size=config.client_batch_size,
      rounds=rounds,
      max_concurrent_computation_calls=config.max_concurrent_computation_calls,
      worker_intra_op_threads=int(os.environ.get(host.INTRA_OP) or 0),  # 0: TensorFlow's default.
    ),
    "by_batches": {str(n): v for n, v in by_batches.items()},
    "s_per_round_without_steps": by_batches[0]["s_per_round"],
    "s_per_batch_per_client": slope,
    "s_per_step": slope / (len(clients) / config.max_concurrent_computation_calls),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_size", default="12x768h12")
  parser.add_argument("--trainable", default="lora:8")
  parser.add_argument("--rounds", type=int, default=3, help="Rounds timed per batch count (median).")
  parser.add_argument(
    "--concurrent",
    type=int,
    default=None,
    help="Client computations the worker runs at once (default: the peers row's). The worker's intra-op "
    "threads follow TF_NUM_INTRAOP_THREADS when set, else the host's sizing.",
  )
  parser.add_argument("--out", default=None, help="Write the figures as JSON here.")
  args = parser.parse_args()
  result = measure(args.model_size, args.trainable, args.rounds, args.concurrent)
  print(json.dumps(result, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
