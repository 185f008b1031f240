"""TFF's Shakespeare character LSTM, as the literature's reference model.

`tff.simulation.baselines.shakespeare`'s model (McMahan et al. 2017; Reddi et
al. 2021): an 8-dimensional embedding, two LSTM layers of 256 units and a
dense layer to logits. It is wrapped to take the same inputs as the GPT-2
model, so it trains on exactly the same batches with the same masked loss.
"""

import tensorflow as tf

from tff_gpt.internals import char_prediction_models

ARCHITECTURE = "char_lstm"


def model_config(*, vocabulary_size: int, sequence_length: int) -> dict:
  return {
    "architecture": ARCHITECTURE,
    "vocabulary_size": vocabulary_size,
    "sequence_length": sequence_length,
  }


def build_char_lstm(config: dict) -> tf.keras.Model:
  """`OrderedDict(token_ids, padding_mask)` -> logits, like `gpt2_lm.build_gpt2_lm`."""
  lstm = char_prediction_models.create_recurrent_model(
    vocab_size=config["vocabulary_size"], sequence_length=config["sequence_length"]
  )
  inputs = {
    "token_ids": tf.keras.Input(shape=(config["sequence_length"],), dtype="int32", name="token_ids"),
    "padding_mask": tf.keras.Input(shape=(config["sequence_length"],), dtype="int32", name="padding_mask"),
  }
  # Pads are token 0, which the embedding masks (mask_zero=True); the mask input is unused.
  return tf.keras.Model(inputs=inputs, outputs=lstm(inputs["token_ids"]), name="char_lstm")
