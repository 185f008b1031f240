"""Where a round's time goes beyond the client steps: the fixed cost, split by process, and the client loop.

  .venv/bin/python -m benchmarks.round_cost            # ~2 minutes on 2 cores
  .venv/bin/python -m benchmarks.round_cost --rounds 5 # quicker, noisier

Two measurements, each in one process:

1. Rounds whose 10 clients have no data (broadcast, the client computations'
   setup, aggregation, the state's round trip): wall seconds per round and
   the CPU seconds of this process and of TFF's worker per round.
2. The same batches trained centrally three ways: a Python loop over a
   compiled train step (the benchmark's baseline), one `tf.function` looping
   over the dataset in the graph (how TFF's client loop runs in the
   worker), and Keras `fit`.
"""

import argparse
import json
import time

import psutil

from benchmarks import measure  # noqa: E402
from tff_gpt import runtime
from tff_gpt.runtime import host

host.configure()  # Before TensorFlow runs anything; the worker(s) inherit the environment.


def empty_rounds(task: measure.Task, clients: int, rounds: int) -> dict:
  process = task.process()
  state = process.initialize()
  empty = [ds.take(0) for ds in task.client_datasets(clients)]
  process.next(state, empty)  # Warm-up: the worker compiles the computation.
  me = psutil.Process()
  [worker] = [child for child in me.children() if child.name() == "worker_binary"]
  cpu = lambda p: sum(p.cpu_times()[:2])  # noqa: E731
  python_before, worker_before, start = cpu(me), cpu(worker), time.perf_counter()
  for _ in range(rounds):
    process.next(state, empty)
  seconds = time.perf_counter() - start
  return {
    "clients": clients,
    "rounds": rounds,
    "s_per_round": seconds / rounds,
    "python_cpu_s_per_round": (cpu(me) - python_before) / rounds,
    "worker_cpu_s_per_round": (cpu(worker) - worker_before) / rounds,
  }


def client_loops(task: measure.Task, clients: int, repeats: int) -> dict:
  client_datasets = task.client_datasets(clients)
  tokens = measure.count_tokens(client_datasets)
  seconds = measure.compiled_central_seconds(task, client_datasets, repeats)
  seconds["fit"] = measure.central_seconds(task, client_datasets, repeats)
  out = {"tokens": tokens, **{f"tokens_per_s[{k}]": tokens / v for k, v in seconds.items()}}
  out["graph_loop_over_step_loop"] = seconds["compiled_step_loop"] / seconds["compiled_dataset_loop"]
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rounds", type=int, default=30, help="Empty rounds timed.")
  parser.add_argument("--repeats", type=int, default=5, help="Repeats of each central loop (median).")
  parser.add_argument("--out", default=None, help="Write the figures as JSON here.")
  args = parser.parse_args()
  with runtime.execution_context():
    task = measure.Task("2x128")
    results = {
      "central_loops": client_loops(task, 10, args.repeats),  # Before any TFF process (see STACK_NOTES).
      "empty_rounds": empty_rounds(task, 10, args.rounds),
    }
  print(json.dumps(results, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
