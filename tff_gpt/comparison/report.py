"""The report of a comparison: CSV and Markdown tables, the grid, and plots against rounds and bytes.

Each configuration is reported at its best grid point (`comparison_stats`:
the lowest mean final loss on the selection clients); a diverged grid point
is reported as such and is never a configuration's best unless all of its
points diverged. With several seeds, figures are means with t-intervals,
the curves means with a band, and `differences.csv` holds each
configuration's paired difference from the reference.
"""

import csv
import math
import os

from tff_gpt.comparison import plots, stats
from tff_gpt.training import outputs


def _tokenizer(record: dict) -> str:
  return record["summary"].get("tokenizer", "char")  # Runs from before the field: char.


def loss_key(records: list[dict]) -> str:
  """The loss a report compares by: per character when the runs' tokenizers differ, else per token.

  Losses per token of different tokenizers are not comparable (a BPE token
  covers several characters); the same totals per character of the held-out
  text are (`preprocessing.num_characters`).
  """
  return plots.PER_CHAR if len({_tokenizer(r) for r in records}) > 1 else plots.PER_TOKEN


def _row(
  record: dict,
  comparison_dir: str,
  target_loss: float | None,
  key: str = plots.PER_TOKEN,
  select_on: str = "test",
) -> dict:
  """A run's report row; a diverged run's losses and final figures are blank, its round in `diverged_round`.

  Rounds to target are counted on the selection clients' loss (validation or test).
  """
  summary = record["summary"]
  rows = outputs.read_metrics(outputs.RunDirs.of(comparison_dir, record["run"]))
  losses = plots.curve(rows, "eval_loss")
  finite = [x for x in losses if math.isfinite(x[2])]  # A diverged run's last evaluation may be NaN.
  best_round, _, best_loss = min(finite, key=lambda x: x[2]) if finite else ("", "", "")
  per_char = [x for x in plots.loss_curve(rows, plots.PER_CHAR, _tokenizer(record)) if math.isfinite(x[2])]
  compared = per_char if key == plots.PER_CHAR else finite
  if select_on == "validation":
    compared = [
      x
      for x in plots.curve(rows, "val_loss_per_char" if key == plots.PER_CHAR else "val_loss")
      if math.isfinite(x[2])
    ]
  reached = [r for r, _, loss in compared if target_loss is not None and loss <= target_loss]
  diverged = "diverged_round" in summary
  final = {k: "" if diverged else summary[k] for k in ("eval_loss", "eval_perplexity", "eval_accuracy")}
  val_key = "val_loss_per_char" if key == plots.PER_CHAR else "val_loss"
  return {
    "configuration": record["configuration"],
    "run": record["run"],
    "grid_point": record.get("grid_point", record["run"]),
    "seed": record.get("seed", summary.get("seed", "")),
    "final_val_loss": "" if diverged or val_key not in summary else round(summary[val_key], 4),
    "model": summary.get("model", "gpt2"),
    "tokenizer": _tokenizer(record),
    "algorithm": summary["algorithm"],
    "aggregator": summary["aggregator"],
    "client_lr": summary["client_learning_rate"],
    "server_lr": summary["server_learning_rate"],
    "rounds": summary["rounds"],
    "final_eval_loss": _round(final["eval_loss"], 4),
    "best_eval_loss": _round(best_loss, 4),
    "best_round": best_round,
    "final_loss_per_char": round(per_char[-1][2], 4) if per_char and not diverged else "",
    "best_loss_per_char": round(min(x[2] for x in per_char), 4) if per_char else "",
    "final_perplexity": _round(final["eval_perplexity"], 3),
    "final_accuracy": _round(final["eval_accuracy"], 4),
    "rounds_to_target": reached[0] if reached else "",
    "diverged_round": summary.get("diverged_round", ""),
    "train_seconds": round(summary["train_seconds"], 1),  # A diverged run's: up to the round it stopped.
    "mb_communicated": round(summary["bytes_communicated"] / 2**20, 1),
    "dp_epsilon": round(summary["dp_epsilon"], 3) if "dp_epsilon" in summary else "",
    **_personalization_and_data(summary),
    **audit_columns(summary),
  }


