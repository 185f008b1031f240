"""Who trains and reports: the population, over-selection, clients that drop out, and the round's
simulated duration.

A run trains on the corpus's training clients, or on `--population` of them
(`population`: the canary clients and a seeded sample of the rest).

A round samples `ceil(over_selection x clients_per_round)` clients (TFF's
uniform sampling, `run.Run.sample`). Each fails to report with chance
`client_dropout`, a draw seeded by the seed and the round alone, so a resumed
run drops the same clients. Of those that report, the first
`clients_per_round` are aggregated: with simulated speeds the fastest, else
in sampled order; the rest are late and discarded (Bonawitz et al. 2019's
over-selection). With `--client_speeds`, each client has a seeded speed in
tokens per second (a function of the seed and the client id alone, so no list
of the population is held), a reporter takes its tokens this round over its
speed, and the round lasts its slowest aggregated reporter's time plus
`round_overhead_seconds`.
"""

import dataclasses
import json
import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from tff_gpt import errors
from tff_gpt.training import cohort_settings

STREAM = 0xD809  # Seeds dropout and speeds apart from the run's other seeded draws.


@dataclasses.dataclass(frozen=True)
class Cohort:
  """One round's clients: those aggregated (`reporters`, in sampled order), dropped and late."""

  reporters: tuple[str, ...]
  dropped: tuple[str, ...] = ()
  late: tuple[str, ...] = ()
  simulated_seconds: float | None = None  # None without simulated speeds.

  @property
  def sampled(self) -> int:
    return len(self.reporters) + len(self.dropped) + len(self.late)

  def row(self) -> dict:
    """The round's row of `sampled_clients.csv` (each list of ids a JSON list: `ids_field`)."""
    row = {"client_ids": ids_field(self.reporters)}
    if self.dropped or self.late:
      row.update(dropped_ids=ids_field(self.dropped), late_ids=ids_field(self.late))
    if self.simulated_seconds is not None:
      row["simulated_seconds"] = self.simulated_seconds
    return row


def ids_field(ids: Sequence[str]) -> str:
  """Client ids as one CSV field: a JSON list (Shakespeare's roles hold spaces: "hamlet:First Player")."""
  return json.dumps(list(ids), ensure_ascii=False)


def parse_ids(field: str) -> list[str]:
  """`ids_field`'s ids; a field written before it (space-separated, from runs before 2026-12-07) split."""
  return json.loads(field) if field.startswith("[") else field.split()


def population(texts: dict, size: int | None, *, seed: int, keep: Sequence[str] = ()) -> dict:
  """The training clients a run trains on (`--population`): all of `texts` when `size` is None, else the
  clients of `keep` (the canary clients) and a sample seeded by `seed` of the others, `size` in all, in
  the corpus's order. Raises `UserInputError` (one line) when `size` exceeds the clients or is below
  `keep`'s."""
  if size is None:
    return texts
  if not len(keep) <= size <= len(texts):
    raise errors.UserInputError(
      f"--population={size} but the corpus has {len(texts):,} training clients and the run plants canaries "
      f"in {len(keep)}: choose a population between the two."
    )
  kept = set(keep)
  others = [cid for cid in texts if cid not in kept]
  drawn = np.random.default_rng([seed, STREAM, 1]).permutation(len(others))[: size - len(keep)]
  chosen = kept | {others[i] for i in drawn}
  return {cid: examples for cid, examples in texts.items() if cid in chosen}


def sampled_per_round(clients_per_round: int, over_selection: float, population: int) -> int:
  """Clients a round samples: `ceil(over_selection x clients_per_round)`, at most the population."""
  return min(math.ceil(over_selection * clients_per_round - 1e-9), population)


def tokens_per_round(num_sequences: int, config) -> int:
  """Tokens a client of `num_sequences` training sequences trains on in a round: its sequences over
  `--client_epochs_per_round` epochs, at most `--max_elements_per_client` of them, each a full sequence."""
  seen = num_sequences * config.client_epochs_per_round
  return min(seen, config.max_elements_per_client or seen) * config.sequence_length


def speed_of(config) -> Callable[[str], float] | None:
  """`client id -> tokens per second` of `--client_speeds` (None when unset): median times
  exp(sigma x a standard normal seeded by the seed and the id)."""
  parsed = cohort_settings.parse_speeds(config.client_speeds)
  if parsed is None:
    return None
  _, sigma = parsed
  median, seed = config.client_speed_median, config.seed

  def speed(client_id: str) -> float:
    z = np.random.default_rng([seed, STREAM, zlib.crc32(client_id.encode())]).standard_normal()
    return float(median * math.exp(sigma * z))

  return speed


def choose(
  sampled: Sequence[str],
  *,
  round_num: int,
  seed: int,
  target: int,
  dropout: float = 0.0,
  seconds_of: Callable[[str], float] | None = None,
  overhead: float = 0.0,
) -> Cohort:
  """The `Cohort` of a round that sampled `sampled`: who dropped (seeded by `seed` and `round_num`), the
  first `target` to report (by `seconds_of`, a reporter's simulated seconds, else in sampled order), the
  late, and the simulated duration."""
  dropped = np.random.default_rng([seed, STREAM, round_num]).random(len(sampled)) < dropout
  reported = [c for c, d in zip(sampled, dropped, strict=True) if not d]
  order = sorted(reported, key=seconds_of) if seconds_of else reported  # Stable: ties keep sampled order.
  first = set(order[:target])
  simulated = None
  if seconds_of is not None:
    simulated = overhead + max((seconds_of(c) for c in first), default=0.0)
  return Cohort(
    reporters=tuple(c for c in reported if c in first),
    dropped=tuple(c for c, d in zip(sampled, dropped, strict=True) if d),
    late=tuple(c for c in reported if c not in first),
    simulated_seconds=simulated,
  )
