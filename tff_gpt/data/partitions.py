"""Controlled splits of a corpus into clients, and how non-IID they are.

A corpus arrives with its natural clients (Shakespeare roles, one file or one
id per client). `partition` re-deals its examples:

- "natural": the corpus's own clients (the default);
- "iid": every example shuffled, then dealt to `clients` clients;
- "dirichlet": each client draws its mix over a label from
  Dirichlet(`alpha` * global label frequencies), then draws its examples
  label by label without replacement (Hsu, Qi and Brown 2019, "Measuring the
  effects of non-identical data distribution for federated visual
  classification"). Small alpha: each client holds few labels; large alpha:
  every client's mix is close to the global one. When a label runs out, a
  client's draws go to the labels left, in its own proportions.

`size_skew` makes client sizes unequal: client i (in a random order) gets a
share proportional to (i + 1) ** -size_skew of the examples (a power law;
0 gives equal sizes), with at least 2 each so that every client has a
held-out example.

`heterogeneity` measures a split: client sizes (min/median/p90/max and their
Gini coefficient) and, when examples have a label, how far each client's
label mix is from the global one (total-variation distance, mean over
clients; 0 is IID, 1 is disjoint) and how many labels a client effectively
holds (exp of the entropy of its mix).
"""

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from tff_gpt import errors

KINDS = ("natural", "iid", "dirichlet")
CLIENT_LABEL = "client"  # Every corpus has it: the natural client an example came from.
MIN_EXAMPLES_PER_CLIENT = 2  # One to train, one to hold out.


class PartitionError(errors.UserInputError):
  """A partition setting that does not fit the corpus; names the flag and the fix."""


@dataclasses.dataclass(frozen=True)
class Partition:
  """How a corpus is dealt into clients.

  Attributes:
    kind: One of `KINDS`.
    clients: Number of clients ("iid", "dirichlet").
    alpha: Dirichlet concentration, > 0 ("dirichlet").
    label: The label a "dirichlet" partition skews, and over which every
      partition's label heterogeneity is measured: "client" (the natural
      client), a label the corpus provides (Shakespeare: "play"; JSON Lines
      and TFDS: a field name), or None for no label figures.
    size_skew: Power-law exponent of client sizes, >= 0 ("iid", "dirichlet").
    seed: Seeds the shuffles and draws.
  """

  kind: str = "natural"
  clients: int | None = None
  alpha: float | None = None
  label: str | None = None
  size_skew: float = 0.0
  seed: int = 0

  def validate(self) -> None:
    """Checks the settings alone (the corpus is checked by `partition`)."""
    if self.kind not in KINDS:
      raise PartitionError(f"--partition must be one of {list(KINDS)}, got {self.kind!r}.")
    if self.kind == "natural":
      extra = [
        flag
        for flag, value in (
          ("--partition_clients", self.clients),
          ("--partition_alpha", self.alpha),
          ("--partition_size_skew", self.size_skew or None),
        )
        if value is not None
      ]
      if extra:
        raise PartitionError(
          f"{', '.join(extra)} only apply to --partition=iid or dirichlet; the natural partition keeps "
          "the corpus's own clients. Drop them or choose a partition."
        )
      return
    if self.clients is None or self.clients < 2:
      raise PartitionError(
        f"--partition={self.kind} needs --partition_clients >= 2 (got {self.clients}): how many clients "
        "to deal the examples to."
      )
    if self.size_skew < 0:
      raise PartitionError(f"--partition_size_skew must be >= 0 (0: equal sizes), got {self.size_skew}.")
    if self.kind == "dirichlet":
      if self.alpha is None or not self.alpha > 0:
        raise PartitionError(
          f"--partition_alpha must be > 0 with --partition=dirichlet, got {self.alpha}: small values "
          "(0.1) give clients few labels, large ones (100) nearly IID mixes."
        )
      if not self.label:
        raise PartitionError(
          "--partition=dirichlet needs --partition_label: the label whose mix varies across clients "
          "(Shakespeare: play; JSON Lines or TFDS: a field name; any corpus: client)."
        )
    elif self.alpha is not None:
      raise PartitionError("--partition_alpha only applies to --partition=dirichlet. Drop it.")

  def cache_key(self) -> list[str]:
    """Strings that identify the partition's output (with the corpus's own key)."""
    if self.kind == "natural":
      return ["natural", str(self.label)]
    return [
      self.kind,
      str(self.clients),
      repr(self.alpha),
      str(self.label),
      repr(self.size_skew),
      str(self.seed),
    ]

  def describe(self) -> str:
    if self.kind == "natural":
      return "natural clients"
    text = f"{self.kind} over {self.clients} clients"
    if self.kind == "dirichlet":
      text += f", alpha {self.alpha:g} over {self.label}"
    if self.size_skew:
      text += f", size skew {self.size_skew:g}"
    return text + f", seed {self.seed}"


