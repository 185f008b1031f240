"""Cohorts of 10 to 1,000 clients a round: seconds and peak memory per client, on the default model.

  .venv/bin/python -m benchmarks.cohorts --part_sizes 0,100 --out benchmarks/results_cohorts.json  # ~30 min
  .venv/bin/python -m benchmarks.cohorts --cohorts 2,4 --rounds 1 --model_size tiny   # seconds (tests)

Each cohort size runs one round to warm up, then `--rounds` timed rounds (the
median) of the project's FedAvg process (`measure.Task`: GPT-2 2x128, client
Adam, at most 64 sequences of 80 characters a client), while the process
tree's resident memory (TFF's worker included) is sampled every 20 ms.
Shakespeare has fewer training roles than the largest cohort, so a round's
clients are drawn with replacement (seeded by the round): every cohort draws
from the same clients, and a client drawn twice trains twice. The figure to
watch is seconds per client against the smallest cohort's (flat: the round's
fixed cost is amortized and nothing grows per client) and the peak memory
of the process tree. Each row starts a fresh worker; `--part_sizes` runs
each cohort whole and in parts of at most that many clients
(`--round_parts`: TFF's worker then holds one part's client updates).
"""

import argparse
import json
import statistics
import time

import numpy as np

from benchmarks import measure  # noqa: E402 (sizes the host before TensorFlow)
from tff_gpt import runtime
from tff_gpt.training import memory


def cohort_datasets(task: measure.Task, clients: int, round_num: int) -> list:
  """`clients` clients' datasets of round `round_num`, drawn with replacement (seeded by the round)."""
  ids = task.data.client_ids
  drawn = np.random.default_rng([task.seed, round_num]).integers(len(ids), size=clients)
  return runtime.largest_first(
    [
      task.data.train_dataset(
        ids[i],
        round_num=round_num,
        seed=task.seed,
        batch_size=task.batch_size,
        max_elements=task.max_elements,
      )
      for i in drawn
    ]
  )


def cohort(task: measure.Task, process, state, clients: int, rounds: int) -> dict:
  """Median seconds of `rounds` rounds of `clients` clients (after a warm-up round), and peak memory."""
  process.next(state, cohort_datasets(task, clients, 0))
  before = memory.process_tree_rss_mb()
  seconds = []
  with measure.PeakMemory() as peak:
    for round_num in range(1, rounds + 1):
      datasets = cohort_datasets(task, clients, round_num)
      start = time.perf_counter()
      process.next(state, datasets)
      seconds.append(time.perf_counter() - start)
  median = statistics.median(seconds)
  return {
    "clients": clients,
    "s_per_round": median,
    "s_per_client": median / clients,
    "peak_mb": peak.peak,
    "peak_minus_before_mb": peak.peak - before,
    "rounds": rounds,
  }


def parts_of(clients: int, part_size: int) -> int:
  """Parts of a round of `clients` with at most `part_size` clients each (0: one part)."""
  return max(1, -(-clients // part_size)) if part_size else 1


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--cohorts", default="10,100,300,1000", help="Clients a round, comma-separated.")
  parser.add_argument(
    "--part_sizes",
    default="0",
    help="Comma-separated; each cohort runs once per value, in parts of at most this many clients "
    "(`--round_parts`; 0: the whole round at once).",
  )
  parser.add_argument("--rounds", type=int, default=3, help="Timed rounds of each cohort (median).")
  parser.add_argument("--model_size", default="2x128")
  parser.add_argument("--out", default=None, help="Write the figures as JSON here.")
  args = parser.parse_args(argv)
  rows = []
  task = measure.Task(args.model_size)
  process = task.process()
  for clients in (int(c) for c in args.cohorts.split(",")):
    for part_size in (int(p) for p in args.part_sizes.split(",")):
      parts = parts_of(clients, part_size)
      with runtime.execution_context(round_parts=parts):  # A fresh worker: each row's memory is its own.
        row = cohort(task, process, process.initialize(), clients, args.rounds)
      rows.append({**row, "part_size": part_size, "parts": parts})
      first = next(r for r in rows if r["part_size"] == part_size)["s_per_client"]
      print(
        f"{clients:>5} clients in {parts:>2} part(s): {row['s_per_round']:.2f} s/round, "
        f"{row['s_per_client']:.4f} s/client ({row['s_per_client'] / first:.2f}x the first cohort's), "
        f"peak {row['peak_mb']:,.0f} MB (+{row['peak_minus_before_mb']:,.0f})",
        flush=True,
      )
  result = {"model_size": args.model_size, "cohorts": rows, "threads": measure.THREADS}
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
