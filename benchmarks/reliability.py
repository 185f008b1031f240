"""Reliability figures: kill -9 at random moments, and memory over 1,000 rounds.

  .venv/bin/python -m benchmarks.reliability --kill_trials=20 --rounds=1000 \
    --out benchmarks/results_reliability.json

Kill trials: the tiny model on embedded Shakespeare, 30 rounds of 10 clients,
a checkpoint every 5 rounds, run by `experiments.run_experiment` in a process
of its own. A reference run goes uninterrupted. Each trial starts the same
command, sends SIGKILL to its Python process at a moment drawn uniformly
as rounds run (after a random number of finished rounds, a random part of
the next one, up to 1.5 median rounds), then runs the command again to the
end. Counted per trial: rounds missing
from or repeated in the metrics CSV, whether the final checkpoint's weights
equal the reference's bit for bit, and TFF workers still running 30 s after
the kill.

Memory: one run of `--rounds` rounds (tiny model, 10 clients a round, metrics
every round, evaluation and checkpoint every 100); the resident memory of
the process tree is each metrics row's `memory_mb`. Growth is from round 10
(allocators settle during the first rounds) to the last. The Python process
and TFF's worker are also sampled apart every half second, to tell where
memory grows; `--replace_worker_rounds` sets how often the run replaces its
worker (`tff_gpt.runtime.REPLACE_WORKER_ROUNDS`; 0: never, the behaviour
before it existed).

`--out` merges into an existing results file, so the two parts can run apart.
"""

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILL_SETTINGS = dict(
  model_size="tiny",
  total_rounds=30,
  clients_per_round=10,
  rounds_per_checkpoint=5,
  rounds_per_eval=1000,
  clients_per_eval=10,
  export=False,
)


def _command(root: str, name: str, **settings) -> list[str]:
  flags = [f"--{k}={v}" for k, v in settings.items()]
  return [
    sys.executable,
    "-m",
    "experiments.run_experiment",
    f"--root_output_dir={root}",
    f"--experiment_name={name}",
    "--sample_prompt=",
    *flags,
  ]


def _start(command, log, **env_vars) -> subprocess.Popen:
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", **env_vars)
  return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)


def _workers(pid: int) -> list[psutil.Process]:
  try:
    return [p for p in psutil.Process(pid).children(recursive=True) if p.name() == "worker_binary"]
  except psutil.Error:
    return []


def _wait_for_worker(proc: subprocess.Popen) -> float:
  while not _workers(proc.pid):
    if proc.poll() is not None:
      raise RuntimeError(f"the run ended (status {proc.returncode}) before its worker started")
    time.sleep(0.05)
  return time.monotonic()


def _run_to_end(command, log) -> None:
  proc = _start(command, log)
  if proc.wait() != 0:
    raise RuntimeError(f"{' '.join(command)} failed with status {proc.returncode}; see {log.name}")


def _metrics(root: str, name: str) -> str:
  return os.path.join(root, "results", name, "experiment.metrics.csv")


def _rounds(root: str, name: str) -> list[int]:
  with open(_metrics(root, name)) as f:
    return [int(r["round_num"]) for r in csv.DictReader(f)]


def _final_weights(root: str, name: str):
  from tff_gpt.training import restore

  weights, version = restore.latest_weights(restore.open_run(root, name))
  return version, weights.trainable


def kill_trials(trials: int, work_dir: str, seed: int) -> dict:
  rng = random.Random(seed)
  log = open(os.path.join(work_dir, "kill_trials.log"), "w")
  reference = _command(work_dir, "reference", **KILL_SETTINGS)
  _run_to_end(reference, log)
  with open(_metrics(work_dir, "reference")) as f:
    round_seconds = statistics.median(float(r["round_seconds"]) for r in csv.DictReader(f))
  rounds = KILL_SETTINGS["total_rounds"]
  rows = []
  for trial in range(trials):
    name = f"trial_{trial}"
    command = _command(work_dir, name, **KILL_SETTINGS)
    proc = _start(command, log)
    # A moment while rounds run: after a random number of finished rounds, a random part of the next one.
    after_rounds, delay = rng.randrange(rounds), rng.uniform(0, 1.5 * round_seconds)
    _wait_for_worker(proc)
    while (len(_rounds(work_dir, name)) if os.path.exists(_metrics(work_dir, name)) else 0) < after_rounds:
      if proc.poll() is not None:
        raise RuntimeError(f"trial {trial} ended (status {proc.returncode}) before its kill; see {log.name}")
      time.sleep(0.01)
    time.sleep(delay)
    workers = _workers(proc.pid)
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    for process in alive:
      process.kill()
    done = _rounds(work_dir, name) if os.path.exists(_metrics(work_dir, name)) else []
    _run_to_end(command, log)
    got = _rounds(work_dir, name)
    rows.append(
      dict(
        trial=trial,
        kill_after_rounds=after_rounds,
        kill_delay_seconds=round(delay, 2),
        rounds_done_at_kill=len(done),
        missing_rounds=sorted(set(range(1, rounds + 1)) - set(got)),
        repeated_rounds=sorted({r for r in got if got.count(r) > 1}),
        workers_left=len(alive),
      )
    )
    print(json.dumps(rows[-1]), flush=True)
  from tff_gpt import runtime

  with runtime.execution_context():
    want_version, want = _final_weights(work_dir, "reference")
    for row in rows:
      version, got = _final_weights(work_dir, f"trial_{row['trial']}")
      row["bit_identical"] = version == want_version and all(
        a.shape == b.shape and (a == b).all() for a, b in zip(got, want, strict=True)
      )
  return dict(
    trials=trials,
    median_round_seconds=round(round_seconds, 2),
    lost_or_repeated_rounds=sum(len(r["missing_rounds"]) + len(r["repeated_rounds"]) for r in rows),
    bit_identical=sum(r["bit_identical"] for r in rows),
    workers_left=sum(r["workers_left"] for r in rows),
    kills_before_first_checkpoint=sum(r["rounds_done_at_kill"] < 5 for r in rows),
    rows=rows,
  )