def client_sizes(total: int, clients: int, size_skew: float, rng: np.random.Generator) -> np.ndarray:
  """Sizes summing to `total`: equal, or power-law shares (client order random), each >= 2."""
  if total < MIN_EXAMPLES_PER_CLIENT * clients:
    raise PartitionError(
      f"--partition_clients={clients} needs at least {MIN_EXAMPLES_PER_CLIENT * clients} examples "
      f"({MIN_EXAMPLES_PER_CLIENT} a client: one to train, one to hold out); the corpus has {total}. "
      f"Use --partition_clients <= {total // MIN_EXAMPLES_PER_CLIENT}."
    )
  weights = (np.arange(clients) + 1.0) ** -size_skew
  weights = rng.permutation(weights)
  spare = total - MIN_EXAMPLES_PER_CLIENT * clients
  shares = spare * weights / weights.sum()
  sizes = np.floor(shares).astype(np.int64)
  # Largest remainders get the examples the floors left over.
  sizes[np.argsort(-(shares - sizes), kind="stable")[: spare - sizes.sum()]] += 1
  return sizes + MIN_EXAMPLES_PER_CLIENT


def _draw_mix(alpha: float, prior: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  mix = rng.dirichlet(alpha * prior)
  if not np.all(np.isfinite(mix)) or mix.sum() <= 0:  # Every gamma draw underflowed (tiny alpha).
    mix = np.eye(len(prior))[rng.choice(len(prior), p=prior)]
  return mix


def dirichlet_assignment(
  labels: Sequence[str], sizes: Sequence[int], alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
  """Example indices per client: label mixes drawn from Dirichlet(alpha * prior)."""
  classes, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
  pools = [list(rng.permutation(np.flatnonzero(codes == c))) for c in range(len(classes))]
  prior = np.bincount(codes, minlength=len(classes)) / len(codes)
  out = [None] * len(sizes)
  for client in rng.permutation(len(sizes)):
    mix = _draw_mix(alpha, prior, rng)
    taken, need = [], int(sizes[client])
    while need:
      left = np.array([len(p) for p in pools], dtype=np.float64)
      weights = mix * (left > 0)
      if weights.sum() <= 0:  # Its labels ran out: the rest in proportion to what is left.
        weights = left
      counts = np.minimum(rng.multinomial(need, weights / weights.sum()), left.astype(np.int64))
      for c in np.flatnonzero(counts):
        taken.extend(pools[c][: counts[c]])
        del pools[c][: counts[c]]
      need -= int(counts.sum())
    out[client] = np.asarray(taken, dtype=np.int64)
  return out


def partition(
  clients: Mapping[str, Sequence[str]],
  labels: Mapping[str, Mapping[str, Sequence[str]]],
  spec: Partition,
) -> tuple[dict[str, list[str]], dict[str, list[str]] | None]:
  """Deals the examples of `clients` as `spec` says.

  Args:
    clients: `{natural client id: [example, ...]}`.
    labels: `{label name: {client id: [label of each example]}}`, aligned
      with `clients`; "client" is always available.
    spec: The partition.

  Returns:
    `(clients, labels)`: the new `{client id: [example, ...]}` (ids
    "client_00007" for dealt partitions) and the label of each of their
    examples under `spec.label` (None without a label).

  Raises:
    PartitionError: The label is unknown, or there are too few examples.
  """
  spec.validate()
  available = {CLIENT_LABEL: {cid: [cid] * len(ex) for cid, ex in clients.items()}, **labels}
  if spec.label and spec.label not in available:
    raise PartitionError(
      f"--partition_label={spec.label!r} is not a label of this corpus; it has {sorted(available)}. "
      "For JSON Lines or TFDS, name a field every example has."
    )
  label_of = available.get(spec.label) if spec.label else None
  if spec.kind == "natural":
    return {cid: list(ex) for cid, ex in clients.items()}, (
      {cid: list(label_of[cid]) for cid in clients} if label_of else None
    )
  order = sorted(clients)
  texts = [t for cid in order for t in clients[cid]]
  example_labels = [str(v) for cid in order for v in label_of[cid]] if label_of else None
  rng = np.random.default_rng([spec.seed, 0x9A27])
  sizes = client_sizes(len(texts), spec.clients, spec.size_skew, rng)
  if spec.kind == "iid":
    shuffled = rng.permutation(len(texts))
    assignment = np.split(shuffled, np.cumsum(sizes)[:-1])
  else:
    assignment = dirichlet_assignment(example_labels, sizes, spec.alpha, rng)
  width = len(str(spec.clients - 1))
  ids = [f"client_{i:0{max(5, width)}d}" for i in range(spec.clients)]
  new_clients = {cid: [texts[i] for i in idx] for cid, idx in zip(ids, assignment, strict=True)}
  new_labels = (
    {cid: [example_labels[i] for i in idx] for cid, idx in zip(ids, assignment, strict=True)}
    if example_labels
    else None
  )
  return new_clients, new_labels


def gini(values: Sequence[float]) -> float:
  """Gini coefficient of non-negative values: 0 when all equal, near 1 when one holds all."""
  x = np.sort(np.asarray(values, dtype=np.float64))
  n = len(x)
  if n == 0 or x.sum() == 0:
    return 0.0
  return float((2 * np.sum(np.arange(1, n + 1) * x)) / (n * x.sum()) - (n + 1) / n)


def heterogeneity(clients: Mapping[str, Sequence[str]], labels: Mapping[str, Sequence[str]] | None) -> dict:
  """How non-IID a split is: size spread, and label-mix distance when labelled."""
  sizes = np.array([len(ex) for ex in clients.values()], dtype=np.float64)
  out = {
    "clients": len(sizes),
    "examples_per_client": {
      "min": int(sizes.min()),
      "median": float(np.median(sizes)),
      "p90": float(np.percentile(sizes, 90)),
      "max": int(sizes.max()),
    },
    "size_gini": round(gini(sizes), 4),
  }
  if labels:
    classes = sorted({v for values in labels.values() for v in values})
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(clients), len(classes)))
    for row, cid in enumerate(clients):
      for v in labels[cid]:
        counts[row, index[v]] += 1
    mixes = counts / counts.sum(axis=1, keepdims=True)
    global_mix = counts.sum(axis=0) / counts.sum()
    tv = 0.5 * np.abs(mixes - global_mix).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
      entropy = -np.nansum(np.where(mixes > 0, mixes * np.log(mixes), 0.0), axis=1)
    out.update(
      labels=len(classes),
      mean_label_tv=round(float(tv.mean()), 4),
      median_effective_labels=round(float(np.median(np.exp(entropy))), 3),
    )
  return out


def format_heterogeneity(h: Mapping, label: str | None) -> str:
  e = h["examples_per_client"]
  text = (
    f"heterogeneity: {h['clients']} clients, examples per client {e['min']} / {e['median']:g} / "
    f"{e['p90']:g} / {e['max']} (Gini {h['size_gini']:.3f})"
  )
  if "mean_label_tv" in h:
    text += (
      f"; {label} mix vs global: mean TV distance {h['mean_label_tv']:.3f}, "
      f"median {h['median_effective_labels']:.2g} effective {label}s of {h['labels']}"
    )
  return text
