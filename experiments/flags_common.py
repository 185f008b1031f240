"""absl flags of federated GPT-2 runs, named as google-research/federated's."""

import dataclasses
import sys

from absl import app, flags, logging

from tff_gpt import algorithms, errors
from tff_gpt.data import partitions
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
  "client_optimizer": "Client optimizer (Mime Lite's base optimizer).",
  "client_learning_rate": "Client learning rate (the first round's, with a schedule).",
  "client_lr_multipliers": "GPT-2 only: group=factor pairs that scale the client learning rate of a group of "
  "weights (embeddings, attention_qk, attention_vo, feedforward, layer_norm), for example "
  "attention_vo=0.125,attention_qk=0.5; empty = one rate for all.",
  "server_learning_rate": "Server learning rate; unset = the algorithm's default "
  + ", ".join(f"{k} {v.server_learning_rate:g}" for k, v in algorithms.ALGORITHMS.items())
  + ".",
  "algorithm": "; ".join(f"{k}: {v.description}" for k, v in algorithms.ALGORITHMS.items()) + ".",
  "aggregator": "; ".join(f"{k}: {v.description}" for k, v in algorithms.AGGREGATORS.items()) + ".",
  "client_weighting": "num_examples or uniform; unset = the algorithm's (uniform for fedavg_unweighted).",
  "client_lr_schedule": "Client learning rate over rounds: constant, exp_decay "
  "(x decay_rate every decay_rounds) or inv_sqrt (/ sqrt(1 + round/decay_rounds)).",
  "client_lr_decay_rate": "Factor of --client_lr_schedule=exp_decay per --client_lr_decay_rounds.",
  "client_lr_decay_rounds": "Rounds over which the client learning rate decays.",
  "client_lr_warmup_rounds": "Rounds over which the client learning rate rises linearly to the "
  "schedule's (round r gets r/N of it); 0 = no warmup.",
  "server_momentum": "Server momentum of fedavgm.",
  "server_beta_1": "First-moment decay of fedadam and fedyogi.",
  "server_beta_2": "Second-moment decay of fedadam and fedyogi.",
  "server_epsilon": "Adaptivity tau of fedadam, fedyogi and fedadagrad (Reddi et al.).",
  "proximal_strength": "FedProx proximal strength mu.",
  "dp_noise_multiplier": "DP aggregators: Gaussian noise stddev / clip norm.",
  "dp_clip_norm": "DP aggregators: L2 clip of each client update (initial clip for dp_adaptive).",
  "dp_target_unclipped_quantile": "dp_adaptive: fraction of client updates left unclipped.",
  "dp_delta": "DP aggregators: the delta of the reported (epsilon, delta).",
  "compression_bits": "compression aggregator: bits per update coordinate.",
  "model": "gpt2, or char_lstm (TFF's Shakespeare LSTM, the reference model).",
  "rounds_per_eval": "Evaluate on held-out client data every this many rounds (and after the last).",
  "rounds_per_checkpoint": "Checkpoint every this many rounds (and after the last).",
  "clients_per_eval": "Test clients evaluated (a fixed sample from --seed); 0 = all.",
  "eval_batch_size": "Sequences per evaluation batch.",
  "seed": "Seed of the initial weights, client sampling and client shuffling.",
  "dataset": "shakespeare (embedded), text_dir, jsonl, tfds (a TensorFlow Datasets dataset prepared in "
  "--tfds_data_dir), tff_shakespeare or tff_stackoverflow (TFF's files in --tff_cache_dir). Never downloads.",
  "dataset_path": "Directory (text_dir) or file (jsonl) of your own corpus.",
  "client_field": "JSON Lines field or TFDS feature holding the client id.",
  "text_field": "JSON Lines field or TFDS feature holding the text.",
  "partition": "How examples are dealt into clients: natural (the corpus's own clients), iid (shuffled over "
  "--partition_clients) or dirichlet (each client's mix over --partition_label drawn from "
  "Dirichlet(--partition_alpha x global mix)).",
  "partition_clients": "Clients of --partition=iid or dirichlet.",
  "partition_alpha": "Dirichlet concentration of --partition=dirichlet: 0.1 = few labels a client, "
  "100 = near IID.",
  "partition_label": "The label a dirichlet partition skews and every partition reports: client, play "
  "(Shakespeare), directory (text_dir), or a JSON Lines field / TFDS feature.",
  "partition_size_skew": "Unequal client sizes for iid/dirichlet: power-law exponent (0 = equal, 1 = Zipf).",
  "tfds_name": "TFDS dataset (name or name/config) for --dataset=tfds.",
  "tfds_split": "TFDS split (slices such as train[:10%] work) for --dataset=tfds.",
  "tfds_data_dir": "Where the TFDS dataset is prepared; ~/tensorflow_datasets when empty.",
  "tff_cache_dir": "Directory holding TFF's shakespeare.sqlite / stackoverflow.sqlite "
  "(+ stackoverflow.word_count).",
  "tff_max_clients": "Read a seeded sample of this many training clients of a TFF dataset; 0 = all.",
  "tokenizer": "char (TFF Shakespeare's characters), bpe (GPT-2 byte-level BPE) or word (TFF Stack "
  "Overflow's word vocabulary).",
  "vocab_file": "GPT-2 vocab.json for --tokenizer=bpe; a word-count file for --tokenizer=word.",
  "merges_file": "GPT-2 merges.txt for --tokenizer=bpe.",
  "word_vocab_size": "Words kept by --tokenizer=word (TFF's Stack Overflow task: 10000).",
  "model_size": "GPT-2 shape: tiny, small (2x128), gpt2_124m, or LxD[hH][dP] (L layers of width D, H heads "
  "(default D/32), feed-forward 4D, dropout P in client training (default 0)), for example 4x128 or "
  "2x128h2d0.1.",
  "embedding_init_stddev": "Draw a fresh GPT-2's token and position embeddings from N(0, this^2); unset: "
  "0.05, which learns far faster at small widths than keras-nlp's own 0.01 and 0.02 (sized for width 768); "
  "0: keras-nlp's.",
  "attention_init_stddev": "Draw a fresh GPT-2's attention query and key kernels from N(0, this^2); unset: "
  "keras-nlp's 0.02. About 1/sqrt(width) (0.09 at width 128) leaves the bigram plateau earlier.",
  "preset": "Pretrained GPT-2 to start from: a keras-nlp or keras-hub preset directory, or a Hugging Face "
  "GPT-2 directory (config.json, model.safetensors or pytorch_model.bin, vocab.json, merges.txt); it "
  "brings its BPE tokenizer (--tokenizer=bpe). A keras-nlp hub name needs network.",
  "trainable": "Weights that train, travel and are aggregated: all; last_blocks:K (the last K blocks and "
  "the final norm); lora:R (rank-R adapters on attention query and value); bitfit (biases and layer "
  "norms). Other weights stay frozen on local disk, out of TFF's state.",
  "lora_alpha": "LoRA scale numerator: adapters are scaled by lora_alpha / R.",
  "max_concurrent_computation_calls": "Client computations TFF runs at once (1 for 124M).",
  "ignore_memory_estimate": "Start even when the run's estimated peak memory exceeds what is available.",
  "workers": "HOST:PORT,... of TFF workers (scripts/start_worker.sh) that run the rounds and evaluations; "
  "unset = one local worker. Unauthenticated: private networks only.",
  "export": "Write results/<name>/export (config, weights.npz, tokenizer, SavedModel) at the end.",
  "cache_dir": "Parsed-corpus cache; $TFF_GPT_CACHE or ~/.cache/tff_gpt when empty.",
}
# The flags that name a corpus and how it is dealt into clients (`load_corpus`).
CORPUS_FLAGS = (
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
  "cache_dir",
)
_OPTIONAL_INTS = ("max_elements_per_client", "clients_per_eval", "partition_clients", "tff_max_clients")
_ENUMS = {
  "client_optimizer": sorted(algorithms.optimizers.OPTIMIZERS),
  "algorithm": list(algorithms.ALGORITHMS),
  "aggregator": list(algorithms.AGGREGATORS),
  "client_lr_schedule": list(algorithms.SCHEDULES),
  "client_weighting": list(config_lib.CLIENT_WEIGHTINGS),
  "model": list(config_lib.MODELS),
  "partition": list(partitions.KINDS),
}


