"""Client optimizers by name: `tff.learning.optimizers` builders of a learning rate.

`build` adds per-weight learning-rate multipliers (`--client_lr_multipliers`)
by wrapping the optimizer in `ScaledSteps`.
"""

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_federated as tff

OPTIMIZERS = {
  "sgd": lambda lr: tff.learning.optimizers.build_sgdm(learning_rate=lr),
  "sgdm": lambda lr: tff.learning.optimizers.build_sgdm(learning_rate=lr, momentum=0.9),
  "adam": lambda lr: tff.learning.optimizers.build_adam(learning_rate=lr),
  "yogi": lambda lr: tff.learning.optimizers.build_yogi(learning_rate=lr),
  "adagrad": lambda lr: tff.learning.optimizers.build_adagrad(learning_rate=lr),
}


class ScaledSteps(tff.learning.optimizers.Optimizer):
  """`optimizer`, with each weight's step multiplied by its own factor.

  The wrapped optimizer takes its step; weight i then moves `multipliers[i]`
  times as far. For the optimizers here, whose step is proportional to the
  learning rate, that is the optimizer at learning rate `lr * multipliers[i]`
  for weight i, with its state (moments, accumulators) left as it was: a
  per-parameter-group learning rate, which `tff.learning.optimizers` has no
  option for. The state and hyperparameters are the wrapped optimizer's, so
  learning-rate schedules still set the base rate.
  """

  def __init__(self, optimizer: tff.learning.optimizers.Optimizer, multipliers: Sequence[float]):
    self._optimizer = optimizer
    self._multipliers = [float(m) for m in multipliers]

  def initialize(self, specs):
    # Not checked against the multipliers: TFF initializes client optimizers with a placeholder
    # spec to read their hyperparameters.
    return self._optimizer.initialize(specs)

  def next(self, state, weights, gradients):
    count = len(tf.nest.flatten(weights))
    if count != len(self._multipliers):
      raise ValueError(f"{len(self._multipliers)} learning-rate multipliers for {count} weights.")
    state, stepped = self._optimizer.next(state, weights, gradients)
    scaled = [
      after if m == 1.0 else before + m * (after - before)
      for before, after, m in zip(
        tf.nest.flatten(weights), tf.nest.flatten(stepped), self._multipliers, strict=True
      )
    ]
    return state, tf.nest.pack_sequence_as(stepped, scaled)

  def get_hparams(self, state):
    return self._optimizer.get_hparams(state)

  def set_hparams(self, state, hparams):
    return self._optimizer.set_hparams(state, hparams)


def build(name: str, learning_rate, multipliers: Sequence[float] | None = None):
  """Client optimizer `name` at `learning_rate`; `multipliers` (one per trained weight) scale its steps."""
  optimizer = OPTIMIZERS[name](learning_rate)
  if multipliers is None or all(m == 1.0 for m in multipliers):
    return optimizer
  return ScaledSteps(optimizer, multipliers)