def _sample_memory(proc: subprocess.Popen, metrics: str, samples: list, stop: threading.Event) -> None:
  """Appends `(rows done, Python MB, workers MB)` every half second while `proc` runs."""
  while not stop.is_set() and proc.poll() is None:
    try:
      python_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
      worker_mb = sum(w.memory_info().rss for w in _workers(proc.pid)) / 2**20
      with open(metrics) as f:
        rows = sum(1 for _ in f) - 1
    except (psutil.Error, OSError):
      rows = None
    if rows:
      samples.append((rows, python_mb, worker_mb))
    stop.wait(0.5)


def _growth(samples, column: int, settle: int) -> dict:
  first = [s[column] for s in samples if s[0] == min(x[0] for x in samples if x[0] >= settle)]
  last = [s[column] for s in samples if s[0] == max(x[0] for x in samples)]
  start, end = statistics.median(first), statistics.median(last)
  return dict(
    mb_start=round(start, 1), mb_end=round(end, 1), growth_pct=round(100 * (end - start) / start, 2)
  )


def memory_over_rounds(rounds: int, work_dir: str, replace_worker_rounds: int) -> dict:
  settings = dict(
    model_size="tiny",
    total_rounds=rounds,
    clients_per_round=10,
    rounds_per_checkpoint=100,
    rounds_per_eval=100,
    clients_per_eval=10,
    export=False,
  )
  name = f"memory_replace{replace_worker_rounds}"
  log = open(os.path.join(work_dir, f"{name}.log"), "w")
  started = time.perf_counter()
  replace = str(replace_worker_rounds or 10**9)
  proc = _start(_command(work_dir, name, **settings), log, TFF_GPT_REPLACE_WORKER_ROUNDS=replace)
  samples, stop = [], threading.Event()
  sampler = threading.Thread(target=_sample_memory, args=(proc, _metrics(work_dir, name), samples, stop))
  sampler.start()
  returncode = proc.wait()
  stop.set()
  sampler.join()
  if returncode != 0:
    raise RuntimeError(f"the memory run failed with status {returncode}; see {log.name}")
  with open(_metrics(work_dir, name)) as f:
    rows = list(csv.DictReader(f))
  mb = [float(r["memory_mb"]) for r in rows]
  settle = min(10, len(mb))
  # Like with like: the first evaluated round against the last (both just after an evaluation), and
  # the median of the last 100 rounds against that of rounds 11-100.
  first_eval = next(i for i, r in enumerate(rows) if r.get("eval_loss"))
  early, late = statistics.median(mb[settle:100]), statistics.median(mb[-100:])
  return dict(
    rounds=rounds,
    replace_worker_rounds=replace_worker_rounds,
    seconds=round(time.perf_counter() - started),
    median_round_seconds=round(statistics.median(float(r["round_seconds"]) for r in rows), 4),
    mb_after_round_10=mb[settle - 1],
    mb_after_last_round=mb[-1],
    mb_max=max(mb),
    median_mb=statistics.median(mb),
    growth_after_round_10_pct=round(100 * (mb[-1] - mb[settle - 1]) / mb[settle - 1], 2),
    growth_first_to_last_evaluated_round_pct=round(100 * (mb[-1] - mb[first_eval]) / mb[first_eval], 2),
    growth_median_last_100_over_rounds_11_100_pct=round(100 * (late - early) / early, 2),
    python_process=_growth(samples, 1, settle),
    worker=_growth(samples, 2, settle),
    samples_every_10_rounds=[
      (r, round(p), round(w)) for r, p, w in {s[0]: s for s in samples}.values() if r % 10 == 0
    ],
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--kill_trials", type=int, default=20)
  parser.add_argument("--rounds", type=int, default=1000, help="Rounds of the memory run (0: skip it).")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--replace_worker_rounds",
    type=int,
    nargs="+",
    default=[100],
    help="One memory run per value: rounds between replacements of the worker (0: never).",
  )
  parser.add_argument("--work_dir", default=None)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  work_dir = args.work_dir or tempfile.mkdtemp(prefix="tff_gpt_reliability_")
  os.makedirs(work_dir, exist_ok=True)
  results = {}
  if args.out and os.path.exists(args.out):
    with open(args.out) as f:
      results = json.load(f)
  if args.kill_trials:
    results["kill_trials"] = kill_trials(args.kill_trials, work_dir, args.seed)
    print(json.dumps({k: v for k, v in results["kill_trials"].items() if k != "rows"}, indent=1))
  if args.rounds:
    results["memory"] = [
      memory_over_rounds(args.rounds, work_dir, every) for every in args.replace_worker_rounds
    ]
    for run in results["memory"]:
      print(json.dumps({k: v for k, v in run.items() if k != "samples_every_10_rounds"}, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
