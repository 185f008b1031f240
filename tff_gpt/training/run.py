"""One federated run's context: built once (`Run.build`), read by the loop, evaluation, report and divergence.

A `Run` is frozen: it holds what every part of a run reads and none of them
changes, so a part can be tested on a `Run` of the smallest model without
building the others (`tests/test_run_parts.py`). What changes during a run
(the state, the metrics rows, the evaluation's personalized clients) lives in
the part that makes it.

Fields:
  config: The validated `config.ExperimentConfig`.
  task: The `task.FederatedTask` (data, tokenizer, model function, evaluation clients).
  process: The `tff.learning.templates.LearningProcess` built for `task`.
  dirs: The run's `outputs.RunDirs` (the task's: one place says where the run lives).
  clients_per_round: Clients trained each round (`--clients_per_round`, at most the training clients).
  bytes_per_client: `{"client_download_bytes", "client_upload_bytes"}` of one client and round
    (`algorithms.communication`).
  round_bytes: Bytes one round communicates, every client's download and upload.
  sample: `(round_num, clients) -> client ids`, TFF's uniform sampling of the training clients by the seed
    (`cohort` calls it).
  sampled_per_round: Clients a round samples (more than `clients_per_round` with `--over_selection`).
  speed: `client id -> simulated tokens per second` (`--client_speeds`), or None.
"""

import dataclasses
import sys
from collections.abc import Callable

import tensorflow_federated as tff

from tff_gpt import algorithms, label_scoring, response_scoring
from tff_gpt.algorithms import communication, privacy
from tff_gpt.training import audit, cohorts, outputs, personalization
from tff_gpt.training.task import FederatedTask


def notes_on_capped_clients(config, task: FederatedTask) -> list[str]:
  """What the run does instead of settings that ask for more clients than the corpus has."""
  notes, train = [], task.train_data.client_ids
  if config.clients_per_round > len(train):
    kept = f"--population={config.population} keeps" if config.population else "the corpus has"
    notes.append(
      f"--clients_per_round={config.clients_per_round} but {kept} {len(train):,} training clients: "
      f"every round trains all {len(train):,}."
    )
  if config.personalization_clients:
    can = len(personalization.clients_of(task, config.personalization_clients))
    if config.personalization_clients > can:
      notes.append(
        f"--personalization_clients={config.personalization_clients} but {can:,} evaluation clients have "
        f"training text to fine-tune on: each evaluation personalizes those {can:,}."
      )
  return notes


