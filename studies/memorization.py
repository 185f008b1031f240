"""What federated GPT-2 memorizes on Shakespeare, with and without user-level DP: exposure and membership.

  .venv/bin/python -m studies.memorization --seeds 0,1,2 --work_dir /tmp/memorization \
      --out studies/results_memorization.json --plot docs/memorization_exposure.png
  .venv/bin/python -m studies.memorization --table     # the doc table and plot again from the results file
  .venv/bin/python -m studies.memorization --quick     # tiny model, few rounds (the tests run it)

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
import tempfile

from studies import common, runs
from tff_gpt.comparison import stats

REPEATS = "1,10,100"
COMMAND = (
  "studies.memorization --seeds 0,1,2 --work_dir /tmp/memorization --out studies/results_memorization.json "
  "--plot docs/memorization_exposure.png"
)
MADE = (
  "2026-12-07, seed 0 at commit 5fd81ca, seeds 1-2 at 8d332d4 to 9cf5b24 (the same training and audit code; "
  "the membership loss batched from 62cde5e)"
)
RESULTS, PLOT = "results_memorization.json", "docs/memorization_exposure.png"
FEDAVG, CENTRAL = "FedAvg", "central, FedAvg's batches"
WITHIN_BITS = 2.0  # A canary this close to never-planted ones is not told apart from them.


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

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def settings(quick: bool) -> Settings:
  if quick:
    return Settings("tiny", 32, 2, 3, 1, 3, 20, 1.0, noise=(1.0,), repeats="1,4")
  return Settings("2x128", 80, 100, 20, 3, 6, 200, 1.0, noise=(0.1, 0.3, 1.0))


def rows_to_run(s: Settings) -> dict:
  """`{label: (run name, flags)}` of the federated rows."""
  dp = [
    "--aggregator=dp_fixed",
    f"--dp_clip_norm={s.clip}",
    "--client_optimizer=sgd",
    "--client_learning_rate=0.5",
  ]
  rows = {
    "FedAvg": ("fedavg", ["--client_optimizer=sgd", "--client_learning_rate=0.5"]),
    "LoRA 8": ("lora", ["--trainable=lora:8", "--client_learning_rate=0.003"]),
  }
  for z in s.noise:
    rows[f"FedAvg, DP noise {z:g}"] = (f"dp{z:g}", [*dp, f"--dp_noise_multiplier={z}"])
  return rows


def federated(s: Settings, work: str, name: str, seed: int, extra: list[str]) -> tuple[str, dict]:
  flags = [
    "--dataset=shakespeare",
    "--algorithm=fedavg_unweighted",
    f"--model_size={s.model_size}",
    f"--sequence_length={s.sequence_length}",
    f"--total_rounds={s.rounds}",
    f"--clients_per_round={s.clients}",
    f"--rounds_per_eval={s.rounds}",
    f"--rounds_per_checkpoint={s.rounds}",
    f"--canaries={len(s.repeats.split(','))}",
    f"--canary_repeats={s.repeats}",
    f"--canary_clients={s.canary_clients}",
    f"--canary_digits={s.canary_digits}",
    f"--membership_clients={s.membership_clients}",
    "--max_concurrent_computation_calls=1",
    "--sample_prompt=",
    "--noexport",
    f"--seed={seed}",
    *extra,
  ]
  name = runs.seeded(name, seed)
  return name, _row(runs.federated(work, name, flags).summary)


def _row(summary: dict) -> dict:
  membership = summary.get("membership", {})
  return {
    "exposure": {k: v["mean_exposure"] for k, v in summary["canary_exposure"].items()},
    "space_bits": summary["canary_space_bits"],
    "membership_auc": membership.get("auc"),
    "membership_tpr_at_1pct_fpr": membership.get("tpr_at_1pct_fpr"),
    "eval_loss": summary["eval_loss"],
    "dp_epsilon": summary.get("dp_epsilon"),
    "bytes_communicated": summary.get("bytes_communicated", 0),
  }


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


def top(row: dict) -> str:
  """The largest repeat count of a row's exposures (the canary that should be remembered best)."""
  return max(row["exposure"], key=int)


def differences(by_seed: list[dict], label: str) -> list[float]:
  """Seed by seed: the most-repeated canary's exposure minus the never-planted canaries' mean."""
  return [rows[label]["exposure"][top(rows[label])] - rows[label]["exposure"]["0"] for rows in by_seed]


def doc_table(result: dict) -> str:
  """docs/results_privacy_scale.md's table: exposure by repeat count, its distance from never planted, the
  membership AUC, held-out perplexity and epsilon, each over seeds (mean [95% interval])."""
  by_seed = list(result["rows_by_seed"].values())
  first = by_seed[0]
  counts = sorted((k for k in first[FEDAVG]["exposure"] if k != "0"), key=int, reverse=True)
  head = " | ".join(f"exposure x{k}" for k in counts)
  lines = [
    f"| row ({runs.seeds_phrase(len(by_seed))}) | {head} | never planted | x{counts[0]} minus never planted, "
    "paired | membership AUC | held-out perplexity | epsilon |",
    "|---|" + "---|" * (len(counts) + 5),
  ]
  for label in first:
    of = lambda key, label=label: [rows[label][key] for rows in by_seed]  # noqa: E731
    exposure = [
      runs.mean_ci([rows[label]["exposure"][k] for rows in by_seed], digits=2) for k in counts + ["0"]
    ]
    auc = runs.mean_ci(of("membership_auc"), digits=3) if first[label]["membership_auc"] is not None else "-"
    perplexity = runs.mean_ci([math.exp(v) for v in of("eval_loss")], digits=2)
    epsilon = (
      "none" if first[label]["dp_epsilon"] is None else f"{first[label]['dp_epsilon']:.2f}"
    )  # Seeded alike.
    cells = [label, *exposure, runs.mean_ci(differences(by_seed, label), "+", 2), auc, perplexity, epsilon]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n\n" + verdict(result) + "."


