"""TFF's Shakespeare character LSTM, as the literature's reference model, and its pretrained weights.

`tff.simulation.baselines.shakespeare`'s model (McMahan et al. 2017; Reddi et
al. 2021): an 8-dimensional embedding, two LSTM layers of 256 units and a
dense layer to logits. It is wrapped to take the same inputs as the GPT-2
model, so it trains on exactly the same batches with the same masked loss.

Pretrained (`experiments/pretrain.py --model=char_lstm`), it is saved as a
directory that `--preset` takes: `config.json` (this module's model config)
and `model.weights.h5`; its tokenizer is the fixed character vocabulary.
"""

import json
import os

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


CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"


def is_preset(path: str) -> bool:
  """Whether `path` is a directory of this model's pretrained weights (its config names the architecture)."""
  try:
    with open(os.path.join(path, CONFIG_FILE)) as f:
      return json.load(f).get("architecture") == ARCHITECTURE
  except (OSError, ValueError, AttributeError):
    return False


def save_preset(model: tf.keras.Model, config: dict, preset_dir: str) -> None:
  """Writes `model` (built by `build_char_lstm(config)`) as a directory `from_preset` reads."""
  os.makedirs(preset_dir, exist_ok=True)
  with open(os.path.join(preset_dir, CONFIG_FILE), "w") as f:
    json.dump(config, f, indent=1)
  model.save_weights(os.path.join(preset_dir, WEIGHTS_FILE))


def from_preset(preset_dir: str, config: dict) -> tf.keras.Model:
  """`build_char_lstm(config)` with the weights `save_preset` wrote (any sequence length: none is stored)."""
  with open(os.path.join(preset_dir, CONFIG_FILE)) as f:
    saved = json.load(f)
  if saved["vocabulary_size"] != config["vocabulary_size"]:
    raise ValueError(
      f"{preset_dir} holds an LSTM over {saved['vocabulary_size']} tokens, not {config['vocabulary_size']}."
    )
  model = build_char_lstm(config)
  model.load_weights(os.path.join(preset_dir, WEIGHTS_FILE))
  return model
