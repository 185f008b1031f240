"""What federated GPT-2 memorizes on Shakespeare, with and without user-level DP: exposure and membership.

  .venv/bin/python -m studies.memorization --seeds 0,1,2 --work_dir /tmp/memorization \
      --out studies/results_memorization.json --plot docs/memorization_exposure.png
  .venv/bin/python -m studies.memorization --table     # the doc table and plot again from the results file
  .venv/bin/python -m studies.memorization --participation  # add each seed's canary clients' rounds to it
  .venv/bin/python -m studies.memorization --quick     # tiny model, few rounds (the tests run it)
  .venv/bin/python -m studies.memorization --small --seeds 0,1,2 --work_dir /tmp/memorization_small \
      --out studies/results_memorization_small.json --plot docs/memorization_exposure_small.png
  .venv/bin/python -m studies.memorization --wide --seeds 0,1,2 --work_dir /tmp/memorization_wide \
      --out studies/results_memorization_wide.json

`--small` is the same study on a population of 100 roles (`--population`: the
canary owners and a seeded sample of the others), so that each trains in about
20 of the 100 rounds, with rows FedAvg clipped with no noise (the DP rows' own
pipeline, so that the noise is all that differs) and DP noise 0.3, 1.0 and
2.0 (no unclipped, LoRA or central rows). Its membership attack's
non-members are roles outside the population. `--wide` runs all the roles at
100 clients a round, clipped with no noise and at DP noise 1.5 (the noise on
the round's mean of DP noise 0.3 at 20, for a smaller epsilon).

Every row trains GPT-2 on Shakespeare's roles (`--dataset=shakespeare`) with
the same canaries (`--canaries`, one per repeat count in `REPEATS`, planted in
`s.canary_clients` roles that are not evaluation clients; docs/memorization.md)
and attacks client membership at the end (`--membership_clients`): FedAvg
(uniform client weights, as DP needs); LoRA on the same; FedAvg with user-level
DP (`--aggregator=dp_fixed`, clip `s.clip`) at each noise multiplier of
`s.noise`; and central training of FedAvg's own batches (`tff_gpt.central.replay`,
one model), audited alike. Each row: mean exposure by repeat count (never
planted: `0`), membership AUC and TPR at 1% FPR, held-out loss per token, the
epsilon at delta 1e-5 of the DP rows (`dp_accounting`, as the run reports it).
"""

import argparse
import dataclasses
import json
import math
import os
import statistics
import tempfile

from studies import common, runs
from studies.memorization_report import doc_table, participation_line, plot

REPEATS = "1,10,100"
COMMAND = (
  "studies.memorization --seeds 0,1,2 --work_dir /tmp/memorization --out studies/results_memorization.json "
  "--plot docs/memorization_exposure.png"
)
MADE = (
  "2026-12-07, seed 0 at commit 5fd81ca, seeds 1-2 at 8d332d4 to 9cf5b24 (the same training and audit code; "
  "the membership loss batched from 62cde5e); each seed's participation added by --participation at eef9654"
)
SMALL_COMMAND = (
  "studies.memorization --small --seeds 0,1,2 --work_dir /tmp/memorization_small "
  "--out studies/results_memorization_small.json --plot docs/memorization_exposure_small.png"
)
SMALL_MADE = (
  "2026-12-07/08, commit 61b8e91 (seed 0's clipped row run by hand at c940a94 with the same flags and code)"
)
RESULTS, PLOT = "results_memorization.json", "docs/memorization_exposure.png"
SMALL_RESULTS, SMALL_PLOT = "results_memorization_small.json", "docs/memorization_exposure_small.png"
WIDE_COMMAND = (
  "studies.memorization --wide --seeds 0,1,2 --work_dir /tmp/memorization_wide "
  "--out studies/results_memorization_wide.json"
)
WIDE_MADE = (
  "2026-12-07/08, seed 0's DP noise 1.5 at commit 473fcfc and its clipped row at 920444e, seeds 1-2 at "
  "71f3812 to ad6a79e (the same training and audit code)"
)
WIDE_RESULTS = "results_memorization_wide.json"
CENTRAL = "central, FedAvg's batches"
CLIPPED = "FedAvg, clipped at 1, no noise"