def define_experiment_flags(names=None, flag_values=flags.FLAGS) -> None:
  """Defines one flag per `ExperimentConfig` field (or those in `names`).

  A flag defined already (by another experiment script imported in the same
  process, as in tests) is left as it is.
  """
  for field in dataclasses.fields(config_lib.ExperimentConfig):
    name, default, help_ = field.name, getattr(_D, field.name), _HELP[field.name]
    if (names is not None and name not in names) or name in flag_values:
      continue
    kwargs = dict(flag_values=flag_values)
    if name in _OPTIONAL_INTS:
      flags.DEFINE_integer(name, default or 0, help_, **kwargs)
    elif name in _ENUMS:
      flags.DEFINE_enum(name, default, _ENUMS[name], help_, **kwargs)
    elif isinstance(default, bool):
      flags.DEFINE_bool(name, default, help_, **kwargs)
    elif isinstance(default, int):
      flags.DEFINE_integer(name, default, help_, **kwargs)
    elif isinstance(default, float) or "float" in str(field.type):
      flags.DEFINE_float(name, default, help_, **kwargs)
    else:
      flags.DEFINE_string(name, default, help_, **kwargs)


def config_from_flags(flag_values=flags.FLAGS) -> config_lib.ExperimentConfig:
  """The `ExperimentConfig` that the experiment flags in `flag_values` describe.

  Fields without a defined flag (entry points define only some) keep their defaults.
  """
  fields = (f.name for f in dataclasses.fields(config_lib.ExperimentConfig))
  values = {name: getattr(flag_values, name) for name in fields if name in flag_values}
  for name in _OPTIONAL_INTS:
    if name in values:
      values[name] = values[name] or None
  return config_lib.ExperimentConfig(**{k: (None if v == "" else v) for k, v in values.items()})


