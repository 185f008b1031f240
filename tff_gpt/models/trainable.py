"""Which weights of GPT-2 train: the `--trainable` modes.

  all            every weight (the default)
  last_blocks:K  the last K transformer blocks and the final layer norm
  lora:R         rank-R adapters on every block's attention query and value
                 projections (`adapters.py`), scaled by `lora_alpha / R`
  ffa_lora:R     the same adapters with A frozen at its seeded draw and only B
                 trained and sent (FFA-LoRA, Sun et al. 2024): the mean of the
                 clients' B times the shared A is exactly the mean of their
                 products, and half the adapter bytes travel
  hetlora:R      rank-R adapters whose clients train different ranks (HetLoRA,
                 Cho et al. 2024): a client of rank r <= R trains and uses only
                 the first r components (`client_ranks`); the server averages
                 the zero-padded updates, so a component moves by the share
                 of clients that train it (ranks: `client_ranks.py`)
  flexlora:R     the same clients of different ranks, and after each round the
                 server sets its factors to the truncated SVD of the clients'
                 mean product (FlexLoRA, Bai et al. 2024), so that a client of
                 rank r trains the mean update's r strongest directions
  bitfit         every bias and layer-norm parameter (Ben Zaken et al. 2022)

`select` returns the trained variables as objects, never by name: Keras names
differ between eager and graph mode, and matching them by name once dropped
most of BitFit's parameters silently. In every mode but "all" the rest is
frozen and stays out of TFF's state (see `frozen.py`).
"""

import dataclasses
import re

import numpy as np
import tensorflow as tf

from tff_gpt import errors, internals
from tff_gpt.models import adapters

DEFAULT_LORA_ALPHA = 16.0
HELP = "all, last_blocks:K, lora:R, ffa_lora:R, hetlora:R, flexlora:R or bitfit"
_SPEC = re.compile(r"^(all|bitfit|last_blocks:(\d+)|(ffa_|het|flex)?lora:(\d+))$")
LORA_KINDS = ("lora", "ffa_lora", "hetlora", "flexlora")
# Adapter modes whose clients train ranks of their own (`--lora_client_ranks`).
RANKED_KINDS = ("hetlora", "flexlora")


@dataclasses.dataclass(frozen=True)
class Mode:
  """A parsed `--trainable`: `kind` and, for last_blocks and lora, K or R."""

  kind: str
  value: int | None = None

  @property
  def is_subset(self) -> bool:
    """True when some weights are frozen (and kept out of TFF's state)."""
    return self.kind != "all"

  @property
  def is_lora(self) -> bool:
    """True for the adapter modes (lora, ffa_lora, hetlora, flexlora)."""
    return self.kind in LORA_KINDS


def parse(spec: str, *, num_layers: int | None = None) -> Mode:
  """Parses and checks `--trainable`; `num_layers` bounds K when given.

  Raises:
    ValueError: naming the bad value and what is accepted.
  """
  match = _SPEC.match(str(spec))
  if not match:
    raise errors.UserInputError(f"--trainable must be {HELP}, got {spec!r}.")
  if spec in ("all", "bitfit"):
    return Mode(spec)
  kind, value = spec.split(":")
  value = int(value)
  if value < 1:
    what = "the rank R" if kind in LORA_KINDS else "K"
    raise errors.UserInputError(f"--trainable={spec}: {what} must be >= 1.")
  if kind == "last_blocks" and num_layers is not None and value > num_layers:
    raise errors.UserInputError(
      f"--trainable={spec}: the model has {num_layers} blocks; use last_blocks:K with 1 <= K <= {num_layers}."
    )
  return Mode(kind, value)


def _leaf_layers(layer):
  return [sub for sub in internals.flatten_layers(layer) if internals.own_weights(sub)]


def select(backbone, mode: Mode, *, lora_alpha: float = DEFAULT_LORA_ALPHA) -> list[tf.Variable]:
  """Applies `mode` to a built backbone and returns the variables that train.

  Adds the adapters for lora, and sets Keras `trainable` flags so that, but
  for bitfit (which Keras flags cannot express per variable), Keras agrees.

  Returns:
    The trained variables in `backbone.weights` order.
  """
  if mode.kind == "last_blocks":
    first = backbone.num_layers - mode.value
    train = {f"transformer_layer_{i}" for i in range(first, backbone.num_layers)} | {"layer_norm"}
    for layer in backbone.layers:
      if layer.weights:
        layer.trainable = layer.name in train
  elif mode.is_lora:
    for layer in _leaf_layers(backbone):
      layer.trainable = False
    adapters.add_lora(backbone, rank=mode.value, alpha=lora_alpha, train_a=mode.kind != "ffa_lora")
  return trained_variables(backbone, mode)


def trained_variables(backbone, mode: Mode | str) -> list[tf.Variable]:
  """The variables that train in a backbone that `select` has set up, in `backbone.weights` order."""
  mode = parse(mode) if isinstance(mode, str) else mode
  if mode.kind in ("all", "last_blocks"):
    return list(backbone.trainable_weights)
  if mode.is_lora:
    trained = ("lora_b",) if mode.kind == "ffa_lora" else ("lora_a", "lora_b")
    chosen = {id(getattr(adapter, n)) for adapter in adapters.adapters_of(backbone) for n in trained}
  elif mode.kind == "bitfit":
    chosen = set()
    for layer in _leaf_layers(backbone):
      if isinstance(layer, tf.keras.layers.LayerNormalization):
        chosen.update(id(v) for v in layer.weights)
      elif getattr(layer, "bias", None) is not None:
        chosen.add(id(layer.bias))
  else:
    raise ValueError(f"Unknown trainable kind {mode.kind!r}.")
  return [v for v in backbone.weights if id(v) in chosen]


def named_weights(backbone) -> dict[str, tf.Variable]:
  """Every weight keyed by its layer path, e.g. "transformer_layer_0/self_attention/query/kernel".

  An adapter shares its base projection's path ("…/query/lora_a"), so a
  model with adapters has the plain model's keys plus the adapters'.
  """
  named = {}

  def visit(layer, path):
    for weight in internals.own_weights(layer, non_trainable=True):
      named[f"{path}/{weight.name.split('/')[-1].split(':')[0]}"] = weight
    for child in internals.flatten_layers(layer, include_self=False, recursive=False):
      if isinstance(layer, adapters.LoraEinsumDense):
        visit(child, path)  # The base projection: same path as its adapter.
      else:
        name = child.base.name if isinstance(child, adapters.LoraEinsumDense) else child.name
        visit(child, f"{path}/{name}" if path else name)

  visit(backbone, "")
  if len(named) != len(backbone.weights):
    raise AssertionError(f"{len(backbone.weights)} weights but {len(named)} distinct paths.")
  return named


def merged_values(backbone) -> dict[str, np.ndarray]:
  """The plain GPT-2 weights by path, with any adapters folded into their kernels."""
  named = named_weights(backbone)
  path_of = {id(v): k for k, v in named.items()}
  merged = {k: w.numpy() for k, w in named.items() if not k.endswith(("/lora_a", "/lora_b"))}
  for adapter in adapters.adapters_of(backbone):
    merged[path_of[id(adapter.base.kernel)]] = adapter.merged_kernel()
  return merged


def trained_values(backbone, trained: list[tf.Variable]) -> dict[str, np.ndarray]:
  """The trained subset alone, keyed by path (what a participant would share)."""
  ids = {id(v) for v in trained}
  return {key: w.numpy() for key, w in named_weights(backbone).items() if id(w) in ids}
