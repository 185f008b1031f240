"""What clients that drop out cost FedAvg on Shakespeare, with and without over-selection, in rounds and time.

  .venv/bin/python -m studies.dropout --seeds 0,1,2 --work_dir /tmp/dropout \
      --out studies/results_dropout.json --plot docs/dropout_time.png
  .venv/bin/python -m studies.dropout --quick     # tiny model, few rounds (the tests run it)

Every row is FedAvg (the defaults: client Adam 0.003, server SGD 1.0) on Shakespeare's roles with `s.clients`
clients a round and simulated client speeds (`--client_speeds=lognormal:
s.sigma`, median `s.median` tokens a second, `s.overhead` seconds a round;
docs/scale.md). Each sampled client fails to report with chance `p`
(`--client_dropout`) at each of `DROPOUT`; without over-selection a round
aggregates whoever reports, with it (`--over_selection=1/(1-p)`) it samples
that many more clients and aggregates the first `s.clients` to report. The
target is the held-out loss the dropout-free run of the same seed reaches at
`s.target_round`; each row reports the rounds and simulated minutes to reach
it (the first evaluation at or below it), and its final held-out loss, over
seeds, each paired with the dropout-free row of its seed.
"""

import dataclasses
import os
import tempfile

from studies import common, runs

DROPOUT = (0.0, 0.1, 0.3, 0.5)
COMMAND = "studies.dropout --seeds 0,1,2 --work_dir /tmp/dropout --out studies/results_dropout.json"
MADE = "2026-12-07, commit 4fcb741"
NONE = "no dropout"


@dataclasses.dataclass(frozen=True)
class Settings:
  model_size: str
  sequence_length: int
  rounds: int
  clients: int  # Aggregated per round (at most).
  rounds_per_eval: int
  clients_per_eval: int
  target_round: int  # The dropout-free run's loss at this round is the target.
  sigma: float = 1.0
  median: float = 1000.0  # Tokens a second.
  overhead: float = 10.0  # Simulated seconds a round costs besides its slowest reporter.
  dropout: tuple = DROPOUT

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def settings(quick: bool) -> Settings:
  if quick:
    return Settings("tiny", 32, 4, 4, 2, 10, 2, dropout=(0.0, 0.5))
  return Settings("2x64", 64, 60, 10, 5, 50, 40)


def rows_to_run(s: Settings) -> dict:
  """`{label: (run name, flags)}`: dropout-free, then each dropout without and with over-selection."""
  rows = {NONE: ("p0", [])}
  for p in s.dropout[1:]:
    rows[f"dropout {p:g}"] = (f"p{p:g}", [f"--client_dropout={p}"])
    rows[f"dropout {p:g}, over-selection"] = (
      f"p{p:g}_over",
      [f"--client_dropout={p}", f"--over_selection={1 / (1 - p):.6g}"],
    )
  return rows


def federated(s: Settings, work: str, name: str, seed: int, extra: list[str]) -> runs.RunResult:
  flags = [
    "--dataset=shakespeare",
    f"--model_size={s.model_size}",
    f"--sequence_length={s.sequence_length}",
    f"--total_rounds={s.rounds}",
    f"--clients_per_round={s.clients}",
    f"--rounds_per_eval={s.rounds_per_eval}",
    f"--rounds_per_checkpoint={s.rounds}",
    f"--clients_per_eval={s.clients_per_eval}",
    f"--client_speeds=lognormal:{s.sigma}",
    f"--client_speed_median={s.median}",
    f"--round_overhead_seconds={s.overhead}",
    "--max_concurrent_computation_calls=1",
    "--sample_prompt=",
    "--noexport",
    f"--seed={seed}",
    *extra,
  ]
  return runs.federated(work, runs.seeded(name, seed), flags)


def to_target(result: runs.RunResult, target: float) -> dict:
  """Rounds and simulated minutes to the first evaluation at or below `target` (None: never), final loss."""
  reached = [r for r in result.rows if r.get("eval_loss") and float(r["eval_loss"]) <= target]
  first = reached[0] if reached else None
  return {
    "rounds_to_target": int(first["round_num"]) if first else None,
    "minutes_to_target": float(first["simulated_time"]) / 60 if first else None,
    "final_eval_loss": result.summary["eval_loss"],
    "mean_clients": sum(float(r["clients"]) for r in result.rows) / len(result.rows),
    "minutes": float(result.rows[-1]["simulated_time"]) / 60,
  }


