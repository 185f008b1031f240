"""Central pretraining of GPT-2 (or TFF's character LSTM) on public text, saved for `--preset`.

The usual recipe for federated language models is to pretrain centrally on
public text and fine-tune federatedly on the clients' private text. This is
the central half: Keras `fit` over the packed sequences of every given
client, AdamW with linear warmup and cosine decay, a held-out evaluation
after each epoch, `BackupAndRestore` so that an interrupted run continues
from its last epoch, and a keras-nlp preset (weights and tokenizer) written
atomically at the end. The LSTM (`model="char_lstm"`) trains the same way on
the same packed text with the character tokenizer, and is saved as
`char_lstm.save_preset` writes it, so that both references start federated
fine-tuning from the same text.
"""

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from tff_gpt import errors
from tff_gpt.data import preprocessing
from tff_gpt.models import char_lstm, gpt2_lm, metrics, presets, registry
from tff_gpt.settings import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, check_declared, require, setting

INFO_FILE = "pretrain.json"
# Peak AdamW rate by model when none is given: each the best of its sweep pretraining on the
# histories, 6 epochs (docs/results.md, "GPT-2 and the LSTM from one start"); the LSTM at 1e-3
# ended underfit (held-out 1.784 nats per character against 1.404 at 1e-2).
DEFAULT_LEARNING_RATES = {"gpt2": 1e-3, "char_lstm": 1e-2}


_RATES_HELP = ", ".join(f"{rate:g} for {model}" for model, rate in DEFAULT_LEARNING_RATES.items())


@dataclasses.dataclass
class PretrainSettings:
  """The settings only central pretraining reads; `experiments/pretrain.py` makes one flag of each."""

  preset_dir: str = setting("runs/pretrained/gpt2", "Where the preset (weights and tokenizer) is written.")
  batch_size: int = setting(16, "Sequences per batch.", check=AT_LEAST_1)
  learning_rate: float | None = setting(
    None, f"Peak AdamW learning rate (linear warmup, cosine decay); default: {_RATES_HELP}.", check=POSITIVE
  )
  warmup_fraction: float = setting(0.05, "Fraction of the steps spent warming up.", check=FRACTION)
  weight_decay: float = setting(0.01, "AdamW weight decay.", check=AT_LEAST_0)
  epochs: int = setting(4, "Passes over the pretraining text.", check=AT_LEAST_1)


@dataclasses.dataclass
class PretrainConfig(PretrainSettings):
  """One pretraining run: its own settings and four it shares with federated runs, declared (with their
  flags) by `models.settings.ModelSettings` and `data.settings` (`model`, `model_size`,
  `sequence_length`, `seed`)."""

  model: str = "gpt2"
  model_size: str = gpt2_lm.DEFAULT_SIZE
  sequence_length: int = 64
  seed: int = 0

  def __post_init__(self) -> None:
    if self.learning_rate is None:
      self.learning_rate = DEFAULT_LEARNING_RATES.get(self.model, DEFAULT_LEARNING_RATES["gpt2"])

  def validate(self) -> None:
    """Raises `ConfigError` naming the first setting out of range."""
    check_declared(self, PretrainSettings)
    require(self.sequence_length >= 2, "sequence_length", "must be >= 2")
    require(self.model in registry.MODELS, "model", f"must be one of {list(registry.MODELS)}")
    try:
      gpt2_lm.size_config(self.model_size)
    except ValueError:
      require(False, "model_size", f"must be {gpt2_lm.SIZE_HELP}")

  @property
  def work_dir(self) -> str:
    """Where the epoch backups live until the preset is written."""
    return os.path.abspath(self.preset_dir) + ".work"


def _packed(texts: dict[str, list[str]], tokenizer, sequence_length: int) -> dict[str, np.ndarray]:
  data = preprocessing.TokenizedClients(texts, tokenizer, sequence_length=sequence_length)
  parts = [data.sequences(cid) for cid in data.client_ids]
  if not parts or not sum(len(p["labels"]) for p in parts):
    raise errors.UserInputError("No text to pretrain on: the chosen clients hold no examples.")
  return {k: np.concatenate([p[k] for p in parts]) for k in ("token_ids", "padding_mask", "labels")}


def _dataset(sequences, batch_size, *, seed=None):
  x = {"token_ids": sequences["token_ids"], "padding_mask": sequences["padding_mask"]}
  ds = tf.data.Dataset.from_tensor_slices((x, sequences["labels"]))
  if seed is not None:  # Shuffled anew each epoch; after a restore the order restarts from epoch 1's.
    ds = ds.shuffle(len(sequences["labels"]), seed=seed, reshuffle_each_iteration=True)
  return ds.batch(batch_size)


