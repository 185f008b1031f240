"""Declaring a setting once: its default, help text, accepted values and whether a resume must match.

Each layer declares the settings it reads as fields of a small dataclass
(`data.settings`, `models.settings`, `algorithms.settings`,
`training.config`); `training.config.ExperimentConfig` combines them. Flags,
`--help`, the resume check and range checks are derived from the fields'
metadata (`setting(...)`), so a setting's name stands only in its declaration
and where it is used.
"""

import dataclasses
import types
from collections.abc import Callable, Iterable
from typing import Any

from tff_gpt import errors


class ConfigError(errors.UserInputError):
  """A setting out of range or inconsistent with another; names the flag."""


@dataclasses.dataclass(frozen=True)
class Check:
  """A range every value of a setting must be in (None passes when the default is None)."""

  accepts: Callable[[Any], bool]
  requirement: str  # Completes "--name ...", e.g. "must be >= 1".


AT_LEAST_0 = Check(lambda v: v >= 0, "must be >= 0")
AT_LEAST_1 = Check(lambda v: v >= 1, "must be >= 1")
POSITIVE = Check(lambda v: v > 0, "must be > 0")
FRACTION = Check(lambda v: 0 <= v < 1, "must be in [0, 1)")


def setting(
  default: Any,
  help: str,  # noqa: A002 (absl's name for it)
  *,
  resume: bool = True,
  choices: Iterable[str] | None = None,
  check: Check | None = None,
) -> Any:
  """A dataclass field of one setting.

  Args:
    default: Its value when not given; None means "unset" (a flag's 0 or "").
    help: The flag's help text.
    resume: Whether a run resumed from its directory must have the same value.
    choices: The values accepted (the flag becomes an enum).
    check: A range the value must be in, checked before any round runs.
  """
  metadata = dict(help=help, resume=resume, choices=tuple(choices) if choices else None, check=check)
  return dataclasses.field(default=default, metadata=metadata)


def is_optional(field: dataclasses.Field) -> bool:
  """Whether the field may be None (`int | None` and the like)."""
  return isinstance(field.type, types.UnionType) and type(None) in field.type.__args__


def check_declared(values, group: type) -> None:
  """Raises `ConfigError` for the first field of `group` outside its declared choices or range."""
  for field in dataclasses.fields(group):
    value = getattr(values, field.name)
    if value is None and is_optional(field):
      continue
    choices, check = field.metadata.get("choices"), field.metadata.get("check")
    if choices:
      require(value in choices, field.name, f"must be one of {list(choices)}")
    if check:
      require(check.accepts(value), field.name, check.requirement)


def resume_keys(cls: type) -> tuple[str, ...]:
  """The fields of `cls` that must match when a run resumes."""
  return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resume", True))


def require(ok: bool, name: str, message: str) -> None:
  """Raises `ConfigError("--name message.")` unless `ok`."""
  if not ok:
    raise ConfigError(f"--{name} {message}.")
