"""The configuration of one federated run, checked before any round runs."""

import dataclasses
import re

from tff_gpt import errors
from tff_gpt.algorithms import aggregators, registry
from tff_gpt.algorithms.optimizers import OPTIMIZERS
from tff_gpt.data import datasets, partitions, tff_datasets
from tff_gpt.models import gpt2_lm, parameter_groups
from tff_gpt.models import trainable as trainable_lib

MODELS = ("gpt2", "char_lstm")
CLIENT_WEIGHTINGS = ("num_examples", "uniform")

# Fields that must match when a run resumes from an existing output directory.
RESUME_KEYS = (
  "dataset",
  "dataset_path",
  "client_field",
  "text_field",
  "partition",
  "partition_clients",
  "partition_alpha",
  "partition_label",
  "partition_size_skew",
  "tfds_name",
  "tfds_split",
  "tfds_data_dir",
  "tff_cache_dir",
  "tff_max_clients",
  "tokenizer",
  "vocab_file",
  "merges_file",
  "word_vocab_size",
  "model",
  "model_size",
  "embedding_init_stddev",
  "attention_init_stddev",
  "preset",
  "trainable",
  "lora_alpha",
  "sequence_length",
  "seed",
  "clients_per_round",
  "client_epochs_per_round",
  "client_batch_size",
  "max_elements_per_client",
  "client_optimizer",
  "client_learning_rate",
  "client_lr_multipliers",
  "server_learning_rate",
  "algorithm",
  "aggregator",
  "client_weighting",
  "client_lr_schedule",
  "client_lr_decay_rate",
  "client_lr_decay_rounds",
  "client_lr_warmup_rounds",
  "server_momentum",
  "server_beta_1",
  "server_beta_2",
  "server_epsilon",
  "proximal_strength",
  "dp_noise_multiplier",
  "dp_clip_norm",
  "dp_target_unclipped_quantile",
  "compression_bits",
)


