"""absl flags of federated GPT-2 runs, named as google-research/federated's."""

import atexit
import dataclasses
import os
import sys
import tempfile

from absl import app, flags, logging

from tff_gpt import errors, settings
from tff_gpt.training import config as config_lib


def fields_of(group: type | None = None) -> list:
  """The experiment settings (of one `config_lib.GROUPS` group, or all) as dataclass fields."""
  return dataclasses.fields(group or config_lib.ExperimentConfig)


def define_experiment_flags(*groups: type, names=(), flag_values=flags.FLAGS) -> None:
  """Defines one flag per setting of the given groups and of `names` (every setting when neither is given).

  Each flag takes its type, default, help and choices from the setting's
  declaration (`tff_gpt.settings.setting`). A flag defined already (by
  another experiment script imported in the same process, as in tests) is
  left as it is.
  """
  wanted = {f.name for group in groups for f in fields_of(group)} | set(names)
  for field in fields_of():
    if (wanted and field.name not in wanted) or field.name in flag_values:
      continue
    _define(field, flag_values)


def define_settings_flags(group: type, flag_values=flags.FLAGS) -> None:
  """One flag per `setting(...)` field of `group`, a settings dataclass outside `ExperimentConfig` (e.g.
  `central.pretraining.PretrainSettings`); a flag defined already is left as it is."""
  for field in dataclasses.fields(group):
    if field.name not in flag_values:
      _define(field, flag_values)


def values_from_flags(group: type, flag_values=flags.FLAGS) -> dict:
  """`{field: value}` of `group`'s settings from their flags (an unset optional int is None)."""
  return {f.name: _value(f, getattr(flag_values, f.name)) for f in dataclasses.fields(group)}


def _value(field, value):
  optional_int = settings.is_optional(field) and int in field.type.__args__
  return None if value == "" or (optional_int and not value) else value


def _define(field, flag_values) -> None:
  """One absl flag of the type, default, help and choices the setting declares (None ints: 0)."""
  name, default, help_, choices = field.name, field.default, field.metadata["help"], field.metadata["choices"]
  kwargs = dict(flag_values=flag_values)
  if choices:
    flags.DEFINE_enum(name, default, list(choices), help_, **kwargs)
  elif isinstance(default, bool):
    flags.DEFINE_bool(name, default, help_, **kwargs)
  elif field.type in (int, int | None):
    flags.DEFINE_integer(name, 0 if default is None else default, help_, **kwargs)
  elif field.type in (float, float | None):
    flags.DEFINE_float(name, default, help_, **kwargs)
  else:
    flags.DEFINE_string(name, default, help_, **kwargs)


def config_from_flags(flag_values=flags.FLAGS) -> config_lib.ExperimentConfig:
  """The `ExperimentConfig` that the experiment flags in `flag_values` describe.

  Fields without a defined flag (entry points define only some) keep their defaults.
  """
  values = {f.name: _value(f, getattr(flag_values, f.name)) for f in fields_of() if f.name in flag_values}
  return config_lib.ExperimentConfig(**values)


def load_corpus(flag_values=flags.FLAGS):
  """The corpus that `--dataset` and its flags name (loaded under TFF's context)."""
  from tff_gpt import runtime

  config = config_from_flags(flag_values)
  with runtime.execution_context():
    return config.load_corpus()


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


def guard(main):
  """`main` where an error in the user's input is one line and exit status 2 (see `run`)."""

  def guarded(argv):
    try:
      return main(argv)
    except (errors.UserInputError, app.UsageError) as e:
      _user_error(str(e))
    except errors.RunFailure as e:
      from tff_gpt.runtime import quiet_exit

      # TFF's contexts still hold the failed round's tasks: their teardown goes to a file, not the terminal.
      quiet_exit.route_teardown_noise(os.path.join(tempfile.gettempdir(), f"tff_gpt-{os.getpid()}-exit.log"))
      print(f"error: {e}", file=sys.stderr)
      sys.exit(RUN_FAILURE_EXIT)

  return guarded


def parse_flags(argv):
  """absl's flag parsing, where a bad flag is one line and exit status 2; returns the other arguments."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _user_error(f"{e}. Pass --helpfull to list every flag.")


def run(main) -> None:
  """`app.run(main)` where every error in the user's input is one line and exit status 2.

  A bad flag, an `app.UsageError`, or a `tff_gpt.errors.UserInputError`
  (corpus, tokenizer, checkpoint, resume mismatch, ...) prints
  `error: <what> <fix>` to stderr and exits 2; a `tff_gpt.errors.RunFailure`
  (a TFF worker died, the disk filled, the model diverged) prints the same way
  and exits 1; any other exception keeps its traceback. At exit, however it
  comes, TFF's contexts are dropped and the worker stopped (`runtime.shutdown`).
  """
  from tff_gpt import runtime

  # Also before any `set_up`: TFF installs a context when imported, which prints a traceback if it is
  # only torn down with the interpreter.
  atexit.register(runtime.shutdown)
  app.run(guard(main), flags_parser=parse_flags)
