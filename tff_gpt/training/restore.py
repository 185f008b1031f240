"""A finished or running experiment's latest global model, back as a Keras GPT-2."""

import asyncio
import os

import tensorflow_federated as tff

from tff_gpt import algorithms, errors
from tff_gpt.data import tokenizers
from tff_gpt.models import checkpoints, frozen, registry, tff_model
from tff_gpt.training import config as config_lib
from tff_gpt.training import outputs


def load_latest_model(root_output_dir: str, experiment_name: str):
  """Loads a run's latest checkpoint as a whole Keras GPT-2 (adapters folded in).

  Needs TFF's execution context (the checkpoint is read through the run's
  learning process) and, for a trained subset, the run's frozen weights.

  Returns:
    `(run_config, tokenizer, model, round_num)`.
  """
  dirs = outputs.RunDirs.of(root_output_dir, experiment_name)
  if not os.path.exists(dirs.run_config):
    raise errors.UserInputError(
      f"No run at {dirs.checkpoints}: check --root_output_dir and --experiment_name."
    )
  run_config = outputs.read_json(dirs.run_config)
  config = config_lib.ExperimentConfig.from_dict(run_config["experiment"])
  preset = checkpoints.resolve(config.preset, dirs.pretrained) if config.preset else None
  tokenizer = tokenizers.build_tokenizer(
    config.tokenizer, preset=preset if config.gpt2_preset else None, **config.tokenizer_kwargs()
  )
  settings = dict(trainable=config.trainable, lora_alpha=config.lora_alpha, frozen_dir=dirs.frozen_weights)
  model_fn = tff_model.build_model_fn(run_config["model"], sequence_length=config.sequence_length, **settings)
  process = algorithms.build_process(config, model_fn)
  state_manager = tff.program.FileProgramStateManager(dirs.checkpoints)
  if not asyncio.run(state_manager.get_versions()):
    raise errors.UserInputError(f"{dirs.checkpoints} has no checkpoint yet; wait for the first one.")
  if getattr(model_fn, "frozen_layout", None) is not None:
    frozen.check(dirs.frozen_weights, model_fn.frozen_layout)
  state, version = asyncio.run(
    outputs.load_latest_readable(state_manager, process.initialize(), set_aside=False)
  )
  weights = process.get_model_weights(state)
  model = tff_model.keras_model_with_weights(run_config["model"], weights, **settings)
  if registry.kind_of(run_config["model"]).is_gpt2:
    model = tff_model.merged_model(model, run_config["model"])
  return run_config, tokenizer, model, version
