"""Writes KerasNLP preset directories under Keras 2.

keras-nlp 0.12's `save_to_preset` refuses to run without Keras 3, but its
`from_preset` loads a local directory under Keras 2. This writes the same
layout (`config.json`, `metadata.json`, `model.weights.h5`, `tokenizer.json`,
`assets/tokenizer/`) with KerasNLP's own helpers, so a trained model can be
handed on as a preset and a run can start from one.
"""

import contextlib
import json
import os
import warnings

import tensorflow as tf

from tff_gpt import internals


@contextlib.contextmanager
def saving_quietly():
  """Saves without the warnings Keras 2 prints when saving walks keras-nlp's `Backbone.__dir__`.

  That walk reads Keras 2's deprecated `updates` properties, which warn on
  every save; nothing is wrong with what is saved.
  """
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"`(Model\.state_updates|layer\.updates)` will be removed", UserWarning)
    yield


def _write_config(layer, preset_dir: str, filename: str) -> None:
  config = tf.keras.saving.serialize_keras_object(layer)
  for key in ("compile_config", "build_config"):
    internals.preset_utils.recursive_pop(config, key)
  with open(os.path.join(preset_dir, filename), "w") as f:
    json.dump(config, f, indent=2)


def save_preset(backbone, tokenizer, preset_dir: str) -> None:
  """Saves a `GPT2Backbone` and its `GPT2Tokenizer` as a local preset.

  Args:
    backbone: A `keras_nlp.models.GPT2Backbone`.
    tokenizer: A `keras_nlp.models.GPT2Tokenizer`, or `None` for none.
    preset_dir: Directory to write; created if missing.
  """
  internals.preset_utils.make_preset_dir(preset_dir)
  _write_config(backbone, preset_dir, internals.preset_utils.CONFIG_FILE)
  internals.preset_utils.save_metadata(backbone, preset_dir)
  with saving_quietly():
    backbone.save_weights(os.path.join(preset_dir, internals.preset_utils.MODEL_WEIGHTS_FILE))
  if tokenizer is not None:
    _write_config(tokenizer, preset_dir, internals.preset_utils.TOKENIZER_CONFIG_FILE)
    internals.preset_utils.save_tokenizer_assets(tokenizer, preset_dir)
