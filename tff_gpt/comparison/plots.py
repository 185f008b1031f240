"""Comparison plots: loss and accuracy against rounds and bytes (band: seeds), and against heterogeneity."""

import numpy as np
from matplotlib.figure import Figure

from tff_gpt.training import outputs


def curve(rows: list[dict], key: str) -> list[tuple[int, float, float]]:
  """`(round, bytes, value)` of every row where `key` was recorded."""
  return [
    (int(r["round_num"]), float(r["bytes_communicated"]), float(r[key]))
    for r in rows
    if r.get(key) not in (None, "")
  ]


PER_TOKEN, PER_CHAR = "eval_loss", "eval_loss_per_char"


def loss_curve(rows: list[dict], key: str, tokenizer: str) -> list[tuple[int, float, float]]:
  if key == PER_CHAR and tokenizer == "char" and not curve(rows, key):
    key = PER_TOKEN  # The same number for characters (runs from before the per-character metric).
  return curve(rows, key)


def plot_curves(
  runs: list[tuple[str, list[str]]],
  comparison_dir: str,
  path: str,
  *,
  loss: str = PER_TOKEN,
  tokenizers: list[str] | None = None,
) -> None:
  """Eval loss (`loss`: per token or per character) and accuracy against rounds and MB, one line per label.

  `runs` pairs a label with its runs (one a seed): the line is their mean at each evaluation, the band
  the lowest and highest seed.
  """
  fig = Figure(figsize=(12, 8))  # Not pyplot: no global backend or figure state is touched.
  axes = fig.subplots(2, 2)
  tokenizers = tokenizers or ["char"] * len(runs)
  for (label, names), tokenizer in zip(runs, tokenizers, strict=True):
    metrics = [outputs.read_metrics(outputs.RunDirs.of(comparison_dir, run)) for run in names]
    for row_axes, curves in zip(
      axes,
      (
        [loss_curve(rows, loss, tokenizer) for rows in metrics],
        [curve(rows, "eval_accuracy") for rows in metrics],
      ),
      strict=True,
    ):
      length = min(len(c) for c in curves)
      if not length:  # Diverged before its first evaluation.
        continue
      rounds, sent, _ = zip(*curves[0][:length], strict=True)
      values = np.array([[v for _, _, v in c[:length]] for c in curves])
      mb = [b / 2**20 for b in sent]
      for ax, x in zip(row_axes, (rounds, mb), strict=True):
        (line,) = ax.plot(x, values.mean(axis=0), marker="o", markersize=3, label=label)
        if len(values) > 1:
          ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
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