def audit_columns(summary: dict) -> dict:
  """A row's memorization audit (`--canaries`, `--membership_clients`; blank without): the mean exposure of
  the most-repeated canaries and of the never-planted ones, in bits, and the membership attack's AUC."""
  exposure = summary.get("canary_exposure") or {}
  top = max(exposure, key=int) if exposure else None
  return {
    "canary_exposure_top": _round(exposure[top]["mean_exposure"], 3) if top else "",
    "canary_top_repeats": int(top) if top else "",
    "canary_exposure_never": _round(exposure["0"]["mean_exposure"], 3) if "0" in exposure else "",
    "membership_auc": _round((summary.get("membership") or {}).get("auc", ""), 4),
  }


def _personalization_and_data(summary: dict) -> dict:
  """A row's personalization figures (with --personalization_clients: the personalized held-out loss and
  the median per-client gain) and how the run's data was dealt."""
  personalization = summary.get("personalization") or {}
  heterogeneity = summary.get("heterogeneity") or {}
  return {
    "personalized_loss": _round(personalization.get("personalized_loss_mean", ""), 4),
    "personalization_gain": _round(personalization.get("gain_median", ""), 4),
    "partition": summary.get("partition", ""),
    "partition_alpha": (summary.get("partition_settings") or {}).get("alpha") or "",
    "clients": heterogeneity.get("clients", ""),
    "size_gini": heterogeneity.get("size_gini", ""),
    "mean_label_tv": heterogeneity.get("mean_label_tv", ""),
  }


def _round(value, digits: int):
  return "" if value == "" else round(value, digits)


