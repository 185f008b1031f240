"""The report of a comparison: CSV and Markdown tables, the grid, and plots against rounds and bytes.

Each configuration is reported at its best grid point (the lowest final
evaluation loss); a diverged grid point is reported as such and is never a
configuration's best unless all of its points diverged.
"""

import csv
import math
import os

from matplotlib.figure import Figure

from tff_gpt.training import outputs


def _curve(rows: list[dict], key: str) -> list[tuple[int, float, float]]:
  """`(round, bytes, value)` of every row where `key` was recorded."""
  return [
    (int(r["round_num"]), float(r["bytes_communicated"]), float(r[key]))
    for r in rows
    if r.get(key) not in (None, "")
  ]


PER_TOKEN, PER_CHAR = "eval_loss", "eval_loss_per_char"


def _tokenizer(record: dict) -> str:
  return record["summary"].get("tokenizer", "char")  # Runs from before the field: char.


def loss_key(records: list[dict]) -> str:
  """The loss a report compares by: per character when the runs' tokenizers differ, else per token.

  Losses per token of different tokenizers are not comparable (a BPE token
  covers several characters); the same totals per character of the held-out
  text are (`preprocessing.num_characters`).
  """
  return PER_CHAR if len({_tokenizer(r) for r in records}) > 1 else PER_TOKEN


def _loss_curve(rows: list[dict], key: str, tokenizer: str) -> list[tuple[int, float, float]]:
  if key == PER_CHAR and tokenizer == "char" and not _curve(rows, key):
    key = PER_TOKEN  # The same number for characters (runs from before the per-character metric).
  return _curve(rows, key)


def _row(record: dict, comparison_dir: str, target_loss: float | None, key: str = PER_TOKEN) -> dict:
  """A report row; a diverged run's losses and final figures are blank, its round in `diverged_round`."""
  summary = record["summary"]
  heterogeneity = summary.get("heterogeneity") or {}
  rows = outputs.read_metrics(outputs.RunDirs.of(comparison_dir, record["run"]))
  losses = _curve(rows, "eval_loss")
  finite = [x for x in losses if math.isfinite(x[2])]  # A diverged run's last evaluation may be NaN.
  best_round, _, best_loss = min(finite, key=lambda x: x[2]) if finite else ("", "", "")
  per_char = [x for x in _loss_curve(rows, PER_CHAR, _tokenizer(record)) if math.isfinite(x[2])]
  compared = per_char if key == PER_CHAR else finite
  reached = [r for r, _, loss in compared if target_loss is not None and loss <= target_loss]
  diverged = "diverged_round" in summary
  final = {k: "" if diverged else summary[k] for k in ("eval_loss", "eval_perplexity", "eval_accuracy")}
  return {
    "configuration": record["configuration"],
    "run": record["run"],
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
    # With --personalization_clients: personalized held-out loss and the median per-client gain.
    "personalized_loss": _round((summary.get("personalization") or {}).get("personalized_loss_mean", ""), 4),
    "personalization_gain": _round((summary.get("personalization") or {}).get("gain_median", ""), 4),
    "partition": summary.get("partition", ""),
    "partition_alpha": (summary.get("partition_settings") or {}).get("alpha") or "",
    "clients": heterogeneity.get("clients", ""),
    "size_gini": heterogeneity.get("size_gini", ""),
    "mean_label_tv": heterogeneity.get("mean_label_tv", ""),
  }


def _round(value, digits: int):
  return "" if value == "" else round(value, digits)


def _rank(row: dict) -> tuple:
  """Best grid point first: lowest final eval loss; diverged (or NaN) runs last."""
  loss = row["final_eval_loss"]
  last = loss == "" or math.isnan(loss)
  return (last, 0.0 if last else loss)


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
  "final_eval_loss",
  "best_eval_loss",
  "final_loss_per_char",
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


def write_report(records: list[dict], comparison_dir: str, *, target_loss: float | None = None) -> dict:
  """Writes the tables and the plot; returns their paths and the best rows.

  Each configuration is represented by its grid point with the lowest final
  evaluation loss; `grid.csv` lists every grid point.
  """
  report_dir = os.path.join(comparison_dir, "report")
  os.makedirs(report_dir, exist_ok=True)
  key = loss_key(records)
  grid = [_row(r, comparison_dir, target_loss, key) for r in records]
  best = {}
  for row in grid:
    current = best.get(row["configuration"])
    if current is None or _rank(row) < _rank(current):
      best[row["configuration"]] = row
  rows = list(best.values())
  paths = {
    "csv": os.path.join(report_dir, "comparison.csv"),
    "markdown": os.path.join(report_dir, "comparison.md"),
    "grid_csv": os.path.join(report_dir, "grid.csv"),
    "plot": os.path.join(report_dir, "comparison.png"),
  }
  _write_csv(paths["csv"], rows)
  _write_csv(paths["grid_csv"], grid)
  _write_markdown(paths["markdown"], rows, grid, key, target_loss)
  plot_curves(
    [(r["configuration"], r["run"]) for r in rows],
    comparison_dir,
    paths["plot"],
    loss=key,
    tokenizers=[r["tokenizer"] for r in rows],
  )
  if len({r["partition"] for r in rows}) > 1 and all(r["mean_label_tv"] != "" for r in rows):
    paths["heterogeneity_plot"] = os.path.join(report_dir, "heterogeneity.png")
    plot_heterogeneity(rows, paths["heterogeneity_plot"])
  return {"rows": rows, "grid": grid, **paths}


