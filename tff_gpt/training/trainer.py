"""One federated run of GPT-2 (or the LSTM) with a `tff.learning` algorithm: task, process, loop, report.

The default is FedAvg (McMahan et al. 2017, "Communication-Efficient Learning
of Deep Networks from Decentralized Data"): each round a uniform sample of
clients trains locally from the global weights, and the server averages the
updates weighted by each client's number of training sequences.
`tff_gpt.algorithms` builds the others (`--algorithm`, `--aggregator`).

`FederatedExperiment` only assembles the parts, each of which can be used
alone: the task (`task.FederatedTask`: data, tokenizer, model function,
evaluation clients), the learning process (`algorithms.build_process`), the
round loop (`rounds.RoundLoop`) and the report (`report.summarize`).
"""

import os
import sys

from tff_gpt import algorithms, errors
from tff_gpt.training import config as config_lib
from tff_gpt.training import divergence, memory, outputs, report, rounds, write_failures
from tff_gpt.training.task import FederatedTask


class ResumeError(errors.UserInputError):
  """Raised when an output directory holds a run with a different configuration."""


class FederatedExperiment:
  """A run's task, learning process and round loop, built and checked before any round runs.

  Args:
    config: The run's `config_lib.ExperimentConfig`.
    progress: Show progress bars (rounds, evaluation).

  Attributes:
    task: The `task.FederatedTask` (data, tokenizer, model function).
    process: The `tff.learning.templates.LearningProcess`.
    loop: The `rounds.RoundLoop` (client sampling, rounds, evaluation).

  Raises:
    ValueError: A bad configuration value (names the flag), a corpus or
      tokenizer error (names the file and the fix).
  """

  def __init__(self, config: config_lib.ExperimentConfig, *, progress: bool = True):
    config.validate()
    for note in config.advice():
      print(f"note: {note}", file=sys.stderr)
    self.config = config
    self.dirs = outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
    check_resume(config, self.dirs)
    self.task = FederatedTask(config, self.dirs)
    self.process = algorithms.build_process(
      config,
      self.task.model_fn,
      client_model_fn=self.task.client_model_fn,
      client_lr_multipliers=self.task.client_lr_multipliers(),
      lora_gap=self.task.lora_kind,
    )
    self.task.check_fits(self.process)
    self.loop = rounds.RoundLoop(config, self.task, self.process, progress=progress)
    self.memory_estimate = memory.of_run(
      self.task,
      self.process,
      clients_per_round=self.loop.clients_per_round,
      process_bytes=int(memory.process_tree_rss_mb() * memory.MB),
    )
    if not (config.ignore_memory_estimate or config.workers):  # Remote workers' memory is their hosts'.
      memory.check(self.memory_estimate, process_mb=memory.process_tree_rss_mb())

  def run(self, *, progress: bool | None = None) -> dict:
    """Trains for `total_rounds`, resuming after the last readable checkpoint if there is one.

    Returns:
      The run summary (also written to `results/<name>/summary.json`), with
      the final model weights under "model_weights".

    Raises:
      outputs.RunInUseError: Another process is running this experiment.
      divergence.DivergedError: A round's weights or loss were not finite.
    """
    if progress is not None:
      self.loop.progress = self.loop.evaluate.progress = progress
    with outputs.run_lock(self.dirs.create_all()):
      outputs.remove_partial_writes(self.dirs)
      divergence.clear(self.dirs.results)  # Going again: a divergence recorded before no longer holds.
      with write_failures.guard("the run's settings", self.dirs.checkpoints):
        outputs.write_json(self.dirs.run_config, self.task.run_config())
        outputs.write_hparams(self.dirs, self.config.to_dict())
      state, last_metrics = self.loop.run(about=report.settings_summary(self.config, self.task.corpus))
      return report.summarize(
        self.loop, state, last_metrics, memory_estimate_mb=self.memory_estimate.total_mb
      )


def check_resume(config: config_lib.ExperimentConfig, dirs: outputs.RunDirs) -> None:
  """Fails early when the output directory holds a run with other settings."""
  if not os.path.exists(dirs.run_config):
    return
  changed = config.resume_changes(outputs.read_json(dirs.run_config)["experiment"])
  if changed:
    raise ResumeError(
      f"{dirs.checkpoints} holds a run with other settings ({', '.join(changed)}). Use a new "
      "--experiment_name, or the same flags to resume it."
    )
