"""The configuration of one federated run, checked before any round runs.

`ExperimentConfig` is the union of the settings groups that each layer
declares (`tff_gpt.settings.setting`): the run's own (`RunSettings`, here),
data (`data.settings`), model (`models.settings`), clients, server, and
aggregation and privacy (`algorithms.settings`). Its fields stay flat, so
`config.client_learning_rate` and the flags keep their names; a part that
needs one group takes it from `config` by the group's fields.
"""

import dataclasses
import re

from tff_gpt import settings
from tff_gpt.algorithms import registry
from tff_gpt.algorithms.settings import CLIENT_WEIGHTINGS, AggregationSettings, ClientSettings, ServerSettings
from tff_gpt.data import datasets
from tff_gpt.data.settings import CorpusSettings, TokenizerSettings
from tff_gpt.models import registry as models_registry
from tff_gpt.models.settings import ModelSettings
from tff_gpt.settings import (
  AT_LEAST_1,
  POSITIVE,
  Check,
  ConfigError,
  check_declared,
  require,
  setting,
)
from tff_gpt.training.audit_settings import AuditSettings
from tff_gpt.training.cohort_settings import CohortSettings
from tff_gpt.training.task_settings import TaskSettings

__all__ = [
  "CLIENT_WEIGHTINGS",
  "GROUPS",
  "RESUME_KEYS",
  "ConfigError",
  "ExperimentConfig",
  "RunSettings",
  "TaskSettings",
  "AuditSettings",
  "CohortSettings",
]

_NAME = Check(
  lambda v: re.fullmatch(r"[\w.\-]+", v) is not None, "may hold letters, digits, '_', '-' and '.' only"
)
_HOST = "; 0 = sized from the host's cores (runtime.host), or from the environment variable"


@dataclasses.dataclass
class RunSettings:
  """Where the run writes, how long it runs, how it is evaluated, and where computations run."""

  root_output_dir: str = setting("runs", "Root of checkpoints/, results/ and logdir/.", resume=False)
  experiment_name: str = setting(
    "shakespeare_fedavg",
    "Name of the run; re-running it resumes after its last checkpoint.",
    resume=False,
    check=_NAME,
  )
  total_rounds: int = setting(300, "Number of federated rounds.", resume=False, check=AT_LEAST_1)
  rounds_per_eval: int = setting(
    50,
    "Evaluate on held-out client data every this many rounds (and after the last).",
    resume=False,
    check=AT_LEAST_1,
  )
  rounds_per_checkpoint: int = setting(
    25, "Checkpoint every this many rounds (and after the last).", resume=False, check=AT_LEAST_1
  )
  clients_per_eval: int | None = setting(
    100,
    "Test clients evaluated (a fixed sample from --seed); 0 = all.",
    resume=False,
    check=Check(AT_LEAST_1.accepts, "must be >= 1, or None for no limit"),
  )
  eval_batch_size: int = setting(64, "Sequences per evaluation batch.", resume=False, check=AT_LEAST_1)
  validation_clients: int | None = setting(
    None,
    "Of the evaluation clients, this many (drawn by --seed) are validation clients, evaluated apart (val_* "
    "columns) for choosing settings; the rest are the test clients that eval_* reports. 0 = none.",
    resume=False,
    check=AT_LEAST_1,
  )
  personalization_clients: int | None = setting(
    None,
    "At every evaluation, this many evaluation clients each fine-tune the global model (what --trainable "
    "trains) on their own training text and are evaluated again on their held-out text; 0 = none.",
    resume=False,
    check=AT_LEAST_1,
  )
  personalization_steps: int = setting(
    20,
    "Plain SGD steps of --client_batch_size sequences each personalizing client takes.",
    resume=False,
    check=AT_LEAST_1,
  )
  personalization_learning_rate: float = setting(
    0.1, "Learning rate of the personalizing clients' plain SGD.", resume=False, check=POSITIVE
  )
  seed: int = setting(0, "Seed of the initial weights, client sampling, client shuffling and partitions.")
  max_concurrent_computation_calls: int = setting(
    2, "Client computations TFF runs at once (1 for 124M).", resume=False, check=AT_LEAST_1
  )
  round_parts: int = setting(
    1,
    "Run each round's clients in this many parts one after another, merging their aggregates: the worker "
    "holds one part's client results at a time (cohorts of hundreds; docs/scale.md).",
    resume=False,
    check=AT_LEAST_1,
  )
  ignore_memory_estimate: bool = setting(
    False, "Start even when the run's estimated peak memory exceeds what is available.", resume=False
  )
  workers: str | None = setting(
    None,
    "HOST:PORT,... of TFF workers (scripts/start_worker.sh) that run the rounds and evaluations; unset = one "
    "local worker. Unauthenticated: private networks only.",
    resume=False,
  )
  export: bool = setting(
    True, "Write results/<name>/export (keras-hub, Hugging Face and PEFT formats) at the end.", resume=False
  )
  intra_op_threads: int | None = setting(
    None,
    f"TensorFlow intra-op threads of this process and its worker{_HOST} TF_NUM_INTRAOP_THREADS.",
    resume=False,
  )
  inter_op_threads: int | None = setting(
    None,
    f"TensorFlow inter-op threads of this process and its worker{_HOST} TF_NUM_INTEROP_THREADS.",
    resume=False,
  )
  malloc_arenas: int | None = setting(
    None, f"glibc malloc arenas of this process and its worker{_HOST} MALLOC_ARENA_MAX.", resume=False
  )

  def check_run(self) -> None:
    check_declared(self, RunSettings)

  def runtime_arguments(self, *, secure_aggregation: bool) -> dict:
    """`runtime.set_up` / `runtime.execution_context` arguments of this run."""
    return dict(
      max_concurrent_computation_calls=self.max_concurrent_computation_calls,
      secure_aggregation=secure_aggregation,
      workers=self.workers,
      intra_op_threads=self.intra_op_threads,
      inter_op_threads=self.inter_op_threads,
      malloc_arenas=self.malloc_arenas,
      round_parts=self.round_parts,
    )


