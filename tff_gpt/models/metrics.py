"""Language-model metrics that ignore padded labels (label -1)."""

import math

import numpy as np
import tensorflow as tf

from tff_gpt.data.preprocessing import IGNORE_LABEL


def _mask(y_true):
  return tf.cast(tf.not_equal(y_true, IGNORE_LABEL), tf.float32)


class TokenAccuracy(tf.keras.metrics.Mean):
  """Next-token accuracy over non-pad tokens."""

  def __init__(self, name="token_accuracy", dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_true = tf.cast(y_true, tf.int32)
    correct = tf.cast(tf.equal(tf.argmax(y_pred, axis=-1, output_type=tf.int32), y_true), tf.float32)
    return super().update_state(correct, sample_weight=_mask(y_true))


class TokenLoss(tf.keras.metrics.Mean):
  """Mean cross-entropy per non-pad token; exp of it is the perplexity."""

  def __init__(self, name="token_loss", dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_true = tf.cast(y_true, tf.int32)
    safe = tf.maximum(y_true, 0)
    losses = tf.keras.losses.sparse_categorical_crossentropy(safe, y_pred, from_logits=True)
    return super().update_state(losses, sample_weight=_mask(y_true))


class NumTokens(tf.keras.metrics.Sum):
  """Number of non-pad label tokens seen."""

  def __init__(self, name="num_tokens", dtype=tf.int64):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    return super().update_state(tf.reduce_sum(tf.cast(_mask(y_true), tf.int64)))


def lm_metrics():
  return [TokenLoss(), TokenAccuracy(), NumTokens()]


def lm_loss():
  """Cross-entropy from logits, averaged over non-pad tokens of a batch."""
  return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL)


def as_row(prefix: str, values) -> dict:
  """The finalized metrics of a TFF round or evaluation (`values`) as a metrics row's `<prefix>_*` floats."""
  loss = float(np.asarray(values["token_loss"]))
  return {
    f"{prefix}_loss": loss,
    f"{prefix}_perplexity": math.exp(min(loss, 50.0)),
    f"{prefix}_accuracy": float(np.asarray(values["token_accuracy"])),
    f"{prefix}_tokens": int(np.asarray(values["num_tokens"])),
  }
