"""What every study does the same way: its settings, one federated row, one central row, read back typed.

A federated row is one process of `experiments.run_experiment` (so that each
run has its own TFF worker and memory), reused when it finished before in
the same work directory; its figures are read from the run's own files
(`summary.json`, which holds the sample too, and the metrics CSV) into a
`RunResult`. A central row trains a finished run's own batches through one
model (`tff_gpt.central.replay`). A study's settings are a dataclass that
extends `Settings`, written into its results file as a dict.
"""

import csv
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the pretraining studies share: the pretraining, the model and the federated runs' size."""

  groups: str  # The plays pretrained on, comma-separated.
  model_size: str
  bpe_vocab_size: int
  epochs: int  # Pretraining epochs.
  sequence_length: int
  rounds: int
  clients: int  # Per round.
  rounds_per_eval: int
  clients_per_eval: int

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RunResult:
  """A finished federated run, as its own files have it.

  Attributes:
    name: The run's `--experiment_name`.
    summary: Its `summary.json` (with the sample `experiments.run_experiment` generated, if any).
    rows: Its metrics CSV, a dict of strings per round.
  """

  name: str
  summary: dict
  rows: list

  @classmethod
  def read(cls, work: str, name: str) -> "RunResult":
    results = results_dir(work, name)
    with open(os.path.join(results, "summary.json")) as f:
      summary = json.load(f)
    with open(os.path.join(results, "experiment.metrics.csv")) as f:
      rows = list(csv.DictReader(f))
    return cls(name=name, summary=summary, rows=rows)

  @property
  def sample(self) -> str:
    return self.summary.get("sample") or ""

  @property
  def peak_memory_mb(self) -> float:
    return max(float(r["memory_mb"]) for r in self.rows)

  @property
  def median_round_seconds(self) -> float:
    """The median round's seconds, the first (which compiles) left out when there are others."""
    later = [float(r["round_seconds"]) for r in self.rows[1:]] or [float(self.rows[0]["round_seconds"])]
    return statistics.median(later)

  def curve(self, *keys: str) -> list[tuple]:
    """`(round, key values...)` of every evaluated round (keys default to the held-out perplexity)."""
    keys = keys or ("eval_perplexity",)
    evaluated = [r for r in self.rows if r.get("eval_perplexity")]
    return [(int(r["round_num"]), *(float(r[k]) for k in keys)) for r in evaluated]

  def column(self, key: str) -> list[float]:
    """`key`'s values in the rounds that have one."""
    return [float(r[key]) for r in self.rows if r.get(key)]


def results_dir(work: str, name: str) -> str:
  return os.path.join(work, "runs", "results", name)


