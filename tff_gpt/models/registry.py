"""The `--model` registry: each model kind, how its config is made and built, and what it supports.

A model config (`run_config.json`'s "model") names its kind under
"architecture"; GPT-2's configs are keras-nlp's `GPT2Backbone` arguments and
carry no such key, so a config without one is GPT-2's.
"""

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from tff_gpt.models import char_lstm, gpt2_lm


@dataclasses.dataclass(frozen=True)
class ModelKind:
  """One `--model` choice.

  Attributes:
    description: One line for help texts.
    build: `model config -> fresh Keras model` (`{token_ids, padding_mask}` -> logits).
    from_preset: `(pretrained directory, model config) -> model` with its weights (`--preset`).
    is_gpt2: GPT-2's features apply: shapes, `--trainable` subsets and
      adapters, parameter groups, generation and the export formats.
    needs_tokenizer: The only `--tokenizer` it takes (None: any).
  """

  description: str
  build: Callable[[dict], tf.keras.Model]
  from_preset: Callable[[str, dict], tf.keras.Model]
  is_gpt2: bool
  needs_tokenizer: str | None = None


def _gpt2_from_preset(preset: str, config: dict) -> tf.keras.Model:
  # A GPT-2 preset carries its backbone's config; a classifier head starts from its seeded draw.
  return gpt2_lm.lm_from_backbone(gpt2_lm.load_preset(preset), config.get(gpt2_lm.NUM_CLASSES))


MODELS = {
  "gpt2": ModelKind(
    "GPT-2 (keras-nlp's GPT2Backbone with a tied LM head)", gpt2_lm.build_gpt2_lm, _gpt2_from_preset, True
  ),
  char_lstm.ARCHITECTURE: ModelKind(
    "TFF's Shakespeare character LSTM, the reference model",
    char_lstm.build_char_lstm,
    char_lstm.from_preset,
    False,
    "char",
  ),
}


def kind_of(model_config: dict) -> ModelKind:
  """The kind a model config is of (GPT-2 when it names none)."""
  return MODELS[model_config.get("architecture", "gpt2")]