@dataclasses.dataclass(frozen=True)
class Run:
  """What one federated run is; see the module docstring for the fields."""

  config: object
  task: FederatedTask
  process: tff.learning.templates.LearningProcess
  clients_per_round: int
  bytes_per_client: dict
  round_bytes: int
  sample: Callable[[int, int], list] = dataclasses.field(repr=False, compare=False)
  sampled_per_round: int = 0
  speed: Callable[[str], float] | None = dataclasses.field(default=None, repr=False, compare=False)
  _cohorts: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # By round.

  @classmethod
  def build(cls, config, dirs: outputs.RunDirs | None = None) -> "Run":
    """The run of `config` (validated already): task, process, bytes; checked before any round runs."""
    dirs = dirs or outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
    task = FederatedTask(config, dirs)
    if config.classes:  # Every response a class, every class trained on: checked before any round.
      label_scoring.check_labels(task.corpus.texts("train"), task.corpus.texts("test"), config.class_words())
    if config.rouge_pairs:  # Every document non-empty: checked before any round.
      response_scoring.check_documents(task.corpus.texts("train"), task.corpus.texts("test"))
    audit.check(task)  # Canaries that fit their clients and the tokenizer, their plan written.
    process = algorithms.build_process(
      config,
      task.model_fn,
      client_model_fn=task.client_model_fn,
      client_lr_multipliers=task.client_lr_multipliers(),
      lora_gap=task.lora_kind,
    )
    task.check_fits(process)
    clients = task.train_data.client_ids
    for note in notes_on_capped_clients(config, task):
      print(f"note: {note}", file=sys.stderr)
    per_round = min(config.clients_per_round, len(clients))
    per_client = communication.bytes_per_client(config, process)
    return cls(
      config=config,
      task=task,
      process=process,
      clients_per_round=per_round,
      bytes_per_client=per_client,
      round_bytes=communication.round_bytes(per_client, per_round),
      sample=tff.simulation.build_uniform_sampling_fn(clients, replace=False, random_seed=config.seed),
      sampled_per_round=cohorts.sampled_per_round(per_round, config.over_selection, len(clients)),
      speed=cohorts.speed_of(config),
    )

  @property
  def dirs(self) -> outputs.RunDirs:
    return self.task.dirs

  def bytes_communicated(self, rounds: int) -> int:
    """Bytes communicated by `rounds` rounds: every round's `clients_per_round` clients' download and
    upload; with dropout or over-selection, every sampled client's download and every reporter's upload."""
    if self.sampled_per_round == self.clients_per_round and not self.config.client_dropout:
      return rounds * self.round_bytes
    down, up = self.bytes_per_client["client_download_bytes"], self.bytes_per_client["client_upload_bytes"]
    return sum(
      c.sampled * down + (len(c.reporters) + len(c.late)) * up for c in map(self.cohort, range(1, rounds + 1))
    )

  def cohort(self, round_num: int) -> cohorts.Cohort:
    """Round `round_num`'s clients (`cohorts.choose`): a function of the seed and the round only."""
    if round_num not in self._cohorts:
      c = self.config
      self._cohorts[round_num] = cohorts.choose(
        list(self.sample(round_num, self.sampled_per_round)),
        round_num=round_num,
        seed=c.seed,
        target=self.clients_per_round,
        dropout=c.client_dropout,
        seconds_of=None if self.speed is None else self._simulated_seconds,
        overhead=c.round_overhead_seconds,
      )
    return self._cohorts[round_num]

  def _simulated_seconds(self, client_id: str) -> float:
    """A client's simulated time in a round: its tokens over its speed."""
    tokens = cohorts.tokens_per_round(self.task.train_data.num_sequences(client_id), self.config)
    return tokens / self.speed(client_id)

  def clients_for_round(self, round_num: int) -> list[str]:
    """The clients `round_num` aggregates: a function of the seed and the round only."""
    return list(self.cohort(round_num).reporters)

  def simulated_time(self, rounds: int) -> float:
    """Simulated seconds `rounds` rounds took (`--client_speeds`)."""
    return sum(self.cohort(r).simulated_seconds for r in range(1, rounds + 1))

  def client_datasets(self, round_num: int) -> list:
    """What each client of `round_num` trains on, in the order of `clients_for_round`."""
    return self.task.train_datasets(self.clients_for_round(round_num), round_num)

  def initial_state(self):
    """A state holding the task's initial weights (in subset modes, those write the frozen weights first)."""
    weights = self.task.initial_weights()  # First: in subset modes `initialize()` reads the frozen weights.
    return self.process.set_model_weights(self.process.initialize(), weights)

  def dp_epsilon(self, rounds: int) -> float:
    """Client-level epsilon at `--dp_delta` spent by `rounds` rounds."""
    return privacy.epsilon(
      noise_multiplier=self.config.dp_noise_multiplier,
      sampling_rate=self.clients_per_round / len(self.task.train_data.client_ids),
      rounds=rounds,
      delta=self.config.dp_delta,
    )

  def settings_summary(self) -> dict:
    """The settings a summary (and a divergence record) names the run by."""
    config, corpus = self.config, self.task.corpus
    return dict(
      rounds=config.total_rounds,
      algorithm=config.algorithm,
      aggregator=config.aggregator,
      model=config.model,
      tokenizer=config.tokenizer,
      client_weighting=algorithms.client_weighting(config),
      client_learning_rate=config.client_learning_rate,
      server_learning_rate=algorithms.server_learning_rate(config),
      partition=corpus.summary.get("partition", "natural clients"),
      partition_settings=corpus.summary.get("partition_settings"),
      heterogeneity=corpus.summary.get("heterogeneity"),
    )