def run_seed(s: Settings, work: str, seed: int) -> dict:
  results = {label: federated(s, work, name, seed, extra) for label, (name, extra) in rows_to_run(s).items()}
  at = {int(r["round_num"]): float(r["eval_loss"]) for r in results[NONE].rows if r.get("eval_loss")}
  target = at[s.target_round]
  return {label: dict(to_target(result, target), target=target) for label, result in results.items()}


def doc_table(result: dict) -> str:
  """docs/results_privacy_scale.md's table: rounds and simulated minutes to the target, final loss, each
  over seeds and paired with the dropout-free row (a row that missed the target at some seed says so)."""
  by_seed = list(result["rows_by_seed"].values())
  lines = [
    f"| row ({runs.seeds_phrase(len(by_seed))}) | clients a round | rounds to target | minus no dropout | "
    "minutes to target | minus no dropout | final held-out loss | minus no dropout |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for label in by_seed[0]:
    cells = [label, runs.mean_ci([rows[label]["mean_clients"] for rows in by_seed], digits=1)]
    for key, digits in (("rounds_to_target", 1), ("minutes_to_target", 1), ("final_eval_loss", 4)):
      values = [rows[label][key] for rows in by_seed]
      if any(v is None for v in values):
        cells += [f"missed at {sum(v is None for v in values)} seeds", ""]
        continue
      diffs = [rows[label][key] - rows[NONE][key] for rows in by_seed]
      cells += [
        runs.mean_ci(values, digits=digits),
        runs.mean_ci(diffs, "+", digits) if label != NONE else "",
      ]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(result: dict, work: str, path: str) -> None:
  """Held-out loss against rounds and against simulated minutes, seed 0, one line a row."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (by_round, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  seed = min(int(k) for k in result["rows_by_seed"])
  for label, (name, _) in rows_to_run(result_settings(result)).items():
    rows = [r for r in runs.RunResult.read(work, runs.seeded(name, seed)).rows if r.get("eval_loss")]
    loss = [float(r["eval_loss"]) for r in rows]
    by_round.plot([int(r["round_num"]) for r in rows], loss, marker="o", markersize=3, label=label)
    by_time.plot([float(r["simulated_time"]) / 60 for r in rows], loss, marker="o", markersize=3)
  target = next(v for k, v in result["rows_by_seed"].items() if int(k) == seed)[NONE]["target"]
  for ax in (by_round, by_time):
    ax.axhline(target, color="gray", linestyle=":")
    ax.grid(alpha=0.3)
  by_round.set(xlabel="round", ylabel="held-out loss (nats per character)")
  by_time.set(xlabel="simulated minutes")
  by_round.legend(fontsize=7)
  fig.suptitle(f"FedAvg with clients that drop out, seed {seed} (dotted: the target)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  print(f"plot: {path}")


def result_settings(result: dict) -> Settings:
  values = dict(result["settings"])
  return Settings(**(values | {"dropout": tuple(values["dropout"])}))


def main(argv=None) -> dict:
  parser = common.parser(__doc__, work_dir="Where the runs go; reusing one skips what is done.")
  parser.add_argument("--seeds", default="0", help="Comma-separated seeds; every row runs at each.")
  parser.add_argument("--plot", default="", help="Draw loss against rounds and simulated minutes here (PNG).")
  args = parser.parse_args(argv)
  s = settings(args.quick)
  work = args.work_dir or tempfile.mkdtemp(prefix="dropout-")
  os.makedirs(work, exist_ok=True)
  by_seed = {seed: run_seed(s, work, seed) for seed in (int(x) for x in args.seeds.split(","))}
  result = common.write({"settings": s.to_dict(), "rows_by_seed": by_seed, "work_dir": work}, args.out)
  print(doc_table(result))
  if args.plot:
    plot(result, work, args.plot)
  return result


if __name__ == "__main__":
  main()
