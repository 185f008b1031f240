"""GPT-2 dropout whose masks are drawn from the batch, so that runs with dropout repeat exactly.

Keras 2 draws dropout masks with stateful random ops and no seed. Inside TFF's
client computations that makes every run with dropout (`gpt2_124m`, the
keras-nlp and Hugging Face presets at 0.1, `LxDhHdP` shapes) end somewhere
else, and a run resumed after a crash differ from an uninterrupted one: two
identical tiny runs with dropout 0.5 ended at held-out loss 4.43703 and
4.43759. Here every `Dropout` layer of a backbone draws its mask with a
stateless op instead, seeded by a hash of the batch's token ids and the
layer's index: the same batch always gets the same masks, different batches
(other clients, rounds, shuffles) different ones, and nothing depends on
which process, worker or thread runs it. The rate, noise shape and the
inference path (no dropout) are Keras's; only where the randomness comes from
changes.

The one difference from fresh draws: a batch that is trained on again with
exactly the same sequences (another local epoch without reshuffling) gets
the same masks again.
"""

import tensorflow as tf

from tff_gpt import internals

# Large primes for the batch hash; all arithmetic stays inside int64.
_PRIME = 2_147_483_647
_MULTIPLIER = 1_000_003


def batch_seed(token_ids: tf.Tensor) -> tf.Tensor:
  """An int64 scalar in [0, 2^31 - 1) that differs, but for hash collisions, between batches."""
  ids = tf.reshape(tf.cast(token_ids, tf.int64), [-1])
  positions = tf.range(1, tf.size(ids, out_type=tf.int64) + 1, dtype=tf.int64)
  return tf.math.floormod(tf.reduce_sum(((ids + 1) * _MULTIPLIER + positions) * positions % _PRIME), _PRIME)


class _SeedSlot:
  """The seed of the batch being traced, shared by a backbone's dropout layers."""

  def __init__(self):
    self.seed = None


class SeededDropout(tf.keras.layers.Dropout):
  """`Dropout` drawing its mask from `[the slot's batch seed, this layer's index]`."""

  def call(self, inputs, training=None):
    slot = getattr(self, "_seed_slot", None)
    if slot is None or slot.seed is None or self.rate == 0:
      return super().call(inputs, training=training)  # Outside `GPT2LM.call`: Keras's own draws.
    if training is None:
      training = tf.keras.backend.learning_phase()
    seed = tf.stack([slot.seed, tf.constant(self._seed_index, tf.int64)])

    def dropped():
      return tf.nn.experimental.stateless_dropout(
        inputs, rate=self.rate, seed=seed, noise_shape=self._get_noise_shape(inputs)
      )

    return tf.__internal__.smart_cond.smart_cond(training, dropped, lambda: tf.identity(inputs))


def install(backbone: tf.keras.Model) -> _SeedSlot | None:
  """Turns every `Dropout` layer of `backbone` into a `SeededDropout`; returns their shared seed slot.

  Returns None when the backbone has no dropout (then nothing changes).
  """
  # Keras's own walk over the sublayers: each once, in a fixed (depth-first, tracking) order.
  sublayers = internals.flatten_layers(backbone, include_self=False)
  layers = [layer for layer in sublayers if isinstance(layer, tf.keras.layers.Dropout)]
  if not any(layer.rate for layer in layers):
    return None
  slot = _SeedSlot()
  for index, layer in enumerate(layers):
    layer.__class__ = SeededDropout
    layer._seed_slot = slot
    layer._seed_index = index
  return slot
