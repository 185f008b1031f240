"""What a researcher changes to study other text or another model: the federated task.

In the spirit of `tff.simulation.baselines.BaselineTask`: the tokenizer, the
federated train (canaries planted, `audit.py`) and test data, the model function
and the evaluation clients, built from a config's settings and checked against
each other before any round runs. The learning process, the round loop and the
report take a task; none builds one of its own.
"""

import dataclasses
import functools
import os

import tensorflow_federated as tff

from tff_gpt import errors
from tff_gpt.data import classified, client_groups, pairs, preprocessing, tokenizers
from tff_gpt.models import adapters, char_lstm, checkpoints, frozen, gpt2_lm, registry, tff_model
from tff_gpt.models import trainable as trainable_lib
from tff_gpt.training import audit, outputs
from tff_gpt.training import config as config_lib


class FederatedTask:
  """The data and model of a run, built and checked before any round runs.

  Args:
    config: The run's `config.ExperimentConfig` (data and model settings are read).
    dirs: The run's `outputs.RunDirs`: a pretrained checkpoint is converted
      into it once, and a trained subset's frozen weights live in it.

  Raises:
    errors.UserInputError: A corpus, tokenizer or checkpoint that cannot be
      used, named with the fix.
  """

  def __init__(
    self, config, dirs: outputs.RunDirs, *, model_config: dict | None = None, load_data: bool = True
  ):
    self.config = config
    self.dirs = dirs
    # keras-hub and Hugging Face checkpoints are converted once into the run's directory.
    self.preset = checkpoints.resolve(config.preset, dirs.pretrained) if config.preset else None
    if self.preset and char_lstm.is_preset(self.preset) != (config.model == char_lstm.ARCHITECTURE):
      raise errors.UserInputError(
        f"--preset {config.preset!r} is not a pretrained --model={config.model}: pass --model="
        f"{'gpt2' if config.model == char_lstm.ARCHITECTURE else char_lstm.ARCHITECTURE} with it, or the "
        f"weights experiments/pretrain.py --model={config.model} writes."
      )
    self.tokenizer = tokenizers.build_tokenizer(
      config.tokenizer,
      preset=self.preset if config.gpt2_preset else None,
      **config.tokenizer_kwargs(),
    )
    self.model_config = self._model_config() if model_config is None else model_config
    self.model_fn = tff_model.build_model_fn(
      self.model_config, sequence_length=config.sequence_length, **self.model_settings
    )
    self._client_ranks = config.client_ranks() if registry.MODELS[config.model].is_gpt2 else None
    if load_data:  # Corpus, tokenizer and evaluation-client errors before any round runs.
      self.check_data()

  @classmethod
  def of_run(cls, dirs: outputs.RunDirs) -> "FederatedTask":
    """The task of the run stored in `dirs`, as it was built (its stored settings and model), data unread.

    Raises:
      errors.UserInputError: `dirs` holds no run.
    """
    if not os.path.exists(dirs.run_config):
      raise errors.UserInputError(
        f"No run at {dirs.checkpoints}: check --root_output_dir and --experiment_name."
      )
    stored = outputs.read_json(dirs.run_config)
    config = config_lib.ExperimentConfig.from_dict(stored["experiment"])
    return cls(config, dirs, model_config=stored["model"], load_data=False)

  def check_data(self) -> None:
    """Reads the corpus and chooses the evaluation clients; fails on what cannot be used."""
    _ = self.train_data, self.test_data, self.eval_client_ids
    if self._client_ranks is not None:
      self._client_ranks.check_clients(self.train_data.client_ids)

  @functools.cached_property
  def corpus(self):
    """The run's `data.datasets.FederatedCorpus`, read at first use."""
    return self.config.load_corpus()

  @functools.cached_property
  def train_data(self):
    return self.tokenized(audit.planted(self, audit.population(self)))

  @functools.cached_property
  def canary_plan(self):
    """The canaries planted in the training split (`audit.canary_plan`; None without `--canaries`)."""
    return audit.canary_plan(self)

  @functools.cached_property
  def test_data(self):
    return self.tokenized(self.corpus.texts("test"))

  @functools.cached_property
  def _eval_clients(self) -> tuple[list[str], list[str]]:
    c = self.config
    return client_groups.evaluation_clients(
      self.test_data.client_ids,
      clients_per_eval=c.clients_per_eval,
      validation_clients=c.validation_clients,
      seed=c.seed,
    )

  @property
  def eval_client_ids(self) -> list[str]:
    """The test clients evaluated (`eval_*`)."""
    return self._eval_clients[0]

  @property
  def validation_client_ids(self) -> list[str]:
    """The validation clients (`val_*`; `--validation_clients`)."""
    return self._eval_clients[1]

  def tokenized(self, texts) -> preprocessing.TokenizedClients:
    """Text as packed streams, or prompt and response pairs as one window each (`pairs`)."""
    c = self.config
    if c.examples == "text":
      return preprocessing.TokenizedClients(texts, self.tokenizer, sequence_length=c.sequence_length)
    if c.classify_with == "head":
      return classified.ClassifiedTexts(
        texts, self.tokenizer, sequence_length=c.sequence_length, classes=c.class_words()
      )
    try:
      return pairs.TokenizedPairs(
        texts,
        self.tokenizer,
        sequence_length=c.sequence_length,
        separator=c.example_format().separator,
        long_responses=c.long_responses,
      )
    except ValueError as e:
      raise errors.UserInputError(str(e)) from None

  def pair_summary(self) -> dict | None:
    """How the length rule treated the pairs, by split (None for text)."""
    if self.config.examples == "text":
      return None
    return {
      split: dataclasses.asdict(data.counts())
      for split, data in (("train", self.train_data), ("test", self.test_data))
    }

  def _model_config(self) -> dict:
    c = self.config
    if not registry.MODELS[c.model].is_gpt2:
      return char_lstm.model_config(
        vocabulary_size=self.tokenizer.vocabulary_size, sequence_length=c.sequence_length
      )
    if c.preset:
      model_config = checkpoints.backbone_config(self.preset)
      if model_config["vocabulary_size"] != self.tokenizer.vocabulary_size:
        raise errors.UserInputError(
          f"--preset {c.preset!r}: the model has {model_config['vocabulary_size']} tokens but its "
          f"tokenizer {self.tokenizer.vocabulary_size}; use the tokenizer saved with these weights."
        )
      if c.sequence_length > model_config["max_sequence_length"]:
        raise errors.UserInputError(
          f"--sequence_length {c.sequence_length} exceeds the checkpoint's "
          f"{model_config['max_sequence_length']} positions; pass --sequence_length="
          f"{model_config['max_sequence_length']} or less."
        )
    else:
      model_config = gpt2_lm.model_config(
        c.model_size, vocabulary_size=self.tokenizer.vocabulary_size, max_sequence_length=c.sequence_length
      )
    trainable_lib.parse(c.trainable, num_layers=model_config["num_layers"])
    if c.classify_with == "head":
      model_config[gpt2_lm.NUM_CLASSES] = len(c.class_words())
    return model_config

  @property
  def model_settings(self) -> dict:
    """Which weights train, and where the frozen rest lives (`tff_model`)."""
    return dict(
      trainable=self.config.trainable, lora_alpha=self.config.lora_alpha, frozen_dir=self.dirs.frozen_weights
    )

  @property
  def lora_kind(self) -> str | None:
    """The LoRA kind of a GPT-2 with adapters (the round's gap is measured); None else or with a head."""
    mode, c = trainable_lib.parse(self.config.trainable), self.config
    # A classifier head trains beside the adapters: the gap is the adapters' and is not measured then.
    return (
      mode.kind if mode.is_lora and registry.MODELS[c.model].is_gpt2 and c.classify_with != "head" else None
    )

  @property
  def lora_rank(self) -> int | None:
    """The server's adapter rank R of a LoRA mode (None in other modes)."""
    mode = trainable_lib.parse(self.config.trainable)
    return mode.value if mode.is_lora else None

  def client_rank(self, client_id: str) -> int | None:
    """The adapter rank `client_id` trains with hetlora:R or flexlora:R (None in other modes)."""
    return None if self._client_ranks is None else self._client_ranks.of(client_id, seed=self.config.seed)

  def _ranked(self, dataset, rank: int | None):
    """`dataset` carrying the adapters' rank (hetlora, flexlora: the model reads it), else `dataset`."""
    return dataset if self._client_ranks is None else preprocessing.with_rank(dataset, rank)

  def frozen_lora_a(self, model_weights) -> list:
    """Each adapter's frozen `A` (ffa_lora: the seeded draw all clients share), first block first."""
    model = self.keras_model(model_weights, merged=False)
    return [adapter.lora_a.numpy() for adapter in adapters.adapters_of(gpt2_lm.backbone_of(model))]

  @property
  def client_model_fn(self):
    """The model function clients build (no initial values drawn: they receive the server's)."""
    return tff_model.client_model_fn(self.model_fn)

  def client_lr_multipliers(self):
    """Per-variable client learning-rate factors of `--client_lr_multipliers` (None when unset)."""
    c = self.config
    return tff_model.learning_rate_multipliers(
      self.model_config, c.client_lr_multipliers, trainable=c.trainable, lora_alpha=c.lora_alpha
    )

  def keras_model(self, model_weights, *, merged: bool = True):
    """The whole Keras model holding `model_weights` (GPT-2's adapters folded in when `merged`)."""
    model = tff_model.keras_model_with_weights(self.model_config, model_weights, **self.model_settings)
    if merged and registry.MODELS[self.config.model].is_gpt2:
      model = tff_model.merged_model(model, self.model_config)
    return model

  def initial_weights(self) -> tff.learning.models.ModelWeights:
    """The seeded (or pretrained) starting weights; with a trained subset, writes the frozen rest too."""
    return tff_model.initial_weights(
      self.model_config,
      seed=self.config.seed,
      preset=self.preset,
      **self.config.initial_draws,
      **self.model_settings,
    )

  def check_frozen_weights(self) -> None:
    """Fails unless the run's frozen-weights file is there and matches the model (subset modes)."""
    layout = getattr(self.model_fn, "frozen_layout", None)
    if layout is not None:
      frozen.check(self.dirs.frozen_weights, layout)

  def check_fits(self, process) -> None:
    """Fails before round 1 when client datasets do not fit what `process` expects."""
    expected = process.next.type_signature.parameter[1].member
    client = self.train_data.client_ids[0]
    actual = tff.types.SequenceType(
      tff.types.tensorflow_to_type(self.train_datasets([client], 0)[0].element_spec)
    )
    if not expected.is_assignable_from(actual):
      raise ValueError(f"Client datasets have type {actual} but the model expects {expected}.")

  def train_datasets(self, client_ids: list[str], round_num: int) -> list:
    """What each client trains on in `round_num` (seeded shuffles, epochs, the per-round cap)."""
    c = self.config
    return [
      self._ranked(
        self.train_data.train_dataset(
          cid,
          round_num=round_num,
          seed=c.seed,
          batch_size=c.client_batch_size,
          epochs=c.client_epochs_per_round,
          max_elements=c.max_elements_per_client,
        ),
        self.client_rank(cid),
      )
      for cid in client_ids
    ]

  def eval_datasets(self, client_ids: list[str]) -> list:
    """Each client's held-out sequences, in batches of `--eval_batch_size` (the global model: every rank)."""
    return [
      self._ranked(self.test_data.eval_dataset(cid, batch_size=self.config.eval_batch_size), self.lora_rank)
      for cid in client_ids
    ]

  def characters(self, client_ids: list[str]) -> int:
    """Characters of the clients' held-out text (for a loss per character that compares tokenizers)."""
    return sum(self.test_data.num_characters(cid) for cid in client_ids)

  def unigram_perplexity(self) -> float:
    """Test perplexity of token frequencies alone, on the evaluation clients."""
    train = [self.train_data.sequences(cid)["labels"] for cid in self.train_data.client_ids]
    test = [self.test_data.sequences(cid)["labels"] for cid in self.eval_client_ids]
    return preprocessing.unigram_perplexity(train, test, self.tokenizer.vocabulary_size)

  def run_config(self) -> dict:
    """What is stored beside the checkpoints: enough to rebuild the model."""
    return {
      "experiment": self.config.to_dict(),
      "model": self.model_config,
      "tokenizer": self.tokenizer.config(),
    }
