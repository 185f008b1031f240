"""Two seeds of one run: one after another, or side by side as two processes? Wall time of each way.

  .venv/bin/python -m benchmarks.seeds_side_by_side --out benchmarks/results_seeds_side_by_side.json

A comparison over seeds runs its (seed, grid point) runs one after another
(`training.comparison`). This measures whether two at once would finish
sooner on this machine: the same two `experiments.run_experiment` runs (the
default model on Shakespeare, seeds 0 and 1) first sequentially, then as two
processes started together, each way `--repeats` times, alternating; it
prints the median wall time of each way and their ratio.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

RUN = [
  "--total_rounds={rounds}",
  "--clients_per_round=10",
  "--rounds_per_eval={rounds}",
  "--rounds_per_checkpoint={rounds}",
  "--clients_per_eval=20",
  "--noexport",
  "--sample_prompt=",
]


def _command(root: str, seed: int, rounds: int, calls: int) -> list[str]:
  flags = [f.format(rounds=rounds) for f in RUN]
  return [
    sys.executable,
    "-m",
    "experiments.run_experiment",
    f"--root_output_dir={root}",
    f"--experiment_name=s{seed}",
    f"--seed={seed}",
    f"--max_concurrent_computation_calls={calls}",
    *flags,
  ]


def _wall(commands: list[list[str]], side_by_side: bool) -> float:
  start = time.perf_counter()
  if side_by_side:
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    for p in procs:
      if p.wait() != 0:
        raise RuntimeError(p.stderr.read().decode()[-2000:])
  else:
    for c in commands:
      subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
  return time.perf_counter() - start


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  times = {"one_after_another_s": [], "side_by_side_s": []}
  for _ in range(args.repeats):
    for way, side_by_side, calls in (("one_after_another_s", False, 2), ("side_by_side_s", True, 1)):
      with tempfile.TemporaryDirectory() as root:
        commands = [_command(root, seed, args.rounds, calls) for seed in (0, 1)]
        times[way].append(round(_wall(commands, side_by_side), 1))
        print(f"{way}: {times[way][-1]} s", flush=True)
  result = {
    "rounds": args.rounds,
    "cores": os.cpu_count(),
    **times,
    "median_one_after_another_s": statistics.median(times["one_after_another_s"]),
    "median_side_by_side_s": statistics.median(times["side_by_side_s"]),
  }
  result["side_by_side_over_one_after_another"] = round(
    result["median_side_by_side_s"] / result["median_one_after_another_s"], 3
  )
  print(json.dumps(result, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
