"""Low-rank adapters (LoRA, Hu et al. 2021) for keras-nlp's GPT-2 on Keras 2.

keras-nlp 0.12.1's `Backbone.enable_lora` relies on Keras 3's
`EinsumDense.enable_lora`; on tf.keras 2.14 it freezes every layer and adds
nothing. `LoraEinsumDense` wraps one of the attention's `EinsumDense`
projections: the output is `base(x) + (alpha / rank) * x A B`, with `A`
(`[in, rank]`, He-uniform) and `B` (`[rank, out]`, zeros), so a freshly added
adapter leaves the model's output unchanged. `merged_kernel` folds an
adapter into the base kernel, the same `W + (alpha / rank) A B` that Keras 3's
`Dense.enable_lora` computes (tested against it).

With heterogeneous ranks (`--trainable=hetlora:R`), `RankedLM` sets each
adapter's `active_rank` from the batch while the model runs: only the first
`active_rank` components of `x A` reach `B`, so the output is that of the
rank-r adapter `A[:, :r] B[:r]` (same scale `alpha / R`), and the other
components get no gradient.
"""

import numpy as np
import tensorflow as tf

from tff_gpt.data.preprocessing import RANK_FEATURE

# The attention projections that get adapters: query and value, as in Hu et al.
TARGETS = ("query", "value")
_ATTRIBUTES = {"query": "_query_dense", "key": "_key_dense", "value": "_value_dense"}


class LoraEinsumDense(tf.keras.layers.Layer):
  """A frozen, built `EinsumDense` projection plus a trainable low-rank update.

  Args:
    base: The attention's projection, kernel `[in, heads, head_dim]`.
    rank: The adapter's rank.
    alpha: Scale numerator: the update is multiplied by `alpha / rank`.
    train_a: False keeps `A` at its initial draw (FFA-LoRA): only `B` trains.
  """

  def __init__(
    self, base: tf.keras.layers.EinsumDense, rank: int, alpha: float, train_a: bool = True, **kwargs
  ):
    super().__init__(name=f"{base.name}_lora", **kwargs)
    if len(base.kernel.shape) != 3:
      raise ValueError(f"LoRA expects a [in, heads, head_dim] kernel; {base.name} has {base.kernel.shape}.")
    base.trainable = False
    self.base = base
    self.rank = rank
    self.alpha = alpha
    in_dim, *out_shape = base.kernel.shape
    self.out_shape = list(out_shape)
    self.lora_a = self.add_weight(
      "lora_a", shape=(in_dim, rank), initializer=tf.keras.initializers.HeUniform(), trainable=train_a
    )
    self.lora_b = self.add_weight(
      "lora_b", shape=(rank, int(np.prod(out_shape))), initializer="zeros", trainable=True
    )
    self.active_rank = None  # A scalar tensor while `RankedLM` runs the model; None: all components.

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def call(self, inputs):
    low = tf.matmul(inputs, self.lora_a)
    if self.active_rank is not None:
      low *= tf.cast(tf.range(self.rank) < tf.cast(self.active_rank, tf.int32), low.dtype)
    delta = tf.matmul(low, self.lora_b) * self.scale
    delta = tf.reshape(delta, tf.concat([tf.shape(inputs)[:-1], self.out_shape], axis=0))
    return self.base(inputs) + delta

  def merged_kernel(self) -> np.ndarray:
    """The base kernel with the adapter folded in."""
    delta = self.scale * (self.lora_a.numpy() @ self.lora_b.numpy())
    return self.base.kernel.numpy() + delta.reshape(self.base.kernel.shape)


def attention_layers(backbone):
  """Each transformer block's self-attention layer, first block first."""
  blocks = [backbone.get_layer(f"transformer_layer_{i}") for i in range(backbone.num_layers)]
  return [block._self_attention_layer for block in blocks]


def add_lora(
  backbone, *, rank: int, alpha: float, targets=TARGETS, train_a: bool = True
) -> list[LoraEinsumDense]:
  """Wraps the `targets` projections of every block with adapters, in place (`A` frozen unless `train_a`).

  Returns:
    The adapters, first block first and, within a block, in `targets` order.
  """
  if rank < 1:
    raise ValueError(f"LoRA rank must be >= 1, got {rank}.")
  if alpha <= 0:
    raise ValueError(f"LoRA alpha must be > 0, got {alpha}.")
  added = []
  for attention in attention_layers(backbone):
    for target in targets:
      attribute = _ATTRIBUTES[target]
      adapter = LoraEinsumDense(getattr(attention, attribute), rank, alpha, train_a=train_a)
      setattr(attention, attribute, adapter)
      added.append(adapter)
  return added


def adapters_of(backbone) -> list[LoraEinsumDense]:
  """The adapters `add_lora` added to `backbone` (empty when none)."""
  found = []
  for attention in attention_layers(backbone):
    for attribute in _ATTRIBUTES.values():
      layer = getattr(attention, attribute)
      if isinstance(layer, LoraEinsumDense):
        found.append(layer)
  return found


class RankedLM(tf.keras.Model):
  """The language model `lm`, whose adapters use the rank in the inputs' `lora_rank` (one per sequence).

  A client's sequences all carry its rank (`--lora_client_ranks`); the largest
  in a batch applies. Inputs without `lora_rank` run at the full rank.
  """

  def __init__(self, lm: tf.keras.Model, adapters: list[LoraEinsumDense]):
    super().__init__(name=f"{lm.name}_ranked")
    self.lm = lm
    self._adapters = list(adapters)

  def call(self, inputs, training=None):
    inputs = dict(inputs)
    rank = inputs.pop(RANK_FEATURE, None)
    for adapter in self._adapters:
      adapter.active_rank = None if rank is None else tf.reduce_max(rank)
    try:
      return self.lm(inputs, training=training)
    finally:
      for adapter in self._adapters:
        adapter.active_rank = None
