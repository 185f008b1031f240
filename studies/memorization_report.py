"""The memorization study's report: its doc table, verdict and plot, from the results file it writes."""

import math

from studies import runs
from tff_gpt.comparison import stats

WITHIN_BITS = 2.0  # A canary this close to never-planted ones is not told apart from them.


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
  counts = sorted((k for k in next(iter(first.values()))["exposure"] if k != "0"), key=int, reverse=True)
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
  return "\n".join(lines) + "\n\n" + verdict(result) + "." + participation_line(result)


def participation_line(result: dict) -> str:
  """Rounds that aggregated the most-repeated canary's client, seed by seed (when the results hold them)."""
  seen = result.get("participation")
  if not seen:
    return ""
  top_count = max((k for k in next(iter(seen.values())) if k.isdigit()), key=int)
  each = ", ".join(f"{v[top_count]:g} (last round {v['last_' + top_count]:g})" for v in seen.values())
  several = result["settings"].get("canaries_per_repeat", 1)
  whose = f"canaries' clients (mean of {several})" if several > 1 else "canary's client"
  return (
    f" Rounds that aggregated the x{top_count} {whose}, seeds {', '.join(map(str, seen))}: {each} "
    f"of {result['settings']['rounds']}."
  )


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
  baseline = next(iter(by_seed[0]))  # The first row, without DP.
  never = stats.interval([rows[baseline]["exposure"]["0"] for rows in by_seed])[0]
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
  by_eps.set_ylim(-0.5, by_seed[0][baseline]["space_bits"] + 0.5)  # Exposure lies in [0, log2 |R|].
  by_eps.set_ylabel(f"exposure of the x{top(by_seed[0][baseline])} canary (bits)")
  by_ppl.set(xlabel="held-out perplexity per character")
  by_eps.legend(fontsize=7)
  fig.suptitle(
    f"What GPT-2 remembers of a canary, {runs.seeds_phrase(len(by_seed))} (mean, 95% interval; x: seeds)"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  print(f"plot: {path}")


TARGETS, COHORTS = (1.0, 3.0, 8.0), (100, 1000)  # Epsilons at delta 1e-5; clients a round.


def population_for(epsilon: float, clients: int, noise_multiplier: float, rounds: int) -> int:
  """The smallest population (within 1%) at which `rounds` rounds sampling `clients` of it, at
  `noise_multiplier`, spend at most `epsilon` at delta 1e-5 (`dp_accounting`, as runs report it)."""
  from tff_gpt.algorithms import privacy

  spent = lambda n: privacy.epsilon(  # noqa: E731
    noise_multiplier=noise_multiplier, sampling_rate=clients / n, rounds=rounds, delta=1e-5
  )
  low, high = clients, clients
  while spent(high) > epsilon:
    low, high = high, high * 4
  while high - low > max(1, low // 100):
    middle = max(low + 1, int((low * high) ** 0.5))
    low, high = (low, middle) if spent(middle) <= epsilon else (middle, high)
  return high


def population_table(result: dict) -> str:
  """For each DP row: the noise its round's mean carried (multiplier x clip / clients a round), the
  perplexity it trained to, and the population that would give that same noise on the mean an epsilon of
  `TARGETS` at `COHORTS` clients a round (the multiplier grows with the clients; computed, not trained;
  "any": every population of at least the clients a round, all of them sampled every round)."""
  s, by_seed = result["settings"], list(result["rows_by_seed"].values())
  head = " | ".join(f"{m} a round: epsilon <= {e:g}" for m in COHORTS for e in TARGETS)
  lines = [
    f"| DP row | noise on the mean | perplexity | {head} |",
    "|---|---|---|" + "---|" * len(COHORTS) * len(TARGETS),
  ]
  for label, row in by_seed[0].items():
    if row["dp_epsilon"] is None:
      continue
    z = float(label.rsplit(" ", 1)[1])
    per_mean = z * s["clip"] / s["clients"]
    perplexity = runs.mean_ci([math.exp(rows[label]["eval_loss"]) for rows in by_seed], digits=2)
    needed = [
      (m, population_for(e, m, per_mean * m / s["clip"], s["rounds"])) for m in COHORTS for e in TARGETS
    ]
    cells = [f"{n:,}" if n > m else "any" for m, n in needed]  # "any": even all clients every round.
    lines.append(f"| {label} | {per_mean:g} | {perplexity} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
