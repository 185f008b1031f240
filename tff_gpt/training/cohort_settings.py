"""Who trains and reports: the population, clients that drop out, over-selection and simulated client
speeds (`cohorts`).

A settings group of `config.ExperimentConfig` (`tff_gpt.settings`).
"""

import dataclasses

from tff_gpt.settings import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, Check, check_declared, setting

SPEED_DISTRIBUTIONS = ("lognormal",)


def parse_speeds(spec: str | None) -> tuple[str, float] | None:
  """`("lognormal", sigma)` of `--client_speeds=lognormal:S` (None when unset); else raises ValueError."""
  if not spec:
    return None
  kind, _, sigma = spec.partition(":")
  if kind not in SPEED_DISTRIBUTIONS or not sigma or float(sigma) <= 0:
    raise ValueError(spec)
  return kind, float(sigma)


def _readable(spec: str) -> bool:
  try:
    parse_speeds(spec)
  except ValueError:
    return False
  return True


@dataclasses.dataclass
class CohortSettings:
  """Clients that fail to report, over-selection and simulated time (production conditions)."""

  population: int | None = setting(
    None,
    "Train on this many of the corpus's training clients: the canary clients and a seeded sample of the "
    "others (unset: all). The rest's text never trains; the membership audit counts them as non-members.",
    check=AT_LEAST_1,
  )
  client_dropout: float = setting(
    0.0,
    "Chance that a sampled client fails to report its update (seeded by --seed and the round: the same "
    "clients drop on resume); dropped clients are listed in sampled_clients.csv.",
    check=FRACTION,
  )
  over_selection: float = setting(
    1.0,
    "Sample ceil(F x --clients_per_round) clients and aggregate the first --clients_per_round to report "
    "(the fastest with --client_speeds, else in sampled order); the others are late and discarded.",
    check=Check(lambda v: v >= 1, "must be >= 1 (1: no over-selection)"),
  )
  client_speeds: str | None = setting(
    None,
    "Simulated time: 'lognormal:S' gives each client a seeded speed (tokens per second, median "
    "--client_speed_median, log-standard deviation S); a round lasts its slowest aggregated reporter's "
    "tokens over its speed plus --round_overhead_seconds (simulated_seconds, simulated_time per round).",
    check=Check(_readable, "must be lognormal:S with S > 0, e.g. lognormal:1.0"),
  )
  client_speed_median: float = setting(
    1000.0, "Median simulated client speed, in training tokens per second.", check=POSITIVE
  )
  round_overhead_seconds: float = setting(
    0.0,
    "Simulated seconds every round costs besides its slowest reporter (selection, download, upload).",
    check=AT_LEAST_0,
  )

  def check_cohort(self) -> None:
    check_declared(self, CohortSettings)
