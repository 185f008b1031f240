"""One federated run of GPT-2 (or the LSTM) with a `tff.learning` algorithm: task, process, loop, report.

The default is FedAvg (McMahan et al. 2017, "Communication-Efficient Learning
of Deep Networks from Decentralized Data"): each round a uniform sample of
clients trains locally from the global weights, and the server averages the
updates weighted by each client's number of training sequences.
`tff_gpt.algorithms` builds the others (`--algorithm`, `--aggregator`).

`FederatedExperiment` only assembles the parts, each of which can be used
alone: the run's context (`run.Run.build`: the task, the learning process
and the clients and bytes per round), the evaluation
(`evaluation.Evaluation`), the round loop (`rounds.RoundLoop`) and the
report (`report.summarize`).
"""

import os
import sys

from tff_gpt import errors
from tff_gpt.training import config as config_lib
from tff_gpt.training import divergence, evaluation, memory, outputs, report, rounds, write_failures
from tff_gpt.training.run import Run


class ResumeError(errors.UserInputError):
  """Raised when an output directory holds a run with a different configuration."""


class FederatedExperiment:
  """A run's context, evaluation and round loop, built and checked before any round runs.

  Args:
    config: The run's `config_lib.ExperimentConfig` (validated here, the one place a run's config is).
    progress: Show progress bars (rounds, evaluation) and a line at each evaluation.

  Attributes:
    context: The `run.Run` (config, task, process, directories, clients and bytes per round).
    task, process: The context's task and learning process.
    evaluate: The `evaluation.Evaluation` of the run's held-out clients.
    loop: The `rounds.RoundLoop`.

  Raises:
    ValueError: A bad configuration value (names the flag), a corpus or
      tokenizer error (names the file and the fix).
  """

  def __init__(self, config: config_lib.ExperimentConfig, *, progress: bool = True):
    config.validate()
    for note in config.advice():
      print(f"note: {note}", file=sys.stderr)
    self.config = config
    dirs = outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
    check_resume(config, dirs)
    self.context = Run.build(config, dirs)
    self.task, self.process, self.dirs = self.context.task, self.context.process, dirs
    self.evaluate = evaluation.Evaluation(self.task, progress=progress)
    self.loop = rounds.RoundLoop(self.context, self.evaluate, progress=progress)
    process_bytes = int(memory.process_tree_rss_mb() * memory.MB)
    self.memory_estimate = memory.of_run(self.context, process_bytes=process_bytes)
    if not (config.ignore_memory_estimate or config.workers):  # Remote workers' memory is their hosts'.
      memory.check(self.memory_estimate, process_mb=memory.process_tree_rss_mb())

  def run(self) -> dict:
    """Trains for `total_rounds`, resuming after the last readable checkpoint if there is one.

    Returns:
      The run summary (also written to `results/<name>/summary.json`), with
      the final model weights under "model_weights".

    Raises:
      outputs.RunInUseError: Another process is running this experiment.
      divergence.DivergedError: A round's weights or loss were not finite.
    """
    with outputs.run_lock(self.dirs.create_all()):
      outputs.remove_partial_writes(self.dirs)
      divergence.clear(self.dirs.results)  # Going again: a divergence recorded before no longer holds.
      with write_failures.guard("the run's settings", self.dirs.checkpoints):
        outputs.write_json(self.dirs.run_config, self.task.run_config())
        outputs.write_hparams(self.dirs, self.config.to_dict())
      state, last_metrics = self.loop.run()
      return report.summarize(
        self.context, self.evaluate, state, last_metrics, memory_estimate_mb=self.memory_estimate.total_mb
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
