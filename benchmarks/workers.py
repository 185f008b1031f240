"""Seconds per round on the local context, on one remote worker and on two: the scaling of `--workers`.

  .venv/bin/python -m benchmarks.workers --out benchmarks/results_workers.json

The small GPT-2 on federated Shakespeare, 20 clients a round (the defaults of
`./run.sh` otherwise), weighted FedAvg. Each worker is
`experiments.start_worker` with one computation at a time, pinned to a core
of its own (`taskset`): core 0, and core 1 for the second; the local
context's worker is pinned to core 0 the same way. The driver (this process)
is left unpinned. Per setting: one warm-up round, then the median of
`--repeats` rounds of the same clients.

- overhead of the remote context: 1 remote worker against the local context,
  both on core 0;
- scaling: 2 workers (mergeable computations: each worker trains and
  aggregates half the clients, then the parts merge) against 1; efficiency =
  speed-up / 2.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import portpicker

from benchmarks.measure import Task  # noqa: E402
from tff_gpt import runtime
from tff_gpt.runtime import host

host.configure()  # Before TensorFlow runs anything; the worker(s) inherit the environment.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start_worker(core: int) -> tuple[subprocess.Popen, str]:
  port = portpicker.pick_unused_port()
  proc = subprocess.Popen(
    [
      "taskset",
      "-c",
      str(core),
      sys.executable,
      "-m",
      "experiments.start_worker",
      f"--port={port}",
      "--max_concurrent_computation_calls=1",
    ],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"),
  )
  for line in proc.stdout:
    if "listening on" in line:
      return proc, f"localhost:{port}"
  raise RuntimeError(f"worker on core {core} did not start")


def _seconds_per_round(task: Task, clients: int, repeats: int) -> list[float]:
  process = task.process()
  state = process.initialize()
  datasets = task.client_datasets(clients)
  state = process.next(state, datasets).state  # Warm-up: traces and loads the computation.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state = process.next(state, datasets).state
    times.append(time.perf_counter() - start)
  return times


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--clients", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--model_size", default="2x128")
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  task = Task(args.model_size)
  results = dict(model=args.model_size, clients=args.clients, repeats=args.repeats, cpus=os.cpu_count())

  runtime.set_up(max_concurrent_computation_calls=1)
  task.process().initialize()  # The local worker starts at the first computation: pin it then.
  pid = runtime.local_worker().process.pid
  for tid in os.listdir(f"/proc/{pid}/task"):  # Every thread: sched_setaffinity(pid) pins only the first.
    os.sched_setaffinity(int(tid), {0})
  results["local"] = _seconds_per_round(task, args.clients, args.repeats)
  runtime.shutdown()

  started = [_start_worker(0), _start_worker(1)]
  try:
    runtime.set_up(workers=started[0][1])
    results["one_worker"] = _seconds_per_round(task, args.clients, args.repeats)
    runtime.set_up(workers=",".join(address for _, address in started))
    results["two_workers"] = _seconds_per_round(task, args.clients, args.repeats)
    runtime.shutdown()
  finally:
    for proc, _ in started:
      proc.terminate()
      proc.wait(timeout=60)
  median = {k: statistics.median(results[k]) for k in ("local", "one_worker", "two_workers")}
  results["median_seconds"] = median
  results["remote_overhead_pct"] = 100 * (median["one_worker"] / median["local"] - 1)
  results["speedup_two_over_one"] = median["one_worker"] / median["two_workers"]
  results["scaling_efficiency"] = results["speedup_two_over_one"] / 2
  print(json.dumps(results, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
