"""The configurations a comparison runs: `NAME` or `NAME: --flag=value ...`, each with its grid points.

A bare NAME is an algorithm (`fedyogi`), an algorithm and an aggregator
(`fedavg_unweighted+dp_fixed`) or `char_lstm`. After a colon come settings
written as flags (`--client_optimizer=sgd --noexport`, `--flagfile=FILE`), and
`--client_learning_rate=A,B,...` / `--server_learning_rate=A,B,...` make a
grid. Values are typed by the settings' declarations, with no absl flags, so
that studies and notebooks parse configurations as the comparison script does.
"""

import dataclasses
import itertools
import re
import shlex
from collections.abc import Sequence

from tff_gpt import algorithms, errors, settings
from tff_gpt.models import registry as models_registry
from tff_gpt.training import config as config_lib

_GRID = re.compile(r"--(client|server)_learning_rate=(.+,.+)")
_FLAG = re.compile(r"--(no)?(\w+)(?:=(.*))?", re.DOTALL)
_FIELDS = {f.name: f for f in dataclasses.fields(config_lib.ExperimentConfig)}


@dataclasses.dataclass
class Configuration:
  """One compared configuration: a name, its settings, and optional learning-rate grids.

  Attributes:
    name: Label in the report; letters, digits, '_', '-' and '.'.
    overrides: `ExperimentConfig` fields that differ from the base.
    client_learning_rates: Grid of client learning rates, or empty for the
      base (or overridden) value.
    server_learning_rates: Grid of server learning rates, or empty for the
      algorithm's default (or overridden) value.
  """

  name: str
  overrides: dict = dataclasses.field(default_factory=dict)
  client_learning_rates: list[float] = dataclasses.field(default_factory=list)
  server_learning_rates: list[float] = dataclasses.field(default_factory=list)


class ConfigurationError(errors.UserInputError):
  """A `--configuration` that cannot be parsed; names it and the fix."""


def parse_configuration(spec: str) -> Configuration:
  """`NAME` or `NAME: FLAGS` -> a `Configuration`; raises `ConfigurationError` naming the spec."""
  name, colon, rest = (part.strip() for part in spec.partition(":"))
  label = name.replace("+", "-")
  if not colon:
    return Configuration(label, _shorthand(name))
  grids, overrides = {}, {}
  try:
    for arg in _expand(shlex.split(rest)):
      match = _GRID.fullmatch(arg)
      if match:
        grids[match.group(1)] = [float(x) for x in match.group(2).split(",")]
      else:
        overrides.update([_setting(arg)])
  except (OSError, ValueError) as e:
    raise ConfigurationError(f"--configuration={spec!r}: {e}") from None
  return Configuration(label, overrides, grids.get("client", []), grids.get("server", []))


def _shorthand(name: str) -> dict:
  if name in models_registry.MODELS and name != "gpt2":
    return {"model": name}
  algorithm, _, aggregator = name.partition("+")
  if algorithm not in algorithms.ALGORITHMS or (aggregator and aggregator not in algorithms.AGGREGATORS):
    raise ConfigurationError(
      f"--configuration={name!r}: a bare name must be an algorithm ({', '.join(algorithms.ALGORITHMS)}), "
      f"algorithm+aggregator ({', '.join(algorithms.AGGREGATORS)}) or char_lstm; "
      "write 'NAME: --flag=value ...' for anything else."
    )
  overrides = {"algorithm": algorithm}
  if aggregator:
    overrides["aggregator"] = aggregator
    if not algorithms.AGGREGATORS[aggregator].weighted:
      overrides["client_weighting"] = "uniform"
  return overrides


def _expand(args: list[str]) -> list[str]:
  """`--flagfile=F` replaced by F's flags, recursively: one a line; '#' and '//' lines are comments."""
  expanded = []
  for arg in args:
    if arg.startswith("--flagfile="):
      with open(arg.partition("=")[2]) as f:
        lines = [line.strip() for line in f]
      expanded += _expand([line for line in lines if line and not line.startswith(("#", "//"))])
    else:
      expanded.append(arg)
  return expanded


