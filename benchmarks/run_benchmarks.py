"""Federated rounds against central training and the machine's matmul limit.

  .venv/bin/python -m benchmarks.run_benchmarks           # every figure, < 10 minutes on 2 cores
  .venv/bin/python -m benchmarks.run_benchmarks --quick   # the same code on the tiny model, ~2 minutes

Everything is measured in one process, side by side, and reported as medians
over repeats and as ratios (the machines are shared and noisy; absolute times
are context only). Sections:

1. round vs central: tokens/s of one weighted-FedAvg round on 10 Shakespeare
   clients against the fastest central training of exactly the same batches
   (a compiled train step; Keras `fit` as a second row), for each of TFF's
   client loop implementations, one client at a time, compiled by TFF's own
   compiler instead of `runtime.compilation.compile_for_cpu`, and with clients
   that draw initial values (TFF's process of the plain `model_fn`).
2. against the hardware: model FLOP/s (6 x parameters x tokens/s) of both,
   divided by the FLOP/s of a float32 matmul measured here.
3. fixed overhead: rounds whose clients have no data (broadcast + aggregation
   + runtime), one batch each (+ client work), and one evaluation round.
4. scaling: seconds per round and peak memory of the process tree (TFF worker
   included) for 1, 10, 50 and 100 clients; memory over consecutive rounds.
5. parallel clients: `max_concurrent_computation_calls` 1, 2 and 4.
"""

import argparse
import contextlib
import json
import os
import time

from benchmarks import measure

THREADS = measure.THREADS  # Importing `measure` sized the process, before TensorFlow was imported.

import tensorflow as tf  # noqa: E402

from benchmarks.measure import (  # noqa: E402
  LOOPS,
  PeakMemory,
  Task,
  central_seconds,
  compiled_central_fns,
  count_tokens,
  interleaved,
  matmul_flops,
  timed,
)
from tff_gpt import algorithms, runtime  # noqa: E402
from tff_gpt.internals import context_stack_impl  # noqa: E402
from tff_gpt.runtime import contexts  # noqa: E402
from tff_gpt.runtime import workers as workers_lib  # noqa: E402
from tff_gpt.training import memory  # noqa: E402


@contextlib.contextmanager
def side_contexts(settings: dict):
  """{name: context over a worker of its own} for `set_up`-like `settings`; the workers stop on exit."""
  made, workers = {}, []
  try:
    for name, options in settings.items():
      worker = workers_lib.LocalWorker(
        max_concurrent_computation_calls=options.get("max_concurrent_computation_calls", 2)
      )
      workers.append(worker)
      made[name] = contexts.worker_context(worker, optimize_for_cpu=options.get("optimize_for_cpu", True))
    yield made
  finally:
    for worker in workers:
      worker.stop()


def federated_round_fn(task: Task, clients: int, loop: str, context=None, **process_args):
  """A warmed-up call of one round on `clients` clients, their datasets built in the call, in `context`."""
  process = task.process(loop, **process_args)

  def installed():
    return context_stack_impl.context_stack.install(context) if context else contextlib.nullcontext()

  with installed():
    state = process.initialize()
    process.next(state, task.client_datasets(clients))  # Warm-up: the worker compiles the computation.

  def call():
    with installed():
      process.next(state, task.client_datasets(clients))

  return call


def round_vs_central(task: Task, clients: int, repeats: int, loops) -> dict:
  """Tokens/s of a round against the fastest central training of the same batches (and `fit`).

  The project's round (2 clients at a time, `compile_for_cpu`, client
  datasets built in the timed call) for each client loop, and the same round
  with one change each, are called in turn with the compiled central loops,
  `2 * repeats + 1` times: this machine's speed drifts by up to 2x within
  minutes, and alternating lets every row see the same drifts.
  """
  client_datasets = task.client_datasets(clients)
  tokens = count_tokens(client_datasets)
  params = task.params()
  flops = matmul_flops()
  # Before any TFF process (see STACK_NOTES).
  central_fns = compiled_central_fns(task, client_datasets)
  fit = central_seconds(task, client_datasets, repeats)
  changes = {
    "one_client_at_a_time": dict(max_concurrent_computation_calls=1),
    "tff_native_compiler": dict(optimize_for_cpu=False),
  }
  with side_contexts(changes) as side:
    federated_fns = {loop: federated_round_fn(task, clients, loop) for loop in loops}
    for name, context in side.items():
      federated_fns[name] = federated_round_fn(task, clients, "dataset_iterator", context)
    federated_fns["draws_initial_values"] = federated_round_fn(
      task, clients, "dataset_iterator", draws_initial_values=True
    )
    seconds = interleaved({**central_fns, **federated_fns}, 2 * repeats + 1)
  central = {name: seconds[name] for name in central_fns} | {"fit": fit}
  fastest = min(central["compiled_step_loop"], central["compiled_dataset_loop"])
  out = {
    "clients": clients,
    "tokens_per_round": tokens,
    "parameters": params,
    "matmul_gflops": flops / 1e9,
    **{f"central_tokens_per_s[{k}]": tokens / v for k, v in central.items()},
    "central_tokens_per_s": tokens / fastest,
    "central_flops_fraction": 6 * params * tokens / fastest / flops,
    "fit_over_compiled": fastest / central["fit"],
  }
  for name in federated_fns:
    fed = seconds[name]
    out[f"federated_tokens_per_s[{name}]"] = tokens / fed
    out[f"federated_over_central[{name}]"] = fastest / fed
    out[f"federated_over_fit[{name}]"] = central["fit"] / fed
    out[f"federated_flops_fraction[{name}]"] = 6 * params * tokens / fed / flops
  return out