@dataclasses.dataclass(frozen=True)
class Settings:
  model_size: str
  sequence_length: int
  rounds: int
  clients: int  # Per round.
  canary_clients: int
  canary_digits: int
  membership_clients: int
  clip: float
  noise: tuple = (0.3, 1.0, 3.0)
  repeats: str = REPEATS
  canaries_per_repeat: int = 1  # Each in a role of its own when canary_clients allows.
  plain: bool = True  # A FedAvg row (client SGD, unclipped).
  lora: bool = True  # A LoRA row.
  central: bool = True  # A row training FedAvg's batches in one model.
  clipped: bool = False  # A row of the DP rows' aggregator with no noise.
  population: int | None = None  # Roles trained on (`--population`); None: all.

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def settings(quick: bool, small: bool = False, wide: bool = False) -> Settings:
  if quick:
    return Settings(
      "tiny", 32, 2, 3, 4, 3, 20, 1.0, noise=(1.0,), repeats="1,4", canaries_per_repeat=2, clipped=True,
      population=40,
    )  # fmt: skip
  full = Settings("2x128", 80, 100, 20, 3, 6, 200, 1.0, noise=(0.1, 0.3, 1.0))
  if small:
    return dataclasses.replace(full, noise=(0.3, 1.0, 2.0), plain=False, lora=False, central=False,
                               clipped=True, population=100)  # fmt: skip
  if wide:  # DP noise 0.3's noise on the mean at 100 clients a round (docs/results_privacy_scale.md).
    return dataclasses.replace(
      full, clients=100, noise=(1.5,), plain=False, lora=False, central=False, clipped=True
    )
  return full


def rows_to_run(s: Settings) -> dict:
  """`{label: (run name, flags)}` of the federated rows."""
  dp = [
    "--aggregator=dp_fixed",
    f"--dp_clip_norm={s.clip}",
    "--client_optimizer=sgd",
    "--client_learning_rate=0.5",
  ]
  rows = {}
  if s.plain:
    rows["FedAvg"] = ("fedavg", ["--client_optimizer=sgd", "--client_learning_rate=0.5"])
  if s.lora:
    rows["LoRA 8"] = ("lora", ["--trainable=lora:8", "--client_learning_rate=0.003"])
  if s.clipped:
    rows[CLIPPED] = ("clipped", [*dp, "--dp_noise_multiplier=0"])
  for z in s.noise:
    rows[f"FedAvg, DP noise {z:g}"] = (f"dp{z:g}", [*dp, f"--dp_noise_multiplier={z}"])
  return rows


def run_settings(s: Settings, seed: int) -> dict:
  """The settings every row shares (`experiments.run_experiment`'s flags, or `ExperimentConfig` fields)."""
  return dict(
    dataset="shakespeare",
    algorithm="fedavg_unweighted",
    model_size=s.model_size,
    sequence_length=s.sequence_length,
    total_rounds=s.rounds,
    clients_per_round=s.clients,
    rounds_per_eval=s.rounds,
    rounds_per_checkpoint=s.rounds,
    canaries=len(s.repeats.split(",")) * s.canaries_per_repeat,
    canary_repeats=s.repeats,
    canary_clients=s.canary_clients,
    canary_digits=s.canary_digits,
    population=s.population,
    membership_clients=s.membership_clients,
    max_concurrent_computation_calls=1,
    export=False,
    seed=seed,
  )


def federated(s: Settings, work: str, name: str, seed: int, extra: list[str]) -> tuple[str, dict]:
  flags = [f"--{k}={v}" for k, v in run_settings(s, seed).items() if v is not None]
  flags += ["--sample_prompt=", *extra]
  name = runs.seeded(name, seed)
  return name, _row(runs.federated(work, name, flags).summary)


def participation_of(s: Settings, seed: int) -> dict:
  """`{repeats: rounds}`: in how many rounds the aggregate held the update of the client of each repeat
  count's canary, and the last (`last_<repeats>`); means over a repeat count's canaries when it has several.
  Every row of a seed samples the same clients, so the run is built, not trained."""
  from tff_gpt import runtime
  from tff_gpt.training import audit, trainer
  from tff_gpt.training import config as config_lib

  with tempfile.TemporaryDirectory(prefix="participation-") as root:
    config = config_lib.ExperimentConfig(**run_settings(s, seed), root_output_dir=root)
    with runtime.execution_context(max_concurrent_computation_calls=1):
      run = trainer.FederatedExperiment(config, progress=False).context
      rows = [dict(repeats=c.repeats, client=c.client) for c in run.task.canary_plan.inserted]
      rows = audit.with_participation(rows, run, s.rounds)
  counts = sorted({r["repeats"] for r in rows})
  of = lambda key, k: statistics.mean(r[key] for r in rows if r["repeats"] == k)  # noqa: E731
  return {str(k): of("rounds_aggregated", k) for k in counts} | {
    f"last_{k}": of("last_round", k) for k in counts
  }


def _row(summary: dict) -> dict:
  membership = summary.get("membership", {})
  return {
    "exposure": {k: v["mean_exposure"] for k, v in summary["canary_exposure"].items()},
    "space_bits": summary["canary_space_bits"],
    "membership_auc": membership.get("auc"),
    "membership_tpr_at_1pct_fpr": membership.get("tpr_at_1pct_fpr"),
    "eval_loss": summary["eval_loss"],
    "dp_epsilon": _finite(summary.get("dp_epsilon")),
    "bytes_communicated": summary.get("bytes_communicated", 0),
  }