@dataclasses.dataclass
class ExperimentConfig(
  AggregationSettings,
  ServerSettings,
  ClientSettings,
  ModelSettings,
  TokenizerSettings,
  CorpusSettings,
  AuditSettings,
  CohortSettings,
  TaskSettings,
  RunSettings,
):
  """Everything that defines a federated run (google-research naming), one field per flag."""

  def __post_init__(self):
    ModelSettings.__post_init__(self)
    if self.tokenizer is None:  # Unset: the model's own, or the BPE a GPT-2 preset brings.
      needs = getattr(models_registry.MODELS.get(self.model), "needs_tokenizer", None)
      self.tokenizer = needs or ("bpe" if self.preset else "char")

  def validate(self) -> None:
    """Raises `ConfigError` (a `ValueError`) naming the first bad flag and what it accepts."""
    for check in (
      self.check_run,
      self.check_task,
      self.check_audit,
      self.check_cohort,
      self.check_corpus,
      self.check_tokenizer,
      self.check_model,
      self.check_clients,
      self.check_server,
      self.check_aggregation,
    ):
      check()
    self.partition_spec(self.seed).validate()
    self._check_tokenizer_fits()
    registry.check_combination(self)
    needs = models_registry.MODELS[self.model].needs_tokenizer
    if needs:
      require(self.tokenizer == needs, "model", f"{self.model} needs --tokenizer={needs}")
    self.check_lr_multipliers(self.client_lr_multipliers)

  def advice(self) -> list[str]:
    """Notes on settings that run but are known to work badly (printed at start, never an error)."""
    notes = []
    whole = self.gpt2_preset and self.trainable == "all" and self.algorithm in ("fedavg", "fedavg_unweighted")
    if whole and self.client_optimizer == "adam" and (self.server_learning_rate or 1.0) > 0.3:
      if self.client_learning_rate > 1e-4:
        notes.append(
          f"whole-model fine-tuning of a pretrained preset with client Adam at {self.client_learning_rate:g} "
          "was measured to get worse round after round (Adam moves every weight by about its rate a step, "
          "whatever the gradient); client SGD at 0.1, Adam at 1e-4 or a server rate of 0.3 kept improving: "
          "--client_optimizer=sgd --client_learning_rate=0.1 "
          "(docs/results.md#whole-model-fine-tuning-of-a-pretrained-gpt-2)."
        )
    return notes

  def _check_tokenizer_fits(self) -> None:
    if self.tokenizer == "word":
      require(
        bool(self.vocab_file) or self.dataset == "tff_stackoverflow",
        "vocab_file",
        "(a word-count file, most frequent word first) is required with --tokenizer=word, except with "
        "--dataset=tff_stackoverflow, which reads stackoverflow.word_count from --tff_cache_dir",
      )
    if self.gpt2_preset:
      require(self.tokenizer == "bpe", "tokenizer", "must be 'bpe' with --preset (a preset brings its BPE)")
    elif self.tokenizer == "bpe":
      require(
        bool(self.vocab_file and self.merges_file),
        "vocab_file",
        "and --merges_file are required with --tokenizer=bpe unless --preset is given",
      )

  @property
  def gpt2_preset(self) -> bool:
    """A pretrained GPT-2 (which brings its BPE), not the LSTM's pretrained weights (fixed characters)."""
    return bool(self.preset) and models_registry.MODELS[self.model].is_gpt2

  def tokenizer_kwargs(self) -> dict:
    """Arguments of `tokenizers.build_tokenizer` (but the preset) for this run."""
    return self.tokenizer_arguments(self.tff_cache_dir)

  def load_corpus(self):
    """The run's corpus, dealt into clients by `--partition*` and `--seed`."""
    return datasets.load_corpus(**self.corpus_request(seed=self.seed))

  def context_args(self) -> dict:
    """`runtime.execution_context` arguments of this run."""
    return self.runtime_arguments(secure_aggregation=registry.AGGREGATORS[self.aggregator].secure)

  def resume_changes(self, saved: dict) -> list[str]:
    """`--name was X, now Y` for each setting that must match on resume but differs in `saved` (a `to_dict`).

    `saved` goes through `from_dict`, so settings added since it was written compare as their defaults, and
    old names (`--model_size=small`) as what they name now.
    """
    previous, current = ExperimentConfig.from_dict(saved).to_dict(), self.to_dict()
    return [
      f"--{k} was {previous[k]!r}, now {current[k]!r}" for k in RESUME_KEYS if previous[k] != current[k]
    ]

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> "ExperimentConfig":
    """The config of a saved `to_dict`; fields added since take their defaults, removed ones are dropped."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


GROUPS = (
  RunSettings,
  TaskSettings,
  AuditSettings,
  CohortSettings,
  CorpusSettings,
  TokenizerSettings,
  ModelSettings,
  ClientSettings,
  ServerSettings,
  AggregationSettings,
)
RESUME_KEYS = settings.resume_keys(ExperimentConfig)