def _write_csv(path: str, rows: list[dict]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
  return "\n".join(lines)


_MD_COLUMNS = [
  "configuration",
  "client_lr",
  "server_lr",
  "seeds",
  "final_val_loss",
  "final_eval_loss",
  "final_eval_loss_ci",
  "best_eval_loss",
  "final_loss_per_char",
  "final_loss_per_char_ci",
  "best_loss_per_char",
  "final_perplexity",
  "final_accuracy",
  "rounds_to_target",
  "diverged_round",
  "train_seconds",
  "mb_communicated",
  "dp_epsilon",
  "personalized_loss",
  "personalization_gain",
  "partition",
  "size_gini",
  "mean_label_tv",
]


def write_report(
  records: list[dict],
  comparison_dir: str,
  *,
  target_loss: float | None = None,
  select_on: str = "test",
  reference: str | None = None,
) -> dict:
  """Writes the tables and the plot; returns their paths, the best rows and the paired differences.

  Each configuration is represented by its grid point with the lowest mean
  final loss on the `select_on` clients ("validation" or "test");
  `grid.csv` lists every run (grid point and seed). `reference` (default:
  fedavg when compared, else the first configuration) is what
  `differences.csv` subtracts.
  """
  report_dir = os.path.join(comparison_dir, "report")
  os.makedirs(report_dir, exist_ok=True)
  key = loss_key(records)
  grid = [_row(r, comparison_dir, target_loss, key, select_on) for r in records]
  points = {}
  for row in grid:
    points.setdefault(row["grid_point"], []).append(row)
  best = stats.best_points(points, select_on, key)
  rows = [row for row, _ in best.values()]
  names = list(best)
  reference = reference or ("fedavg" if "fedavg" in names else names[0])
  differences = stats.paired_differences(best, reference, key) if reference in best else []
  paths = {
    "csv": os.path.join(report_dir, "comparison.csv"),
    "markdown": os.path.join(report_dir, "comparison.md"),
    "grid_csv": os.path.join(report_dir, "grid.csv"),
    "differences_csv": os.path.join(report_dir, "differences.csv"),
    "plot": os.path.join(report_dir, "comparison.png"),
  }
  _write_csv(paths["csv"], rows)
  _write_csv(paths["grid_csv"], grid)
  if differences:
    _write_csv(paths["differences_csv"], differences)
  about = _selection_text(records, select_on, reference, differences)
  _write_markdown(paths["markdown"], rows, grid, key, target_loss, about)
  plots.plot_curves(
    [(name, [r["run"] for r in runs]) for name, (_, runs) in best.items()],
    comparison_dir,
    paths["plot"],
    loss=key,
    tokenizers=[r["tokenizer"] for r in rows],
  )
  if len({r["partition"] for r in rows}) > 1 and all(r["mean_label_tv"] != "" for r in rows):
    paths["heterogeneity_plot"] = os.path.join(report_dir, "heterogeneity.png")
    plots.plot_heterogeneity(rows, paths["heterogeneity_plot"])
  return {"rows": rows, "grid": grid, "differences": differences, **paths}


def _selection_text(records: list[dict], select_on: str, reference: str, differences: list[dict]) -> str:
  """What chose each grid point and what is reported, and the conclusions the paired differences allow."""
  summary = records[0]["summary"]
  test, validation = summary.get("eval_clients", ""), summary.get("validation_clients", 0)
  if select_on == "validation":
    text = (
      f" Each configuration at its grid point with the lowest mean final loss on {validation} validation "
      f"clients; losses reported on {test} other (test) clients, never used to choose."
    )
  else:
    text = (
      f" Each configuration at its grid point with the lowest mean final loss on the same {test} clients "
      "it is reported on (--select_on=test: tuned on test, as many published tables were; this flatters "
      "large grids)."
    )
  if differences:
    text += " " + stats.conclusions(differences, reference)
  return text


def _write_markdown(
  path: str, rows: list[dict], grid: list[dict], key: str, target_loss: float | None, about: str = ""
) -> None:
  """The best rows as a Markdown table and a paragraph: what was evaluated, the target, data, divergences."""
  columns = [c for c in _MD_COLUMNS if any(r[c] != "" for r in rows)]
  if key == plots.PER_TOKEN:  # One tokenizer: the per-token losses say it all.
    columns = [c for c in columns if "_per_char" not in c]
  if len({r["partition"] for r in rows}) == 1:  # One partition: said once below the table.
    columns = [c for c in columns if c not in ("partition", "size_gini", "mean_label_tv")]
  unit = " per character" if key == plots.PER_CHAR else ""
  target = f" Rounds to target: first evaluation with loss{unit} <= {target_loss}." if target_loss else ""
  if key == plots.PER_CHAR:
    tokenizers = ", ".join(sorted({r["tokenizer"] for r in rows}))
    target = (
      f" The runs use different tokenizers ({tokenizers}): eval losses and perplexities are per token of "
      "each run's own tokenizer; compare them by the per-character losses (nats per character of the "
      f"same held-out text), which the plot shows.{target}"
    )
  data = ""
  if "partition" not in columns and rows[0]["partition"]:
    data = f" Data: {rows[0]['partition']}" + (
      f" (size Gini {rows[0]['size_gini']}, mean label TV {rows[0]['mean_label_tv']})."
      if rows[0]["mean_label_tv"] != ""
      else f" (size Gini {rows[0]['size_gini']})."
    )
  diverged = [f"{r['run']} (round {r['diverged_round']})" for r in grid if r["diverged_round"] != ""]
  if diverged:
    data += f" Diverged (global weights no longer finite, stopped; see grid.csv): {', '.join(diverged)}."
  with open(path, "w") as f:
    f.write(
      f"{markdown_table(rows, columns)}\n\nEvaluation on held-out text of the evaluation clients.{about}"
      f"{target}{data}\n"
    )
