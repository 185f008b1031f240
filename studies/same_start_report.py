"""How `studies.same_start` reports its rows: the tables (last round, equal bytes, against the central
ceiling) and the figure (loss per character against rounds and against MB communicated)."""


def gain_table(rows: dict, ceilings: dict) -> str:
  """Federated fine-tuning against the central training of its own batches, in loss per character."""
  lines = [
    "| fine-tuned row | unchanged | federated, last round | central, same batches: last round by optimizer "
    "| federated share of the best central gain |",
    "|---|---|---|---|---|",
  ]
  for label, by_setting in ceilings.items():
    unchanged = rows[f"{label.split(',')[0]}, pretrained, unchanged"]["eval_loss_per_char"]
    federated = rows[label]["eval_loss_per_char"]
    last = {setting: ev[-1]["eval_loss_per_char"] for setting, ev in by_setting.items()}
    best = min(last.values())
    share = f"{(unchanged - federated) / (unchanged - best):.0%}" if best < unchanged else "-"
    by = ", ".join(f"{setting}: {loss:.4f}" for setting, loss in last.items())
    lines.append(f"| {label} | {unchanged:.4f} | {federated:.4f} | {by} | {share} |")
  return "\n".join(lines)


def at_bytes(row: dict, budget: float) -> float | None:
  """The row's loss per character at the last evaluation within `budget` bytes (None: none within)."""
  within = [loss for _, loss, sent in row.get("loss_per_char_curve", []) if sent <= budget]
  return within[-1] if within else None


BUDGET_ROW = "GPT-2, pretrained, all weights (client SGD 0.1)"  # Its bytes in all: the equal-bytes budget.


def table(rows: dict) -> str:
  budget = rows[BUDGET_ROW]["bytes_communicated"]
  lines = [
    f"| row | loss per char, last round | loss per char within {budget / 2**20:.1f} MB | MB communicated |",
    "|---|---|---|---|",
  ]
  for label, r in rows.items():
    at = at_bytes(r, budget) if r["bytes_communicated"] else r["eval_loss_per_char"]
    at_text = "-" if at is None else f"{at:.4f}"
    lines.append(
      f"| {label} | {r['eval_loss_per_char']:.4f} | {at_text} | {r['bytes_communicated'] / 2**20:.1f} |"
    )
  return "\n".join(lines)


def plot(rows: dict, path: str) -> None:
  """Loss per character against rounds and against MB communicated; unchanged presets as lines."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
  shades = {}  # GPT-2's rows in blues, the LSTM's in oranges, one shade each.
  for label in rows:
    family = "Blues" if label.startswith("GPT-2") else "Oranges"
    shades.setdefault(family, []).append(label)
  colors = {
    label: plt.get_cmap(family)(0.4 + 0.6 * i / max(len(labels) - 1, 1))
    for family, labels in shades.items()
    for i, label in enumerate(labels)
  }
  for label, r in rows.items():
    color = colors[label]
    style = ":" if "scratch" in label else "-"
    if not r["bytes_communicated"]:
      for ax in axes:
        ax.axhline(r["eval_loss_per_char"], color=color, linestyle="--", linewidth=1, label=label)
      continue
    rounds, losses, sent = zip(*r["loss_per_char_curve"], strict=True)
    axes[0].plot(rounds, losses, style, marker="o", color=color, alpha=0.85, label=label)
    axes[1].plot([b / 2**20 for b in sent], losses, style, marker="o", color=color, alpha=0.85)
  axes[0].set(xlabel="round", ylabel="held-out loss per character (nats)", title="Against rounds")
  axes[1].set(xlabel="MB communicated", xscale="log", title="Against bytes")
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
