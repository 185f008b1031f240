"""How a corpus is dealt: clients, examples and characters per client for each split, as a table."""

from collections.abc import Mapping, Sequence

import numpy as np

from tff_gpt.data import partitions


def _distribution(values: Sequence[int]) -> dict[str, float]:
  values = np.asarray(values, dtype=np.float64)
  return {
    "min": int(values.min()),
    "median": float(np.median(values)),
    "p90": float(np.percentile(values, 90)),
    "max": int(values.max()),
  }


def partition_summary(train: Mapping[str, Sequence[str]], test: Mapping[str, Sequence[str]]) -> dict:
  """Counts clients, examples and characters per client for each split."""
  summary = {}
  for name, split in (("train", train), ("test", test)):
    examples = [len(texts) for texts in split.values()]
    chars = [sum(len(t) for t in texts) for texts in split.values()]
    summary[name] = {
      "clients": len(split),
      "examples": int(sum(examples)),
      "characters": int(sum(chars)),
      "examples_per_client": _distribution(examples or [0]),
      "characters_per_client": _distribution(chars or [0]),
    }
  return summary


def format_summary(summary: Mapping, title: str) -> str:
  """Renders a `partition_summary` as a small plain-text table."""
  lines = [
    f"{title}",
    f"{'split':<6} {'clients':>8} {'examples':>9} {'chars':>10}   per client: min / median / p90 / max",
  ]
  for name in ("train", "test"):
    s = summary[name]
    e, c = s["examples_per_client"], s["characters_per_client"]
    lines.append(
      f"{name:<6} {s['clients']:>8} {s['examples']:>9} {s['characters']:>10}   "
      f"examples {e['min']} / {e['median']:g} / {e['p90']:g} / {e['max']}; "
      f"chars {c['min']} / {c['median']:g} / {c['p90']:g} / {c['max']}"
    )
  if summary.get("dropped"):
    dropped = sorted(summary["dropped"].items())
    lines.append("dropped: " + ", ".join(f"{n} ({reason})" for reason, n in dropped))
  if "heterogeneity" in summary:
    lines.append(f"partition: {summary['partition']}")
    lines.append(partitions.format_heterogeneity(summary["heterogeneity"], summary.get("partition_label")))
  return "\n".join(lines)