@dataclasses.dataclass
class ExperimentConfig:
  """Everything that defines a federated GPT-2 run (google-research naming)."""

  root_output_dir: str = "runs"
  experiment_name: str = "shakespeare_fedavg"
  total_rounds: int = 300
  clients_per_round: int = 10
  client_epochs_per_round: int = 1
  client_batch_size: int = 8
  max_elements_per_client: int | None = 64
  sequence_length: int = 80
  client_optimizer: str = "adam"
  client_learning_rate: float = 0.003
  client_lr_multipliers: str | None = None
  server_learning_rate: float | None = None
  algorithm: str = "fedavg"
  aggregator: str = "mean"
  client_weighting: str | None = None
  client_lr_schedule: str = "constant"
  client_lr_decay_rate: float = 0.5
  client_lr_decay_rounds: int = 50
  client_lr_warmup_rounds: int = 0
  server_momentum: float = 0.9
  server_beta_1: float = 0.9
  server_beta_2: float = 0.99
  server_epsilon: float = 0.001
  proximal_strength: float = 0.01
  dp_noise_multiplier: float = 1.0
  dp_clip_norm: float = 1.0
  dp_target_unclipped_quantile: float = 0.5
  dp_delta: float = 1e-5
  compression_bits: int = 8
  rounds_per_eval: int = 50
  rounds_per_checkpoint: int = 25
  clients_per_eval: int | None = 100
  eval_batch_size: int = 64
  seed: int = 0
  dataset: str = "shakespeare"
  dataset_path: str | None = None
  client_field: str = "client_id"
  text_field: str = "text"
  partition: str = "natural"
  partition_clients: int | None = None
  partition_alpha: float | None = None
  partition_label: str | None = None
  partition_size_skew: float = 0.0
  tfds_name: str | None = None
  tfds_split: str = "train"
  tfds_data_dir: str | None = None
  tff_cache_dir: str | None = None
  tff_max_clients: int | None = None
  tokenizer: str = "char"
  vocab_file: str | None = None
  merges_file: str | None = None
  word_vocab_size: int = 10_000
  model: str = "gpt2"
  model_size: str = "small"
  embedding_init_stddev: float | None = None
  attention_init_stddev: float | None = None
  preset: str | None = None
  trainable: str = "all"
  lora_alpha: float = trainable_lib.DEFAULT_LORA_ALPHA
  max_concurrent_computation_calls: int = 2
  ignore_memory_estimate: bool = False
  workers: str | None = None
  export: bool = True
  cache_dir: str | None = None

  def validate(self) -> None:
    """Raises `ValueError` naming the first bad field and what it accepts."""
    positive = (
      "total_rounds",
      "clients_per_round",
      "client_epochs_per_round",
      "client_batch_size",
      "rounds_per_eval",
      "rounds_per_checkpoint",
      "eval_batch_size",
      "max_concurrent_computation_calls",
      "client_lr_decay_rounds",
      "word_vocab_size",
    )
    for name in positive:
      _require(getattr(self, name) >= 1, name, "must be >= 1")
    for name in ("max_elements_per_client", "clients_per_eval", "tff_max_clients"):
      value = getattr(self, name)
      _require(value is None or value >= 1, name, "must be >= 1, or None for no limit")
    _require(self.sequence_length >= 2, "sequence_length", "must be >= 2")
    _require(self.client_lr_warmup_rounds >= 0, "client_lr_warmup_rounds", "must be >= 0 (0: no warmup)")
    for name in ("client_learning_rate", "client_lr_decay_rate", "dp_clip_norm", "server_epsilon"):
      _require(getattr(self, name) > 0, name, "must be > 0")
    _require(
      self.server_learning_rate is None or self.server_learning_rate > 0,
      "server_learning_rate",
      "must be > 0 (or unset for the algorithm's default)",
    )
    for name in ("server_momentum", "server_beta_1", "server_beta_2", "dp_target_unclipped_quantile"):
      _require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
    _require(self.proximal_strength >= 0, "proximal_strength", "must be >= 0")
    _require(self.dp_noise_multiplier >= 0, "dp_noise_multiplier", "must be >= 0")
    _require(0 < self.dp_delta < 1, "dp_delta", "must be in (0, 1)")
    _require(1 <= self.compression_bits <= 16, "compression_bits", "must be in [1, 16]")
    _require(self.client_optimizer in OPTIMIZERS, "client_optimizer", f"must be one of {sorted(OPTIMIZERS)}")
    for name, choices in (
      ("algorithm", registry.ALGORITHMS),
      ("aggregator", aggregators.AGGREGATORS),
      ("client_lr_schedule", registry.SCHEDULES),
      ("model", MODELS),
    ):
      _require(getattr(self, name) in choices, name, f"must be one of {list(choices)}")
    _require(
      self.client_weighting in (None, *CLIENT_WEIGHTINGS),
      "client_weighting",
      f"must be one of {list(CLIENT_WEIGHTINGS)} (or unset for the algorithm's)",
    )
    _require(self.dataset in datasets.CORPORA, "dataset", f"must be one of {list(datasets.CORPORA)}")
    needs_path = self.dataset in ("text_dir", "jsonl")
    _require(
      bool(self.dataset_path) == needs_path,
      "dataset_path",
      f"is required with --dataset={self.dataset}"
      if needs_path
      else "is only for --dataset=text_dir or jsonl",
    )
    _require(
      bool(self.tfds_name) == (self.dataset == "tfds"),
      "tfds_name",
      "is required with, and only for, --dataset=tfds",
    )
    _require(
      bool(self.tff_cache_dir) == self.dataset.startswith("tff_"),
      "tff_cache_dir",
      "(the directory holding TFF's .sqlite files) is required with, and only for, --dataset=tff_shakespeare "
      "or tff_stackoverflow",
    )
    _require(
      self.tff_max_clients is None or self.dataset.startswith("tff_"),
      "tff_max_clients",
      "is only for --dataset=tff_shakespeare or tff_stackoverflow",
    )
    self.partition_spec().validate()
    _require(self.tokenizer in ("char", "bpe", "word"), "tokenizer", "must be 'char', 'bpe' or 'word'")
    if self.tokenizer == "word":
      _require(
        bool(self.vocab_file) or self.dataset == "tff_stackoverflow",
        "vocab_file",
        "(a word-count file, most frequent word first) is required with --tokenizer=word, except with "
        "--dataset=tff_stackoverflow, which reads stackoverflow.word_count from --tff_cache_dir",
      )
    if self.preset:
      _require(self.tokenizer == "bpe", "tokenizer", "must be 'bpe' with --preset (a preset brings its BPE)")
    elif self.tokenizer == "bpe":
      _require(
        bool(self.vocab_file and self.merges_file),
        "vocab_file",
        "and --merges_file are required with --tokenizer=bpe unless --preset is given",
      )
    try:
      size = gpt2_lm.size_config(self.model_size)
    except ValueError:
      size = None
    _require(size is not None, "model_size", f"must be {gpt2_lm.SIZE_HELP}")
    _require(
      re.fullmatch(r"[\w.\-]+", self.experiment_name) is not None,
      "experiment_name",
      "may hold letters, digits, '_', '-' and '.' only",
    )
    registry.check_combination(self)
    if self.model == "char_lstm":
      _require(self.tokenizer == "char", "model", "char_lstm (TFF's Shakespeare LSTM) needs --tokenizer=char")
      _require(self.trainable == "all", "trainable", "must be 'all' with --model=char_lstm")
    stddevs = (
      ("embedding_init_stddev", lambda x: x >= 0, "must be >= 0 (0: keras-nlp's own draws)"),
      ("attention_init_stddev", lambda x: x > 0, "must be > 0 (unset: keras-nlp's)"),
    )
    for name, in_range, requirement in stddevs:
      if getattr(self, name) is not None:
        _require(in_range(getattr(self, name)), name, requirement)
        _require(
          self.model == "gpt2" and not self.preset,
          name,
          "applies to a GPT-2 trained from scratch only (not with --model=char_lstm or --preset)",
        )
    if parameter_groups.parse(self.client_lr_multipliers):
      _require(
        self.model == "gpt2",
        "client_lr_multipliers",
        "names GPT-2's parameter groups; --model=char_lstm has none",
      )
    # A preset's depth is known once its config is read (FederatedExperiment checks K against it).
    layers = None if self.preset else size["num_layers"]
    trainable_lib.parse(self.trainable, num_layers=layers)
    _require(self.lora_alpha > 0, "lora_alpha", "must be > 0 (adapters are scaled by lora_alpha / R)")

  @property
  def initial_embedding_stddev(self) -> float | None:
    """What `tff_model.initial_weights` draws a fresh GPT-2's embeddings with; None: keras-nlp's draws.

    Unset, a GPT-2 trained from scratch gets `gpt2_lm.DEFAULT_EMBEDDING_INIT_STDDEV`; 0 asks for
    keras-nlp's own initializers; a preset or the LSTM has nothing to draw.
    """
    if self.model != "gpt2" or self.preset:
      return None
    if self.embedding_init_stddev is None:
      return gpt2_lm.DEFAULT_EMBEDDING_INIT_STDDEV
    return self.embedding_init_stddev or None

  @property
  def initial_draws(self) -> dict:
    """`tff_model.initial_weights`' arguments for the weights it draws anew (None: keras-nlp's draws)."""
    return dict(
      embedding_init_stddev=self.initial_embedding_stddev, attention_init_stddev=self.attention_init_stddev
    )

  def partition_spec(self) -> partitions.Partition:
    """The `partitions.Partition` of `--partition*` (seeded by `--seed`)."""
    return partitions.Partition(
      kind=self.partition,
      clients=self.partition_clients,
      alpha=self.partition_alpha,
      label=self.partition_label,
      size_skew=self.partition_size_skew,
      seed=self.seed,
    )

  def corpus_kwargs(self) -> dict:
    """Arguments of `datasets.load_corpus` for this run's corpus."""
    return dict(
      path=self.dataset_path,
      client_field=self.client_field,
      text_field=self.text_field,
      partition=self.partition_spec(),
      tfds_name=self.tfds_name,
      tfds_split=self.tfds_split,
      tfds_data_dir=self.tfds_data_dir,
      tff_cache_dir=self.tff_cache_dir,
      tff_max_clients=self.tff_max_clients,
      seed=self.seed,
      cache_dir=self.cache_dir,
    )

  def tokenizer_kwargs(self) -> dict:
    """Arguments of `tokenizers.build_tokenizer` (but the preset) for this run."""
    vocab_file = self.vocab_file
    if self.tokenizer == "word" and not vocab_file and self.tff_cache_dir:
      vocab_file = tff_datasets.word_count_file(self.tff_cache_dir)
    return dict(vocab_file=vocab_file, merges_file=self.merges_file, word_vocab_size=self.word_vocab_size)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> "ExperimentConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


class ConfigError(errors.UserInputError):
  """A setting out of range or inconsistent with another; names the flag."""


def _require(ok: bool, name: str, message: str) -> None:
  if not ok:
    raise ConfigError(f"--{name} {message}.")
