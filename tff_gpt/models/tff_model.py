"""The TFF side of the model: `model_fn` for `tff.learning` and initial weights."""

import tensorflow as tf
import tensorflow_federated as tff

from tff_gpt.data import preprocessing
from tff_gpt.models import char_lstm, gpt2_lm, metrics


def build_keras_model(config: dict, *, trainable: str = "all") -> tf.keras.Model:
  """A fresh language model of `config`: GPT-2 or, when the config says so, the char LSTM."""
  if config.get("architecture") == char_lstm.ARCHITECTURE:
    return char_lstm.build_char_lstm(config)
  return gpt2_lm.build_gpt2_lm(config, trainable=trainable)


def build_model_fn(config: dict, *, sequence_length: int, trainable: str = "all"):
  """Returns a no-argument `model_fn` that builds a fresh `tff.learning` model.

  Args:
    config: `GPT2Backbone` keyword arguments, or a `char_lstm.model_config`.
    sequence_length: Length of the client sequences (the `input_spec`).
    trainable: Which weights train and are aggregated: "all" or
      "last_blocks:K" (see `gpt2_lm`).
  """
  if "num_layers" in config:
    gpt2_lm.check_trainable(trainable, config["num_layers"])
  input_spec = preprocessing.element_spec(sequence_length)

  def model_fn() -> tff.learning.models.VariableModel:
    return tff.learning.models.from_keras_model(
      build_keras_model(config, trainable=trainable),
      loss=metrics.lm_loss(),
      input_spec=input_spec,
      metrics=metrics.lm_metrics(),
    )

  return model_fn


def initial_weights(
  config: dict, *, seed: int, trainable: str = "all", preset: str | None = None
) -> tff.learning.models.ModelWeights:
  """The starting global weights: seeded random, or a pretrained preset's.

  TFF's own `initialize()` draws unseeded weights; these make runs repeatable.
  """
  tf.keras.utils.set_random_seed(seed)
  if preset:
    model = gpt2_lm.lm_from_backbone(gpt2_lm.load_preset(preset), trainable=trainable)
  else:
    model = build_keras_model(config, trainable=trainable)
  return tff.learning.models.ModelWeights.from_model(model)


def keras_model_with_weights(
  config: dict, weights: tff.learning.models.ModelWeights, *, trainable: str = "all"
) -> tf.keras.Model:
  """A fresh Keras model holding `weights` (e.g. from a checkpoint)."""
  model = build_keras_model(config, trainable=trainable)
  weights.assign_weights_to(model)
  return model