def fixed_overhead(task: Task, clients: int, repeats: int) -> dict:
  process = task.process()
  state = process.initialize()
  one_batch = task.client_datasets(clients, max_elements=task.batch_size)
  empty = [ds.take(0) for ds in one_batch]
  process.next(state, one_batch)
  no_data = timed(lambda: process.next(state, empty), repeats)
  with_batch = timed(lambda: process.next(state, one_batch), repeats)
  central = central_seconds(task, one_batch, repeats)
  evaluation = algorithms.build_eval_process(task.model_fn, client_model_fn=task.client_model_fn)
  eval_state = evaluation.initialize()
  evaluation.next(eval_state, one_batch)
  eval_seconds = timed(lambda: evaluation.next(eval_state, one_batch), repeats)
  return {
    "clients": clients,
    "round_no_data_s": no_data,
    "round_one_batch_each_s": with_batch,
    "client_work_s": with_batch - no_data,
    "central_same_batches_s": central,
    "overhead_per_round_s": with_batch - central,
    "overhead_per_client_s": (with_batch - central) / clients,
    "eval_round_one_batch_each_s": eval_seconds,
  }


def scaling(task: Task, client_counts, rounds: int) -> dict:
  process = task.process()
  state = process.initialize()
  process.next(state, task.client_datasets(1))
  out = {}
  for n in client_counts:
    client_datasets = task.client_datasets(n)
    data_mb = sum(ds.reduce(0, lambda a, b: a + tf.size(b[1])).numpy() for ds in client_datasets) * 12 / 2**20
    before = memory.process_tree_rss_mb()
    with PeakMemory() as peak:
      seconds = timed(lambda ds=client_datasets: process.next(state, ds), rounds)
    out[n] = {
      "s_per_round": seconds,
      "s_per_client": seconds / n,
      "peak_mb": peak.peak,
      "peak_minus_before_mb": peak.peak - before,
      "client_data_mb": data_mb,
    }
  return out


def memory_over_rounds(task: Task, clients: int, rounds: int) -> dict:
  process = task.process()
  state = process.initialize()
  rss = []
  for round_num in range(1, rounds + 1):
    state = process.next(state, task.client_datasets(clients, round_num=round_num)).state
    rss.append(memory.process_tree_rss_mb())
  settle = min(5, rounds // 2)  # Allocators settle during the first rounds.
  return {
    "rounds": rounds,
    "clients": clients,
    f"mb_after_round_{settle}": rss[settle - 1],
    "mb_after_last_round": rss[-1],
    "growth_after_settling_pct": 100 * (rss[-1] - rss[settle - 1]) / rss[settle - 1],
  }


def concurrency(task: Task, clients: int, repeats: int, values) -> dict:
  out = {}
  process = task.process()
  client_datasets = task.client_datasets(clients)
  for value in values:
    runtime.set_up(max_concurrent_computation_calls=value)
    state = process.initialize()
    process.next(state, client_datasets)
    out[value] = timed(lambda s=state: process.next(s, client_datasets), repeats)
  runtime.set_up()
  best = min(out.values())
  return {f"s_per_round[max_concurrent={k}]": v for k, v in out.items()} | {
    f"relative_to_best[max_concurrent={k}]": v / best for k, v in out.items()
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="Tiny model, fewer clients and repeats (~2 min).")
  parser.add_argument("--with_124m", action="store_true", help="Also time one round of GPT-2 124M (~3 min).")
  parser.add_argument("--out", default=None, help="Write the figures as JSON here.")
  args = parser.parse_args()
  quick = args.quick
  size = "tiny" if quick else "2x128"
  repeats = 1 if quick else 3
  started = time.perf_counter()
  results = {"mode": "quick" if quick else "full", "model": size, "cpus": os.cpu_count(), **THREADS}

  def report(name, values):
    results[name] = values
    print(f"\n== {name} ==")
    print(json.dumps(values, indent=1, default=float))

  with runtime.execution_context():
    task = Task(size)
    clients = 3 if quick else 10
    report("round_vs_central", round_vs_central(task, clients, repeats, LOOPS))
    report("fixed_overhead", fixed_overhead(task, clients, repeats))
    counts = (1, 3) if quick else (1, 10, 50, 100)
    report(f"scaling[{size}]", scaling(task, counts, 1))
    if not quick:
      report("scaling[tiny]", scaling(Task("tiny"), counts, 1))
    if args.with_124m:
      report("scaling[gpt2_124m]", scaling(Task("gpt2_124m"), (1,), 1))
    report(
      "memory_over_rounds", memory_over_rounds(task if quick else Task("tiny"), 10, 10 if quick else 100)
    )
    report("concurrency", concurrency(task, clients, repeats, (1, 2) if quick else (1, 2, 4)))
  results["total_seconds"] = time.perf_counter() - started
  print(f"\nAll figures in {results['total_seconds']:.0f} s.")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1, default=float)


if __name__ == "__main__":
  main()
