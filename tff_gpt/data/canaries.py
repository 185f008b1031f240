"""Canaries (Carlini et al. 2019, "The Secret Sharer"): random secrets planted in chosen clients' text.

A canary is its owner's name, `prefix` and then `digits` random digits,
space-separated ("kalo: my number is 3 9 1 4 0 2"): its secrets come from a
space R of 10^digits. Every canary has its own owner (made-up names, never in
the corpus), so canaries do not compete for the digits after one prefix and
each is ranked among R's secrets after its own owner. A plan
draws N secrets to insert, each into one of K chosen clients (in turn), and
as many never-inserted secrets of the same format (at least `MIN_BASELINE`), the baseline an audit
compares with (`tff_gpt.memorization`). Canary i is inserted
`repeats[i % len(repeats)]` times: appended, after a space, to that many
distinct training examples of its client (of a pair, to the response), so a
client needs at least that many examples. Draws are seeded; the plan is
written into the run's directory (`canaries.json`), and only the training
split is changed: held-out text never holds a canary.
"""

import dataclasses
import json

import numpy as np

from tff_gpt import errors
from tff_gpt.data import pairs

STREAM = 0xCA9A  # Seeds the canaries' draws apart from the run's other seeded draws.
MIN_BASELINE = (
  10  # Never-inserted canaries drawn at least: a random secret's exposure varies (mean 1.44 bits).
)


@dataclasses.dataclass(frozen=True)
class Canary:
  secret: str  # The digits, space-separated.
  repeats: int  # 0: never inserted (the baseline).
  client: str | None  # The client it was inserted into (None when never inserted).
  owner: str = ""  # The name before the prefix ("": none, as plans written before owners were).


@dataclasses.dataclass(frozen=True)
class Plan:
  prefix: str
  digits: int
  canaries: tuple[Canary, ...]

  def text(self, canary: Canary, secret: str | None = None) -> str:
    """The canary's text, or with `secret` in place of its own (a candidate of R after its owner)."""
    said = f"{self.prefix} {canary.secret if secret is None else secret}"
    return f"{canary.owner}: {said}" if canary.owner else said

  @property
  def inserted(self) -> list[Canary]:
    return [c for c in self.canaries if c.repeats]

  def to_json(self) -> dict:
    return {
      "prefix": self.prefix,
      "digits": self.digits,
      "canaries": [dataclasses.asdict(c) for c in self.canaries],
    }

  @classmethod
  def from_json(cls, values: dict) -> "Plan":
    return cls(values["prefix"], values["digits"], tuple(Canary(**c) for c in values["canaries"]))

  def write(self, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
      json.dump(self.to_json(), f, indent=1)


def secret_of(number: int, digits: int) -> str:
  """`number` as `digits` space-separated digits (leading zeros kept)."""
  return " ".join(f"{number:0{digits}d}")


def owner(index: int) -> str:
  """A made-up name per index, distinct for every index and differing from the next from its first letter
  ("kaka", "loka", "mika", ..., "kaloka")."""
  return "".join(_SYLLABLES[int(d)] for d in reversed(f"{index:02d}"))


_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "bu")


def draw(count: int, repeats, clients, *, digits: int, prefix: str, seed: int) -> Plan:
  """`count` canaries to insert (repeat counts and clients in turn), `max(count, MIN_BASELINE)` never
  inserted, all distinct."""
  space, total = 10**digits, count + max(count, MIN_BASELINE)
  if total > space:
    raise errors.UserInputError(
      f"{total} distinct canaries (inserted and never inserted) need more than {digits} digits: raise "
      "--canary_digits or lower --canaries."
    )
  numbers = np.random.default_rng([seed, STREAM]).choice(space, size=total, replace=False)
  inserted = [
    Canary(secret_of(int(n), digits), int(repeats[i % len(repeats)]), clients[i % len(clients)], owner(i))
    for i, n in enumerate(numbers[:count])
  ]
  baseline = [
    Canary(secret_of(int(n), digits), 0, None, owner(count + i)) for i, n in enumerate(numbers[count:])
  ]
  return Plan(prefix, digits, tuple(inserted + baseline))


def insert(texts: dict[str, list[str]], plan: Plan, *, seed: int) -> dict[str, list[str]]:
  """`texts` (a training split) with each canary appended to `repeats` distinct examples of its client.

  Raises:
    errors.UserInputError: A client with fewer examples than a canary's repeat count.
  """
  out = {client: list(examples) for client, examples in texts.items()}
  rng = np.random.default_rng([seed, STREAM, 1])
  for canary in plan.inserted:
    examples = out[canary.client]
    if canary.repeats > len(examples):
      raise errors.UserInputError(
        f"A canary repeated {canary.repeats} times needs client {canary.client!r} to have that many training "
        f"examples; it has {len(examples)}: lower --canary_repeats or choose clients with more text."
      )
    for i in rng.choice(len(examples), size=canary.repeats, replace=False):
      examples[i] = _appended(examples[i], plan.text(canary))
  return out


def _appended(example: str, canary: str) -> str:
  """The example with the canary after it (a pair's: after its response)."""
  prompt, mark, response = example.partition(pairs.PAIR_MARK)
  return f"{prompt}{mark}{response} {canary}" if mark else f"{example} {canary}"


def check_encodable(tokenizer, plan: Plan) -> None:
  """Raises (one line) unless the tokenizer gives every canary's text back as it is."""
  for canary in plan.canaries[:5]:
    text = plan.text(canary)
    back = tokenizer.decode(tokenizer.encode([text])[0])
    if back != text:
      raise errors.UserInputError(
        f"The tokenizer cannot encode the canary {text!r} (it reads back {back!r}): use a tokenizer that "
        "spells any text (char, bpe), or a --canary_prefix of its vocabulary if only the prefix is refused."
      )
