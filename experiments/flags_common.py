"""absl flags of federated GPT-2 runs, named as google-research/federated's."""

import dataclasses

from absl import app, flags, logging

from tff_gpt.training import config as config_lib

_D = config_lib.ExperimentConfig()
_HELP = {
  "root_output_dir": "Root of checkpoints/, results/ and logdir/.",
  "experiment_name": "Name of the run; re-running it resumes after its last checkpoint.",
  "total_rounds": "Number of federated rounds.",
  "clients_per_round": "Clients sampled uniformly (from --seed) each round.",
  "client_epochs_per_round": "Local epochs over each client's sequences.",
  "client_batch_size": "Sequences per client batch.",
  "max_elements_per_client": "Cap on each client's sequences per round (after epochs); 0 = none.",
  "sequence_length": "Tokens per training sequence.",
  "client_optimizer": f"Client optimizer: one of {sorted(config_lib.OPTIMIZERS)}.",
  "client_learning_rate": "Client learning rate.",
  "server_optimizer": f"Server optimizer: one of {sorted(config_lib.OPTIMIZERS)}.",
  "server_learning_rate": "Server learning rate.",
  "rounds_per_eval": "Evaluate on held-out client data every this many rounds (and after the last).",
  "rounds_per_checkpoint": "Checkpoint every this many rounds (and after the last).",
  "clients_per_eval": "Test clients evaluated (a fixed sample from --seed); 0 = all.",
  "eval_batch_size": "Sequences per evaluation batch.",
  "seed": "Seed of the initial weights, client sampling and client shuffling.",
  "dataset": "shakespeare (embedded), text_dir or jsonl.",
  "dataset_path": "Directory (text_dir) or file (jsonl) of your own corpus.",
  "client_field": "JSON Lines field holding the client id.",
  "text_field": "JSON Lines field holding the text.",
  "tokenizer": "char (TFF Shakespeare's characters) or bpe (GPT-2 byte-level BPE).",
  "vocab_file": "GPT-2 vocab.json for --tokenizer=bpe.",
  "merges_file": "GPT-2 merges.txt for --tokenizer=bpe.",
  "model_size": "Model size preset.",
  "preset": "KerasNLP preset directory (from save_to_preset) or hub name to start from.",
  "trainable": "Weights that train and are aggregated: all, or last_blocks:K.",
  "max_concurrent_computation_calls": "Client computations TFF runs at once (1 for 124M).",
  "cache_dir": "Parsed-corpus cache; $TFF_GPT_CACHE or ~/.cache/tff_gpt when empty.",
}
_OPTIONAL_INTS = ("max_elements_per_client", "clients_per_eval")


def define_experiment_flags(names=None) -> None:
  """Defines one flag per `ExperimentConfig` field (or those in `names`).

  A flag defined already (by another experiment script imported in the same
  process, as in tests) is left as it is.
  """
  for field in dataclasses.fields(config_lib.ExperimentConfig):
    name, default, help_ = field.name, getattr(_D, field.name), _HELP[field.name]
    if (names is not None and name not in names) or name in flags.FLAGS:
      continue
    if name in _OPTIONAL_INTS:
      flags.DEFINE_integer(name, default or 0, help_)
    elif isinstance(default, bool):
      flags.DEFINE_bool(name, default, help_)
    elif isinstance(default, int):
      flags.DEFINE_integer(name, default, help_)
    elif isinstance(default, float):
      flags.DEFINE_float(name, default, help_)
    elif name in ("client_optimizer", "server_optimizer"):
      flags.DEFINE_enum(name, default, sorted(config_lib.OPTIMIZERS), help_)
    else:
      flags.DEFINE_string(name, default, help_)


def config_from_flags() -> config_lib.ExperimentConfig:
  values = {f.name: getattr(flags.FLAGS, f.name) for f in dataclasses.fields(config_lib.ExperimentConfig)}
  for name in _OPTIONAL_INTS:
    values[name] = values[name] or None
  for name, value in values.items():
    if value == "":
      values[name] = None
  return config_lib.ExperimentConfig(**values)


def check_main_args(argv) -> None:
  """Common start of every entry point's main: no positional arguments, quiet logs."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TFF logs every traced computation at INFO.
