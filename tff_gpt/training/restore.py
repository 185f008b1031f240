"""The one way back to a run's latest checkpoint: resume, generation, export and the Colab export use it.

`latest_state(task, process)` reads the newest readable checkpoint of a run
whose task and process are built (the round loop's resume passes its own).
`open_run` builds the task of a stored run from its `run_config.json`
alone: the tokenizer and model as the run built them, without reading the
corpus or checking memory. `load_latest_model` turns the latest state into
a whole Keras model.
"""

import asyncio

import tensorflow_federated as tff

from tff_gpt import algorithms, errors
from tff_gpt.training import outputs
from tff_gpt.training.task import FederatedTask


def latest_state(task: FederatedTask, process, *, set_aside: bool = False) -> tuple:
  """`(state, round_num)` of the run's newest readable checkpoint; `(None, 0)` when it has none.

  Args:
    task: The run's task (its directories, and its frozen weights in subset modes, which are checked).
    process: The run's learning process (the state's structure).
    set_aside: Rename newer checkpoints that cannot be read (a resume does, so that it writes those
      rounds again); a reader beside a running run leaves them.
  """
  state_manager = tff.program.FileProgramStateManager(task.dirs.checkpoints)
  if not asyncio.run(state_manager.get_versions()):
    return None, 0
  task.check_frozen_weights()  # `initialize()` reads them in subset modes: only once they exist.
  return asyncio.run(outputs.load_latest_readable(state_manager, process.initialize(), set_aside=set_aside))


def open_run(root_output_dir: str, experiment_name: str) -> FederatedTask:
  """The task of a stored run, built from its settings only (no memory check, no corpus read until a part
  asks for its data).

  Raises:
    errors.UserInputError: No run there.
  """
  return FederatedTask.of_run(outputs.RunDirs.of(root_output_dir, experiment_name))


def latest_weights(task: FederatedTask) -> tuple:
  """`(model_weights, round_num)` of the latest checkpoint of `task`'s run.

  Needs TFF's execution context (the checkpoint is read through the run's learning process).

  Raises:
    errors.UserInputError: No checkpoint yet.
  """
  process = algorithms.build_process(task.config, task.model_fn)
  state, round_num = latest_state(task, process)
  if state is None:
    raise errors.UserInputError(f"{task.dirs.checkpoints} has no checkpoint yet; wait for the first one.")
  return process.get_model_weights(state), round_num


def load_latest_model(root_output_dir: str, experiment_name: str):
  """A run's latest checkpoint as a whole Keras model (GPT-2's adapters folded in).

  Returns:
    `(run_config, tokenizer, model, round_num)`.
  """
  task = open_run(root_output_dir, experiment_name)
  weights, round_num = latest_weights(task)
  return task.run_config(), task.tokenizer, task.keras_model(weights), round_num
