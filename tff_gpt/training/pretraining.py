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

import numpy as np
import tensorflow as tf

from tff_gpt import errors
from tff_gpt.data import preprocessing
from tff_gpt.models import char_lstm, gpt2_lm, metrics, presets, registry

INFO_FILE = "pretrain.json"
# Peak AdamW rate by model when none is given: each the best of its sweep pretraining on the
# histories, 6 epochs (docs/results.md, "GPT-2 and the LSTM from one start"); the LSTM at 1e-3
# ended underfit (held-out 1.784 nats per character against 1.404 at 1e-2).
DEFAULT_LEARNING_RATES = {"gpt2": 1e-3, "char_lstm": 1e-2}


@dataclasses.dataclass
class PretrainConfig:
  """Settings of one central pretraining run (experiments/pretrain.py's flags)."""

  preset_dir: str
  model: str = "gpt2"
  model_size: str = gpt2_lm.DEFAULT_SIZE
  sequence_length: int = 64
  batch_size: int = 16
  learning_rate: float | None = None  # None: DEFAULT_LEARNING_RATES[model].
  warmup_fraction: float = 0.05
  weight_decay: float = 0.01
  epochs: int = 4
  seed: int = 0

  def __post_init__(self) -> None:
    if self.learning_rate is None:
      self.learning_rate = DEFAULT_LEARNING_RATES.get(self.model, DEFAULT_LEARNING_RATES["gpt2"])

  def validate(self) -> None:
    for name in ("sequence_length", "batch_size", "epochs"):
      if getattr(self, name) < 1:
        raise errors.UserInputError(f"--{name} must be >= 1.")
    if self.sequence_length < 2:
      raise errors.UserInputError("--sequence_length must be >= 2.")
    if self.learning_rate <= 0:
      raise errors.UserInputError("--learning_rate must be > 0.")
    if not 0 <= self.warmup_fraction < 1:
      raise errors.UserInputError("--warmup_fraction must be in [0, 1).")
    if self.model not in registry.MODELS:
      raise errors.UserInputError(f"--model must be one of {list(registry.MODELS)}.")
    try:
      gpt2_lm.size_config(self.model_size)
    except ValueError:
      raise errors.UserInputError(f"--model_size must be {gpt2_lm.SIZE_HELP}.") from None

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
  import time

  import tqdm.keras

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
  if gpt2:
    model_config = gpt2_lm.model_config(
      config.model_size, vocabulary_size=tokenizer.vocabulary_size, max_sequence_length=config.sequence_length
    )
  else:
    model_config = char_lstm.model_config(
      vocabulary_size=tokenizer.vocabulary_size, sequence_length=config.sequence_length
    )
  model = _compiled_model(model_config, config, total_steps)
  train_ds = _dataset(train, config.batch_size, seed=config.seed)
  callbacks = [tf.keras.callbacks.BackupAndRestore(os.path.join(config.work_dir, "backup"))]
  if progress:
    callbacks.append(tqdm.keras.TqdmCallback(verbose=1, dynamic_ncols=True))
  start = time.perf_counter()
  history = model.fit(
    train_ds,
    epochs=config.epochs,
    validation_data=_dataset(test, config.batch_size),
    callbacks=callbacks,
    verbose=0,
  )
  seconds = time.perf_counter() - start
  info = {
    "model": model_config,
    "config": dataclasses.asdict(config),
    "train_clients": len(train_texts),
    "train_sequences": int(len(train["labels"])),
    "train_tokens": int(train["padding_mask"].sum()),
    "steps": total_steps,
    "seconds": seconds,
    "epochs": [
      {"epoch": i + 1, "train_loss": loss, "eval_loss": history.history["val_token_loss"][i]}
      for i, loss in enumerate(history.history.get("token_loss", []))
    ],
  }
  _write_preset(model, model_config, tokenizer, config.preset_dir, info)
  shutil.rmtree(config.work_dir, ignore_errors=True)
  return info


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