def _finite(epsilon: float | None) -> float | None:
  """A DP row's epsilon; None where there is none (no DP, or no noise: epsilon is infinite)."""
  return epsilon if epsilon is not None and math.isfinite(epsilon) else None


def central(work: str, name: str) -> dict:
  """FedAvg's own batches through one model (client SGD 0.5), audited as the runs are: in a process of its
  own (`--central_of`, so that its memory goes when it ends), kept in `{work}/central/<name>.json`."""
  kept = os.path.join(work, "central", f"{name}.json")
  if not os.path.exists(kept):
    runs.python("studies.memorization", ["--central_of", name, "--work_dir", work])
  with open(kept) as f:
    return json.load(f)


def _central(work: str, name: str) -> None:
  from tff_gpt import runtime
  from tff_gpt.central import replay
  from tff_gpt.training import audit, outputs, trainer
  from tff_gpt.training import config as config_lib

  dirs = outputs.RunDirs.of(os.path.join(work, "runs"), name)
  config = config_lib.ExperimentConfig.from_dict(outputs.read_json(dirs.run_config)["experiment"])
  with tempfile.TemporaryDirectory(prefix="central-") as elsewhere:
    config = dataclasses.replace(config, root_output_dir=elsewhere)
    with runtime.execution_context(max_concurrent_computation_calls=1):
      experiment = trainer.FederatedExperiment(config, progress=False)
      result = replay.train(
        experiment.context, experiment.evaluate, config.client_learning_rate, progress=False
      )
      measured = audit.measure(experiment.context, result["model_weights"])
  summary = dict(measured, eval_loss=result["evals"][-1]["eval_loss"])
  os.makedirs(os.path.join(work, "central"), exist_ok=True)
  with open(os.path.join(work, "central", f"{name}.json"), "w") as f:
    json.dump(_row(summary), f)


def main(argv=None) -> dict:
  parser = common.parser(__doc__, work_dir="Where the runs go; reusing one skips what is done.")
  parser.add_argument("--seeds", default="0", help="Comma-separated seeds; every row runs at each.")
  parser.add_argument("--plot", default="", help="Draw exposure against epsilon and perplexity here (PNG).")
  parser.add_argument(
    "--small", action="store_true", help=f"A population of 100 roles ({SMALL_RESULTS}, {SMALL_PLOT})."
  )
  parser.add_argument("--wide", action="store_true", help=f"100 clients a round, DP only ({WIDE_RESULTS}).")
  parser.add_argument("--table", action="store_true", help=f"Print the table and draw {PLOT} from {RESULTS}.")
  parser.add_argument(
    "--participation",
    action="store_true",
    help=f"Add to {RESULTS} the rounds each seed aggregated each canary's client (builds, trains nothing).",
  )
  parser.add_argument("--central_of", default="", help=argparse.SUPPRESS)  # A child: one central row.
  args = parser.parse_args(argv)
  if args.central_of:
    _central(args.work_dir, args.central_of)
    return {}
  results, drawn = (SMALL_RESULTS, SMALL_PLOT) if args.small else (RESULTS, PLOT)
  results, drawn = (WIDE_RESULTS, "") if args.wide else (results, drawn)
  if args.participation or args.table:
    return _again(results, drawn, args.participation)
  s = settings(args.quick, args.small, args.wide)
  work = args.work_dir or tempfile.mkdtemp(prefix="memorization-")
  os.makedirs(work, exist_ok=True)
  by_seed = {}
  for seed in (int(x) for x in args.seeds.split(",")):
    rows = {}
    for label, (name, extra) in rows_to_run(s).items():
      run_name, rows[label] = federated(s, work, name, seed, extra)
      if name == "fedavg" and s.central:
        rows[CENTRAL] = central(work, run_name)
    by_seed[seed] = rows
    print(json.dumps(rows, indent=1))
  seen = {seed: participation_of(s, seed) for seed in by_seed}
  result = {"settings": s.to_dict(), "rows_by_seed": by_seed, "participation": seen, "work_dir": work}
  result = common.write(result, args.out)
  print(doc_table(result))
  if args.plot:
    plot(result, args.plot)
  return result


def _again(results: str, drawn: str, participation: bool) -> dict:
  """The table and plot from `results` again; with `participation`, each seed's added to it first."""
  result = common.read(results)
  if participation:
    s = Settings(**{k: tuple(v) if k == "noise" else v for k, v in result["settings"].items()})
    result["participation"] = {seed: participation_of(s, int(seed)) for seed in result["rows_by_seed"]}
    common.write(result, os.path.join(common.STUDIES, results))
    print(participation_line(result))
    return result
  print(doc_table(result))
  if drawn:
    plot(result, os.path.join(os.path.dirname(common.STUDIES), drawn))
  return result


if __name__ == "__main__":
  main()