def python(module: str, args: list[str]) -> str:
  """Runs `python -m module args` (echoed); its stdout. Raises `RuntimeError` with its output's end."""
  cmd = [sys.executable, "-m", module, *args]
  print("$", " ".join(cmd), flush=True)
  result = subprocess.run(cmd, capture_output=True, text=True)
  if result.returncode != 0:
    raise RuntimeError(
      f"{module} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
  return result.stdout


def pretrain_on_text(work: str, write_text, s) -> dict:
  """GPT-2 pretrained centrally (`experiments.pretrain`, its BPE learned there) into `{work}/preset` on the
  JSON Lines text `write_text()` writes (called only when there is no preset yet); what it reported. `s`:
  the study's settings (`bpe_vocab_size`, `model_size`, `sequence_length`, `epochs`)."""
  if not os.path.exists(f"{work}/preset/pretrain.json"):
    args = [
      "--dataset=jsonl",
      f"--dataset_path={write_text()}",
      f"--bpe_vocab_size={s.bpe_vocab_size}",
      f"--model_size={s.model_size}",
      f"--sequence_length={s.sequence_length}",
      f"--epochs={s.epochs}",
      f"--preset_dir={work}/preset",
    ]
    print(python("experiments.pretrain", args).strip().splitlines()[-1])
  with open(f"{work}/preset/pretrain.json") as f:
    return json.load(f)


def federated(work: str, name: str, flags: list[str], *, reuse: bool = True) -> RunResult:
  """Run `name` of `experiments.run_experiment` under `{work}/runs` with `flags` (unless it finished before
  and `reuse`); its `RunResult`."""
  if reuse and os.path.exists(os.path.join(results_dir(work, name), "summary.json")):
    print(f"{name}: finished before, reused.")
  else:
    python(
      "experiments.run_experiment", [f"--root_output_dir={work}/runs", f"--experiment_name={name}", *flags]
    )
  return RunResult.read(work, name)


def divergence(work: str, name: str) -> dict | None:
  """`{"diverged_round", "message"}` of run `name` if it diverged, else None."""
  path = os.path.join(results_dir(work, name), "diverged.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    recorded = json.load(f)
  return {k: recorded[k] for k in ("diverged_round", "message")}


def central_same_batches(work: str, name: str, rates: tuple, optimizer: str | None = None) -> dict:
  """`{rate: evaluations}`: run `name`'s own batches trained centrally (`tff_gpt.central.replay`:
  one model, the run's client optimizer, or `optimizer`, at each rate), each evaluation the run's
  own metrics dict (`round_num`, `eval_loss`, `eval_loss_per_char`, ...) at its evaluation rounds.
  The batches do not depend on the optimizer: the run's seed deals its clients and shuffles."""
  from tff_gpt import runtime
  from tff_gpt.central import replay
  from tff_gpt.training import config as config_lib
  from tff_gpt.training import outputs, trainer

  dirs = outputs.RunDirs.of(os.path.join(work, "runs"), name)
  config = config_lib.ExperimentConfig.from_dict(outputs.read_json(dirs.run_config)["experiment"])
  out = {}
  with tempfile.TemporaryDirectory(prefix="central-") as elsewhere:
    if optimizer is not None:  # Another optimizer is another run's settings: built away from this run's.
      config = dataclasses.replace(config, client_optimizer=optimizer, root_output_dir=elsewhere)
    with runtime.execution_context(max_concurrent_computation_calls=1):
      experiment = trainer.FederatedExperiment(config, progress=False)
      for rate in rates:
        result = replay.train(experiment.context, experiment.evaluate, rate, progress=False)
        out[str(rate)] = evals = result["evals"]
        losses = ", ".join(f"{e['round_num']}: {e['eval_loss']:.4f}" for e in evals)
        print(f"central replay of {name}, {config.client_optimizer} {rate:g}: eval loss {losses}", flush=True)
  return out


def over_seeds(rows_by_seed: dict, key: str, reference_of) -> list[dict]:
  """Each row's `key` over seeds: mean and 95% t-interval, and its paired difference from its reference row.

  Args:
    rows_by_seed: `{seed: {row label: row}}`, the same labels for every seed.
    key: The figure compared (e.g. "eval_loss_per_char").
    reference_of: `label -> reference label` (None: no difference for that row).
  """
  from tff_gpt.comparison import stats

  seeds = sorted(rows_by_seed)
  out = []
  for label in rows_by_seed[seeds[0]]:
    values = [rows_by_seed[s][label][key] for s in seeds]
    mean, low, high = stats.interval(values)
    row = {"label": label, "seeds": len(seeds), "values": values, "mean": mean, "low": low, "high": high}
    reference = reference_of(label)
    if reference is not None and reference != label:
      differences = [rows_by_seed[s][label][key] - rows_by_seed[s][reference][key] for s in seeds]
      d_mean, d_low, d_high = stats.interval(differences)
      row |= {
        "reference": reference,
        "difference": d_mean,
        "difference_low": d_low,
        "difference_high": d_high,
      }
    out.append(row)
  return out


def seeds_table(summary: list[dict], what: str) -> str:
  """Markdown of `over_seeds`: `what` (mean [95% interval]) and the paired difference from the reference."""

  def ci(mean, low, high) -> str:
    return f"{mean:.4f}" if low == "" else f"{mean:.4f} [{low:.4f}, {high:.4f}]"

  lines = [
    f"| row | seeds | {what}, mean [95% interval] | minus its reference, paired [95% interval] | reference |",
    "|---|---|---|---|---|",
  ]
  for r in summary:
    diff = ci(r["difference"], r["difference_low"], r["difference_high"]) if "difference" in r else ""
    lines.append(
      f"| {r['label']} | {r['seeds']} | {ci(r['mean'], r['low'], r['high'])} | {diff} | "
      f"{r.get('reference', '')} |"
    )
  return "\n".join(lines)


def seeds_phrase(n: int) -> str:
  """How a table heading counts its seeds ("one seed" or "3 seeds")."""
  return "one seed" if n == 1 else f"{n} seeds"


def mean_ci(values, sign: str = "", digits: int = 4) -> str:
  """`mean [low, high]` (95% t-interval) of `values`; the mean alone for one value. `sign`: "+" to sign."""
  from tff_gpt.comparison import stats

  mean, low, high = stats.interval(values)
  spec = f"{sign}.{digits}f"
  return f"{mean:{spec}}" if low == "" else f"{mean:{spec}} [{low:{spec}}, {high:{spec}}]"


def seeded(name: str, seed: int) -> str:
  """Run `name` of `seed`: seed 0 keeps the name runs had before seeds (a work directory made then is
  reused), other seeds' end in `_s<seed>`."""
  return f"{name}_s{seed}" if seed else name


KEEP_ROWS_HELP = (
  "Keep the rows --out holds (at each of its seeds) and run only what it lacks; a preset pretrained "
  "again in a new --work_dir must end at the held-out loss --out records."
)


def kept_results(out: str) -> dict:
  """An earlier results file `out` (for `--keep_rows`), or {} when there is none."""
  if not out or not os.path.exists(out):
    return {}
  with open(out) as f:
    return json.load(f)


def kept_rows(done: dict) -> dict:
  """`{seed: {label: row}}` of an earlier results file: "rows_by_seed", and seed 0's from "rows" (the
  first seed's whole table, replies included)."""
  if not done:
    return {}
  return {int(k): v for k, v in done.get("rows_by_seed", {}).items()} | {0: done.get("rows", {})}


PRESET_TOLERANCE = 1e-5  # Relative: pretraining again on 2 CPU threads moved a held-out loss by 9e-7 of it.


def same_preset(recorded: float, again: float, what: str) -> None:
  """Stops unless `what`, pretrained again, ends at the held-out loss the kept rows started from (up to
  `PRESET_TOLERANCE` of it: float rounding, far below what a seed moves)."""
  if not math.isclose(recorded, again, rel_tol=PRESET_TOLERANCE):
    raise SystemExit(
      f"error: {what} pretrained again ends at held-out loss {again!r}, not the {recorded!r} the kept rows "
      "started from; run without --keep_rows (every row again) or in the work directory --out was made in."
    )
