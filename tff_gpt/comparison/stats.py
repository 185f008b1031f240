"""Statistics of a comparison over seeds: means with t-intervals, the best grid point, paired differences.

A grid point runs once per seed; its report row holds the mean over seeds of
each figure and a two-sided 95% Student-t interval of the mean (blank with
one seed). Each configuration is reported at the grid point with the lowest
mean final loss on the selection clients (validation, or the reported test
clients with `--select_on=test`). Against a reference configuration (FedAvg
by default), each configuration's final test loss is differenced seed by seed
(the runs of one seed see the same clients in the same rounds), and the mean
difference gets its interval: a difference whose interval excludes zero is
one the seeds support.
"""

import math
import statistics

from scipy import stats

CONFIDENCE = 0.95
# The figures of a run row averaged over seeds (each also gets a `<name>_ci` interval).
AVERAGED = (
  "final_eval_loss",
  "best_eval_loss",
  "final_loss_per_char",
  "best_loss_per_char",
  "final_perplexity",
  "final_accuracy",
  "final_val_loss",
  "rounds_to_target",
  "train_seconds",
)
DIGITS = {"rounds_to_target": 1, "train_seconds": 1}  # Decimals of a mean over seeds (others: 4).


def interval(values: list[float]) -> tuple[float, float | str, float | str]:
  """`(mean, low, high)`: the mean and its two-sided `CONFIDENCE` t-interval ('' with fewer than 2 values)."""
  mean = statistics.fmean(values)
  if len(values) < 2:
    return mean, "", ""
  sem = statistics.stdev(values) / math.sqrt(len(values))
  if sem == 0:
    return mean, mean, mean
  low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=sem)
  return mean, float(low), float(high)


def _format(low, high) -> str:
  return "" if low == "" else f"[{low:.4f}, {high:.4f}]"


def summarize_point(runs: list[dict]) -> dict:
  """One row for a grid point from its runs' rows (one a seed): means and intervals over seeds."""
  row = dict(runs[0])
  row.pop("seed", None)
  row["seeds"] = len(runs)
  row["runs"] = " ".join(r["run"] for r in runs)
  diverged = [r["diverged_round"] for r in runs if r["diverged_round"] != ""]
  row["diverged_round"] = min(diverged) if diverged else ""
  for name in AVERAGED:
    values = [r[name] for r in runs]
    if any(v == "" for v in values):  # A diverged seed, a figure not recorded, or a target not reached.
      row[name], row[f"{name}_ci"] = "", ""
      continue
    mean, low, high = interval([float(v) for v in values])
    row[name] = round(mean, DIGITS.get(name, 4))
    row[f"{name}_ci"] = _format(low, high)
  return row


def selection_loss(row: dict, select_on: str, key: str) -> float | str:
  """The figure a grid point is chosen by: the final loss on the validation or the test clients."""
  if select_on == "validation":
    return row["final_val_loss"]
  return row["final_loss_per_char"] if key == "eval_loss_per_char" else row["final_eval_loss"]


def best_points(points: dict[str, list[dict]], select_on: str, key: str) -> dict[str, dict]:
  """`{configuration: the summarized row of its best grid point}` (diverged points last)."""
  best = {}
  for runs in points.values():
    row = summarize_point(runs)
    loss = selection_loss(row, select_on, key)
    rank = (loss == "" or math.isnan(loss), 0.0 if loss == "" or math.isnan(loss) else loss)
    current = best.get(row["configuration"])
    if current is None or rank < current[0]:
      best[row["configuration"]] = (rank, row, runs)
  return {name: (row, runs) for name, (_, row, runs) in best.items()}


def paired_differences(best: dict[str, tuple[dict, list[dict]]], reference: str, key: str) -> list[dict]:
  """Each configuration's final test loss minus the reference's, seed by seed, with the interval."""
  loss = "final_loss_per_char" if key == "eval_loss_per_char" else "final_eval_loss"
  by_seed = {r["seed"]: r[loss] for r in best[reference][1]}
  out = []
  for name, (_, runs) in best.items():
    if name == reference:
      continue
    pairs = [(r[loss], by_seed.get(r["seed"], "")) for r in runs]
    diffs = [float(a) - float(b) for a, b in pairs if a != "" and b != ""]
    if not diffs:
      out.append({"configuration": name, "reference": reference, "seeds": 0})
      continue
    mean, low, high = interval(diffs)
    excludes = low != "" and (low > 0 or high < 0)
    out.append(
      {
        "configuration": name,
        "reference": reference,
        "seeds": len(diffs),
        "mean_difference": round(mean, 4),
        "interval": _format(low, high),
        "excludes_zero": excludes,
      }
    )
  return out


def conclusions(differences: list[dict], reference: str) -> str:
  """Sentences drawn from the paired differences only."""
  lower = [d["configuration"] for d in differences if d.get("excludes_zero") and d["mean_difference"] < 0]
  higher = [d["configuration"] for d in differences if d.get("excludes_zero") and d["mean_difference"] > 0]
  unclear = [d["configuration"] for d in differences if not d.get("excludes_zero")]
  seeds = max((d["seeds"] for d in differences), default=0)
  if seeds < 2:
    return f"One seed: no interval, so no difference from {reference} can be told from seed noise."
  parts = []
  if lower:
    parts.append(f"lower final test loss than {reference}: {', '.join(lower)}")
  if higher:
    parts.append(f"higher than {reference}: {', '.join(higher)}")
  if unclear:
    parts.append(f"not distinguishable from {reference} (interval includes zero): {', '.join(unclear)}")
  return (
    f"Over {seeds} paired seeds ({int(CONFIDENCE * 100)}% t-intervals of the mean difference), "
    + "; ".join(parts)
    + "."
  )