def _write_markdown(
  path: str, rows: list[dict], grid: list[dict], key: str, target_loss: float | None
) -> None:
  """The best rows as a Markdown table and a paragraph: what was evaluated, the target, data, divergences."""
  columns = [c for c in _MD_COLUMNS if any(r[c] != "" for r in rows)]
  if key == PER_TOKEN:  # One tokenizer: the per-token losses say it all.
    columns = [c for c in columns if not c.endswith("_per_char")]
  if len({r["partition"] for r in rows}) == 1:  # One partition: said once below the table.
    columns = [c for c in columns if c not in ("partition", "size_gini", "mean_label_tv")]
  unit = " per character" if key == PER_CHAR else ""
  target = f" Rounds to target: first evaluation with loss{unit} <= {target_loss}." if target_loss else ""
  if key == PER_CHAR:
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
      f"{markdown_table(rows, columns)}\n\nEvaluation on held-out text of the evaluation clients; "
      f"each configuration at its best grid point (by final eval loss).{target}{data}\n"
    )


def plot_curves(
  runs: list[tuple[str, str]],
  comparison_dir: str,
  path: str,
  *,
  loss: str = PER_TOKEN,
  tokenizers: list[str] | None = None,
) -> None:
  """Eval loss (`loss`: per token or per character) and accuracy against rounds and MB, one line per run."""
  fig = Figure(figsize=(12, 8))  # Not pyplot: no global backend or figure state is touched.
  axes = fig.subplots(2, 2)
  tokenizers = tokenizers or ["char"] * len(runs)
  for (label, run), tokenizer in zip(runs, tokenizers, strict=True):
    rows = outputs.read_metrics(outputs.RunDirs.of(comparison_dir, run))
    for row_axes, points in zip(
      axes, (_loss_curve(rows, loss, tokenizer), _curve(rows, "eval_accuracy")), strict=True
    ):
      if not points:  # Diverged before its first evaluation.
        continue
      rounds, sent, values = zip(*points, strict=True)
      row_axes[0].plot(rounds, values, marker="o", markersize=3, label=label)
      row_axes[1].plot([b / 2**20 for b in sent], values, marker="o", markersize=3, label=label)
  loss_name = "eval loss (nats per character)" if loss == PER_CHAR else "eval loss"
  accuracy_name = "eval next-token accuracy" + (" (own tokens)" if loss == PER_CHAR else "")
  for row_axes, name in zip(axes, (loss_name, accuracy_name), strict=True):
    row_axes[0].set(xlabel="round", ylabel=name)
    row_axes[1].set(xlabel="MB communicated (all clients, both directions)", ylabel=name)
    row_axes[1].set_xscale("log")
    for ax in row_axes:
      ax.grid(alpha=0.3)
  if axes[0][0].get_legend_handles_labels()[0]:  # Not when every run diverged before its first evaluation.
    axes[0][0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def plot_heterogeneity(rows: list[dict], path: str) -> None:
  """Final eval loss against the Dirichlet alpha (when every row has one) and against mean label TV."""
  with_alpha = all(r["partition_alpha"] != "" for r in rows)
  panels = (["partition_alpha"] if with_alpha else []) + ["mean_label_tv"]
  fig = Figure(figsize=(6 * len(panels), 4.5))
  axes = fig.subplots(1, len(panels), squeeze=False)
  by_algorithm = {}
  for row in rows:
    if row["final_eval_loss"] == "":  # Diverged.
      continue
    by_algorithm.setdefault(f"{row['algorithm']} ({row['aggregator']})", []).append(row)
  for ax, key in zip(axes[0], panels, strict=True):
    for label, group in by_algorithm.items():
      group = sorted(group, key=lambda r: r[key])
      ax.plot([r[key] for r in group], [r["final_eval_loss"] for r in group], marker="o", label=label)
    if key == "partition_alpha":
      ax.set(xscale="log", xlabel="Dirichlet alpha over the label (small = each client holds few labels)")
    else:
      ax.set(xlabel="mean TV distance of client label mixes from the global mix (0 = IID)")
    ax.set(ylabel="final eval loss")
    ax.grid(alpha=0.3)
  axes[0][0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