def pretrain(config: PretrainConfig, train_texts, test_texts, tokenizer, *, progress: bool = True) -> dict:
  """Trains a fresh `config.model` on `train_texts` and writes it (GPT-2: with `tokenizer`, as a preset).

  Args:
    config: The run's settings; the preset goes to `config.preset_dir`.
    train_texts, test_texts: `{client_id: [text, ...]}` to train on and to
      report held-out loss on (e.g. `FederatedCorpus.texts("train")`).
    tokenizer: A `tokenizers.BPETokenizer` for GPT-2 (a preset carries its
      BPE); the `CharTokenizer` for the LSTM.

  Returns:
    What was done (also written to `<preset_dir>/pretrain.json`): sequences,
    tokens, steps, seconds, and each epoch's train and held-out loss.
  """
  config.validate()
  gpt2 = registry.MODELS[config.model].is_gpt2
  if gpt2 and not hasattr(tokenizer, "keras_tokenizer"):
    raise errors.UserInputError(
      "Pretraining writes a preset, which carries a BPE tokenizer: pass --tokenizer=bpe."
    )
  train = _packed(train_texts, tokenizer, config.sequence_length)
  test = _packed(test_texts, tokenizer, config.sequence_length)
  total_steps = math.ceil(len(train["labels"]) / config.batch_size) * config.epochs
  tf.keras.utils.set_random_seed(config.seed)
  model_config = _model_config(config, tokenizer.vocabulary_size)
  model = _compiled_model(model_config, config, total_steps)
  start = time.perf_counter()
  history = _fit(model, config, train, test, progress=progress)
  info = {
    "model": model_config,
    "config": dataclasses.asdict(config),
    "train_clients": len(train_texts),
    "train_sequences": int(len(train["labels"])),
    "train_tokens": int(train["padding_mask"].sum()),
    "steps": total_steps,
    "seconds": time.perf_counter() - start,
    "epochs": [
      {"epoch": i + 1, "train_loss": loss, "eval_loss": history.history["val_token_loss"][i]}
      for i, loss in enumerate(history.history.get("token_loss", []))
    ],
  }
  _write_preset(model, model_config, tokenizer, config.preset_dir, info)
  shutil.rmtree(config.work_dir, ignore_errors=True)
  return info


def _model_config(config: PretrainConfig, vocabulary_size: int) -> dict:
  if registry.MODELS[config.model].is_gpt2:
    return gpt2_lm.model_config(
      config.model_size, vocabulary_size=vocabulary_size, max_sequence_length=config.sequence_length
    )
  return char_lstm.model_config(vocabulary_size=vocabulary_size, sequence_length=config.sequence_length)


def _fit(model, config: PretrainConfig, train: dict, test: dict, *, progress: bool):
  """Keras `fit` over `config.epochs`, evaluated on `test` after each, resuming from the last backup."""
  import tqdm.keras

  callbacks = [tf.keras.callbacks.BackupAndRestore(os.path.join(config.work_dir, "backup"))]
  if progress:
    callbacks.append(tqdm.keras.TqdmCallback(verbose=1, dynamic_ncols=True))
  return model.fit(
    _dataset(train, config.batch_size, seed=config.seed),
    epochs=config.epochs,
    validation_data=_dataset(test, config.batch_size),
    callbacks=callbacks,
    verbose=0,
  )


def _compiled_model(model_config: dict, config: PretrainConfig, total_steps: int) -> tf.keras.Model:
  """A fresh model compiled with AdamW over a linear warmup, then cosine decay, and the LM loss."""
  model = registry.kind_of(model_config).build(model_config)
  warmup = int(config.warmup_fraction * total_steps)
  schedule = tf.keras.optimizers.schedules.CosineDecay(
    0.0 if warmup else config.learning_rate,
    decay_steps=max(1, total_steps - warmup),
    warmup_target=config.learning_rate if warmup else None,
    warmup_steps=warmup,
  )
  model.compile(
    optimizer=tf.keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
    loss=metrics.lm_loss(),
    metrics=[metrics.TokenLoss(), metrics.TokenAccuracy()],
  )
  return model


def _write_preset(model, model_config: dict, tokenizer, preset_dir: str, info: dict) -> None:
  parent = os.path.dirname(os.path.abspath(preset_dir))
  os.makedirs(parent, exist_ok=True)
  stage = tempfile.mkdtemp(prefix=".preset-", dir=parent)
  if registry.kind_of(model_config).is_gpt2:
    presets.save_preset(gpt2_lm.backbone_of(model), tokenizer.keras_tokenizer, stage)
  else:
    char_lstm.save_preset(model, model_config, stage)
  with open(os.path.join(stage, INFO_FILE), "w") as f:
    json.dump(info, f, indent=1)
  if os.path.exists(preset_dir):
    shutil.rmtree(preset_dir)
  os.replace(stage, preset_dir)
