"""Which adapter rank each client trains with `--trainable=hetlora:R` or `flexlora:R` (`--lora_client_ranks`).

  2,4,8               each client draws one of the ranks, equally likely
  2:0.5,4:0.3,8:0.2   drawn with these weights
  @ranks.json         keyed by client: a JSON object `{client id: rank}` that the
                      researcher writes from what they know of each client (a
                      device tier, a field of their data); every training client
                      needs an entry

A drawn rank depends on the run's seed and the client's id only, so it is the
same every round, after a resume and in every configuration of a comparison.
"""

import dataclasses
import json
import os
import zlib

import numpy as np

from tff_gpt import errors


@dataclasses.dataclass(frozen=True)
class ClientRanks:
  """Client ranks: drawn from `ranks` with `probabilities`, or looked up in `table` when it is given."""

  ranks: tuple[int, ...]
  probabilities: tuple[float, ...]
  table: dict | None = None
  source: str = ""

  def of(self, client_id: str, *, seed: int) -> int:
    """The rank `client_id` trains."""
    if self.table is not None:
      return self.table[client_id]
    rng = np.random.default_rng([seed, 2, zlib.crc32(client_id.encode("utf-8"))])
    return int(rng.choice(self.ranks, p=self.probabilities))

  def check_clients(self, client_ids: list[str]) -> None:
    """With a table, raises `UserInputError` unless every training client has a rank."""
    if self.table is None:
      return
    missing = [c for c in client_ids if c not in self.table]
    if missing:
      raise errors.UserInputError(
        f"--lora_client_ranks={self.source} has no rank for {len(missing)} of the {len(client_ids)} training "
        f"clients (first: {missing[0]!r}); give every client id a rank."
      )


def parse(spec: str | None, rank: int) -> ClientRanks:
  """The `--lora_client_ranks` of a run whose server rank is `rank` (empty: every client at `rank`).

  Raises:
    UserInputError: a rank outside 1..`rank`, a bad weight, or a table file that is missing or not JSON.
  """
  if not spec:
    return ClientRanks((rank,), (1.0,))
  spec = str(spec)
  if spec.startswith("@"):
    return _table(spec, rank)
  ranks, weights = [], []
  for item in spec.split(","):
    value, _, weight = item.strip().partition(":")
    try:
      ranks.append(int(value))
      weights.append(float(weight) if weight else 1.0)
    except ValueError:
      raise errors.UserInputError(
        f"--lora_client_ranks={spec}: {item!r} is not RANK or RANK:WEIGHT; write e.g. 2,4,8 or 2:0.5,8:0.5."
      ) from None
  _check(spec, ranks, rank)
  if any(w <= 0 for w in weights):
    raise errors.UserInputError(f"--lora_client_ranks={spec}: each weight must be > 0.")
  total = sum(weights)
  return ClientRanks(tuple(ranks), tuple(w / total for w in weights), source=spec)


def _table(spec: str, rank: int) -> ClientRanks:
  path = spec[1:]
  if not os.path.exists(path):
    raise errors.UserInputError(f"--lora_client_ranks={spec}: {path} does not exist.")
  try:
    with open(path, encoding="utf-8") as f:
      table = json.load(f)
  except json.JSONDecodeError as e:
    raise errors.UserInputError(f"--lora_client_ranks={spec}: {path} is not JSON ({e}).") from None
  if not isinstance(table, dict) or not all(isinstance(r, int) for r in table.values()):
    raise errors.UserInputError(
      f"--lora_client_ranks={spec}: {path} must hold one object, {{client id: integer rank}}."
    )
  _check(spec, list(table.values()), rank)
  return ClientRanks(tuple(sorted(set(table.values()))), (), table=dict(table), source=spec)


def _check(spec: str, ranks: list[int], rank: int) -> None:
  if any(not 1 <= r <= rank for r in ranks):
    raise errors.UserInputError(
      f"--lora_client_ranks={spec}: each rank must be in 1..{rank} (the server's R)."
    )