def load_corpus(flag_values=flags.FLAGS):
  """The corpus that `--dataset` and its flags name (loaded under TFF's context)."""
  from tff_gpt import runtime
  from tff_gpt.data import datasets

  config = config_from_flags(flag_values)
  with runtime.execution_context():
    return datasets.load_corpus(config.dataset, **config.corpus_kwargs())


def check_main_args(argv) -> None:
  """Common start of every entry point's main: no positional arguments, quiet logs."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TFF logs every traced computation at INFO.


# Exit status of an error in what the user gave (flags, files, settings), as argparse's.
USER_ERROR_EXIT = 2
RUN_FAILURE_EXIT = 1


def _user_error(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(USER_ERROR_EXIT)


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _user_error(f"{e}. Pass --helpfull to list every flag.")


def run(main) -> None:
  """`app.run(main)` where every error in the user's input is one line and exit status 2.

  A bad flag, an `app.UsageError`, or a `tff_gpt.errors.UserInputError`
  (corpus, tokenizer, checkpoint, resume mismatch, ...) prints
  `error: <what> <fix>` to stderr and exits 2; a `tff_gpt.errors.RunFailure`
  (a TFF worker died, the experiment directory is in use) prints the same way
  and exits 1; any other exception keeps its traceback.
  """

  def guarded(argv):
    try:
      return main(argv)
    except (errors.UserInputError, app.UsageError) as e:
      _user_error(str(e))
    except errors.RunFailure as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(RUN_FAILURE_EXIT)

  app.run(guarded, flags_parser=_parse_flags)
