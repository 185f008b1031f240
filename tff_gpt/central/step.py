"""The one central training step: a language-model loss, its gradients, and an optimizer's update.

Used wherever a model trains outside TFF on the same batches: the central
replay of a run (`replay.py`, with the clients' `tff.learning` optimizer) and
the speed benchmarks' central baselines (with a Keras optimizer). Wrap the
returned step in `tf.function`.
"""

from collections.abc import Callable

import tensorflow as tf

from tff_gpt.models import metrics


def keras_update(optimizer: tf.keras.optimizers.Optimizer, variables: list) -> Callable:
  """`gradients -> None`: a Keras optimizer's update of `variables`."""
  return lambda gradients: optimizer.apply_gradients(zip(gradients, variables, strict=True))


def tff_update(optimizer, variables: list) -> Callable:
  """`gradients -> None`: a `tff.learning` optimizer's update of `variables` (its state held in `.state`)."""
  state = tf.nest.map_structure(
    tf.Variable, optimizer.initialize([tf.TensorSpec(v.shape, v.dtype) for v in variables])
  )

  def update(gradients):
    new_state, new_weights = optimizer.next(tf.nest.map_structure(tf.identity, state), variables, gradients)
    tf.nest.map_structure(lambda var, value: var.assign(value), state, new_state)
    tf.nest.map_structure(lambda var, value: var.assign(value), variables, list(new_weights))

  update.state = state
  return update


def train_step(model: tf.keras.Model, variables: list, update: Callable, *, dense: bool = False) -> Callable:
  """`(x, y) -> loss`: one step of `model` on a batch, `update` applied to the gradients of `variables`.

  Args:
    dense: Make sparse gradients (an embedding's `IndexedSlices`) dense, as
      `tff.learning` optimizers need.
  """
  loss_fn = metrics.lm_loss()

  def step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=True))
    gradients = tape.gradient(loss, variables)
    update([tf.convert_to_tensor(g) for g in gradients] if dense else gradients)
    return loss

  return step
