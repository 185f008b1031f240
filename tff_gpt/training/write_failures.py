"""A write that fails (a full disk, a read-only or vanished directory) ends a run with one line.

TensorFlow and TFF's program managers report a full disk as a long traceback
of their own error types. `guard` turns any `OSError` or TensorFlow error
raised while the block writes into an `OutputWriteError` that names what was
written, where, the free space there, and the fix; what was written before
(metrics rows, checkpoints) stays, and the same command resumes.
"""

import contextlib
import errno
import os
import shutil

import tensorflow as tf

from tff_gpt import errors


class OutputWriteError(errors.RunFailure):
  """A run's output could not be written; the message names the path, the free space and the fix."""


def _free_space(path: str) -> str:
  directory = os.path.abspath(path)
  while not os.path.exists(directory) and os.path.dirname(directory) != directory:
    directory = os.path.dirname(directory)
  try:
    return f"{shutil.disk_usage(directory).free / 2**20:,.1f} MB free there"
  except OSError:
    return "free space unknown"


def _reason(error: Exception) -> str:
  text = str(error)
  if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in text:
    return "no space left on the device"
  first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
  return first[:200]


@contextlib.contextmanager
def guard(what: str, path: str, *, resume_after: int | None = None):
  """Runs the block; a failed write in it raises one `OutputWriteError` (its cause kept for the log).

  Args:
    what: What the block writes, e.g. "the checkpoint of round 40".
    path: Where it writes.
    resume_after: The round the same command would resume after (None: not said).
  """
  try:
    yield
  except (OSError, tf.errors.OpError) as e:
    again = "run the same command again"
    if resume_after is not None:
      again += f": it resumes after round {resume_after}" if resume_after else ": it starts the run over"
    raise OutputWriteError(
      f"could not write {what} to {path}: {_reason(e)} ({_free_space(path)}). Free some space there, then "
      f"{again}."
    ) from e
