"""Populations of 1,143 to 342,000 clients: start-up and seconds per round as the population grows.

  .venv/bin/python -m benchmarks.population --out benchmarks/results_population.json   # ~15 min on 2 cores
  .venv/bin/python -m benchmarks.population --populations 50,200 --rounds 2 --model_size tiny   # (tests)

No corpus on this machine has 342,000 clients (TFF's Stack Overflow has
342,477 and is not downloaded), so the population is made: a JSON Lines
corpus whose every client holds `EXAMPLES` lines of Shakespeare's training
text drawn with replacement (seeded), the same for every population size
(`write_population`). For each size, in a process of its own each time:

- cold start-up: `trainer.FederatedExperiment` built with an empty corpus
  cache (parse, deal, the SQL cache written, the corpus read, evaluation
  clients chosen, the process built);
- warm start-up: the same, again, with that cache;
- seconds per round: the median of `--rounds` rounds of 10 clients (after
  one warm-up round) of the default model, and the process tree's peak
  memory.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

EXAMPLES = 5  # Lines a made client holds (4 train, 1 held out).
SIZES = (1143, 34_000, 342_000)


def write_population(path: str, clients: int, seed: int = 0) -> str:
  """A JSON Lines corpus of `clients` clients, each `EXAMPLES` Shakespeare lines drawn with replacement."""
  import numpy as np

  from tff_gpt.data import datasets

  lines = [t for texts in datasets.load_corpus("shakespeare").texts("train").values() for t in texts]
  drawn = np.random.default_rng(seed).integers(len(lines), size=(clients, EXAMPLES))
  with open(path, "w", encoding="utf-8") as f:
    for c, row in enumerate(drawn):
      for i in row:
        f.write(json.dumps({"client_id": f"u{c:06d}", "text": lines[i]}) + "\n")
  return path


def one(corpus: str, cache_dir: str, rounds: int, model_size: str) -> dict:
  """Start-up and rounds of one population, in this process."""
  start = time.perf_counter()
  from tff_gpt import runtime
  from tff_gpt.training import config as config_lib
  from tff_gpt.training import memory, trainer

  config = config_lib.ExperimentConfig(
    dataset="jsonl",
    dataset_path=corpus,
    cache_dir=cache_dir,
    root_output_dir=tempfile.mkdtemp(prefix="population-"),
    experiment_name="population",
    model_size=model_size,
    clients_per_round=10,
    clients_per_eval=20,
    total_rounds=rounds + 1,
    export=False,
  )
  config.validate()
  imported = time.perf_counter()
  with runtime.execution_context(max_concurrent_computation_calls=config.max_concurrent_computation_calls):
    experiment = trainer.FederatedExperiment(config, progress=False)
    built = time.perf_counter()
    state = experiment.context.initial_state()
    seconds, peak = [], 0.0
    for round_num in range(1, rounds + 2):
      t = time.perf_counter()
      state, _ = experiment.loop.train_round(state, round_num)
      seconds.append(time.perf_counter() - t)
      peak = max(peak, memory.process_tree_rss_mb())
  return {
    "clients": len(experiment.task.train_data.client_ids),
    "import_s": imported - start,
    "startup_s": built - imported,
    "s_per_round": statistics.median(seconds[1:]),
    "peak_mb": peak,
  }


def measure(size: int, work: str, rounds: int, model_size: str) -> dict:
  """Cold and warm start-up and seconds per round of a population of `size`, each in a fresh process."""
  corpus = os.path.join(work, f"population_{size}.jsonl")
  if not os.path.exists(corpus):
    write_population(corpus, size)
  cache = tempfile.mkdtemp(prefix="cache-", dir=work)
  runs = []
  for _ in ("cold", "warm"):
    args = ["--one", corpus, "--cache_dir", cache, "--rounds", str(rounds), "--model_size", model_size]
    out = subprocess.run(
      [sys.executable, "-m", "benchmarks.population", *args], capture_output=True, text=True, check=False
    )
    if out.returncode:
      raise SystemExit(out.stderr[-3000:])
    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
  cold, warm = runs
  return {
    "population": size,
    "training_clients": warm["clients"],
    "cold_startup_s": cold["startup_s"],
    "warm_startup_s": warm["startup_s"],
    "s_per_round": warm["s_per_round"],
    "peak_mb": warm["peak_mb"],
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--populations", default=",".join(map(str, SIZES)), help="Clients, comma-separated.")
  parser.add_argument("--rounds", type=int, default=5, help="Timed rounds of 10 clients (median).")
  parser.add_argument("--model_size", default="2x128")
  parser.add_argument("--work_dir", default="", help="Where the made corpora and caches go (kept).")
  parser.add_argument("--out", default=None, help="Write the figures as JSON here.")
  parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # A child: one corpus, this process.
  parser.add_argument("--cache_dir", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.one:
    print(json.dumps(one(args.one, args.cache_dir, args.rounds, args.model_size)))
    return {}
  work = args.work_dir or tempfile.mkdtemp(prefix="population-")
  os.makedirs(work, exist_ok=True)
  rows = []
  for size in (int(p) for p in args.populations.split(",")):
    rows.append(measure(size, work, args.rounds, args.model_size))
    r, first = rows[-1], rows[0]
    print(
      f"{size:>7,} clients: start-up {r['cold_startup_s']:.1f} s cold, {r['warm_startup_s']:.1f} s warm; "
      f"{r['s_per_round']:.2f} s/round ({r['s_per_round'] / first['s_per_round']:.2f}x the first), "
      f"peak {r['peak_mb']:,.0f} MB",
      flush=True,
    )
  result = {"model_size": args.model_size, "examples_per_client": EXAMPLES, "populations": rows}
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