def verdict(result: dict) -> str:
  """Which rows the seeds show remembering the most-repeated canary (the interval of its paired distance
  from never-planted ones above zero), and which bring it within `WITHIN_BITS` of them (the mean; and
  the whole interval)."""
  by_seed = list(result["rows_by_seed"].values())
  above, near, surely_near = [], [], []
  for label in by_seed[0]:
    mean, low, high = stats.interval(differences(by_seed, label))
    above += [label] if low != "" and low > 0 else []
    near += [label] if mean < WITHIN_BITS else []
    surely_near += [label] if high != "" and high < WITHIN_BITS else []
  listed = lambda labels: "; ".join(labels) if labels else "no row"  # noqa: E731
  return (
    f"Above never-planted canaries (interval above zero): {listed(above)}. Within {WITHIN_BITS:g} bits of "
    f"them on average: {listed(near)}; with the whole interval: {listed(surely_near)}"
  )


def plot(result: dict, path: str) -> None:
  """Exposure of the most-repeated canary against epsilon (DP rows; no DP drawn at the right) and against
  held-out perplexity (every row), means with 95% intervals over seeds."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  by_seed = list(result["rows_by_seed"].values())
  fig, (by_eps, by_ppl) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  never = stats.interval([rows[FEDAVG]["exposure"]["0"] for rows in by_seed])[0]
  dp = [label for label in by_seed[0] if by_seed[0][label]["dp_epsilon"] is not None]
  far = 10 * max(stats.interval([rows[x]["dp_epsilon"] for rows in by_seed])[0] for x in dp) if dp else 1
  for label in by_seed[0]:
    mean, low, high = stats.interval([rows[label]["exposure"][top(rows[label])] for rows in by_seed])
    err = None if low == "" else [[mean - low], [high - mean]]
    eps = by_seed[0][label]["dp_epsilon"]
    x = stats.interval([rows[label]["dp_epsilon"] for rows in by_seed])[0] if eps is not None else far
    ppl = stats.interval([math.exp(rows[label]["eval_loss"]) for rows in by_seed])[0]
    each = [rows[label]["exposure"][top(rows[label])] for rows in by_seed]
    for ax, at in ((by_eps, x), (by_ppl, ppl)):
      (mark, *_) = ax.errorbar([at], [mean], yerr=err, fmt="o", capsize=3)
      ax.plot([at] * len(each), each, "x", color=mark.get_color(), alpha=0.6, markersize=4)  # Each seed.
      ax.annotate(label, (at, mean), textcoords="offset points", xytext=(4, 4), fontsize=7)
  for ax in (by_eps, by_ppl):
    ax.axhline(never, color="gray", linestyle=":", label="never planted")
    ax.axhline(never + WITHIN_BITS, color="gray", linestyle="--", label=f"{WITHIN_BITS:g} bits above it")
  by_eps.set(xscale="log", xlabel=f"epsilon at delta 1e-5 (no DP drawn at {far:g})")
  by_eps.set_ylim(-0.5, by_seed[0][FEDAVG]["space_bits"] + 0.5)  # Exposure lies in [0, log2 |R|].
  by_eps.set_ylabel(f"exposure of the x{top(by_seed[0][FEDAVG])} canary (bits)")
  by_ppl.set(xlabel="held-out perplexity per character")
  by_eps.legend(fontsize=7)
  fig.suptitle(
    f"What GPT-2 remembers of a canary, {runs.seeds_phrase(len(by_seed))} (mean, 95% interval; x: seeds)"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  print(f"plot: {path}")


def main(argv=None) -> dict:
  parser = common.parser(__doc__, work_dir="Where the runs go; reusing one skips what is done.")
  parser.add_argument("--seeds", default="0", help="Comma-separated seeds; every row runs at each.")
  parser.add_argument("--plot", default="", help="Draw exposure against epsilon and perplexity here (PNG).")
  parser.add_argument("--table", action="store_true", help=f"Print the table and draw {PLOT} from {RESULTS}.")
  parser.add_argument("--central_of", default="", help=argparse.SUPPRESS)  # A child: one central row.
  args = parser.parse_args(argv)
  if args.central_of:
    _central(args.work_dir, args.central_of)
    return {}
  if args.table:
    result = common.read(RESULTS)
    print(doc_table(result))
    plot(result, os.path.join(os.path.dirname(common.STUDIES), PLOT))
    return result
  s = settings(args.quick)
  work = args.work_dir or tempfile.mkdtemp(prefix="memorization-")
  os.makedirs(work, exist_ok=True)
  by_seed = {}
  for seed in (int(x) for x in args.seeds.split(",")):
    rows = {}
    for label, (name, extra) in rows_to_run(s).items():
      run_name, rows[label] = federated(s, work, name, seed, extra)
      if name == "fedavg":
        rows[CENTRAL] = central(work, run_name)
    by_seed[seed] = rows
    print(json.dumps(rows, indent=1))
  result = common.write({"settings": s.to_dict(), "rows_by_seed": by_seed, "work_dir": work}, args.out)
  print(doc_table(result))
  if args.plot:
    plot(result, args.plot)
  return result


if __name__ == "__main__":
  main()