# experiments/compare_algorithms.py's own flags, beside the experiment settings and --configuration.
COMPARISON_FLAGS = ("target_loss", "seeds", "select_on", "reference", "parallel_runs")


def read_comparison(flagfile: str, extra: tuple[str, ...] = ()) -> tuple:
  """`(base config, configurations, comparison_name)` of a comparison flagfile and `extra` flags.

  As `experiments.compare_algorithms --flagfile=F EXTRA` reads them: every
  `--configuration` in order, `--comparison_name` (default "compare"), and
  the experiment settings of the base; the flags of the comparison itself
  (`COMPARISON_FLAGS`: the report's target, seeds, selection, reference,
  parallel runs) are ignored here.
  """
  base, configurations, name = {}, [], "compare"
  for arg in _expand([f"--flagfile={flagfile}", *extra]):
    key, _, value = arg.partition("=")
    if key == "--configuration":
      configurations.append(parse_configuration(value))
    elif key == "--comparison_name":
      name = value
    elif key.removeprefix("--") not in COMPARISON_FLAGS:
      try:
        base.update([_setting(arg)])
      except ValueError as e:
        raise ConfigurationError(f"{flagfile}: {e}") from None
  return config_lib.ExperimentConfig(**base), configurations, name


def _setting(arg: str) -> tuple[str, object]:
  """`--name=value`, `--name` or `--noname` -> (field, typed value)."""
  match = _FLAG.fullmatch(arg)
  if match is None:
    raise ValueError(f"{arg!r} is not a flag; write each setting as --flag=value")
  negated, name, value = match.groups()
  if negated and name not in _FIELDS:
    negated, name = None, "no" + name
  if name not in _FIELDS:
    raise ValueError(f"--{name} is not an experiment flag (python -m experiments.run_experiment --helpfull)")
  field = _FIELDS[name]
  if field.type is bool:
    if value is None:
      return name, not negated
    if value.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"--{name} takes true or false, not {value!r}")
    return name, value.lower() in ("true", "1")
  if value is None:
    raise ValueError(f"--{name} needs a value: --{name}=VALUE")
  return name, _typed(field, value)


def _typed(field: dataclasses.Field, value: str):
  if value == "" and settings.is_optional(field):
    return None
  kind = next((t for t in (bool, int, float) if field.type in (t, t | None)), str)
  try:
    typed = kind(value)
  except ValueError:
    raise ValueError(f"--{field.name} takes a {kind.__name__}, not {value!r}") from None
  choices = field.metadata["choices"]
  if choices and typed not in choices:
    raise ValueError(f"--{field.name} must be one of {list(choices)}, not {value!r}")
  return None if kind is int and settings.is_optional(field) and typed == 0 else typed


def _fmt(x: float) -> str:
  return f"{x:g}"


def grid_configs(
  base: config_lib.ExperimentConfig, configuration: Configuration, root: str, seeds: Sequence[int] = ()
):
  """The `ExperimentConfig` of each grid point of `configuration` and each seed, validated.

  With more than one seed, run names end in `_s<seed>`; a grid point's runs differ in their seed only.
  """
  values = dataclasses.asdict(base) | configuration.overrides | {"root_output_dir": root}
  client_lrs = configuration.client_learning_rates or [values["client_learning_rate"]]
  server_lrs = configuration.server_learning_rates or [values["server_learning_rate"]]
  grid = len(client_lrs) * len(server_lrs) > 1
  configs = []
  for client_lr, server_lr in itertools.product(client_lrs, server_lrs):
    name = configuration.name
    if grid:
      name += f"_clr{_fmt(client_lr)}" + (f"_slr{_fmt(server_lr)}" if server_lr is not None else "")
    for seed in seeds or [values["seed"]]:
      point = {"client_learning_rate": client_lr, "server_learning_rate": server_lr, "seed": seed}
      config = config_lib.ExperimentConfig(
        **values | point | {"experiment_name": name + (f"_s{seed}" if len(seeds) > 1 else "")}
      )
      try:
        config.validate()
      except ValueError as e:
        raise errors.UserInputError(f"Configuration {configuration.name!r}: {e}") from None
      configs.append(config)
  return configs
