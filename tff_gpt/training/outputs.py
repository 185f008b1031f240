"""Where a run writes: checkpoints, metrics CSV, TensorBoard and hyperparameters.

As google-research/federated's `training_utils.create_managers`:
`<root>/checkpoints/<name>/`, `<root>/results/<name>/`, `<root>/logdir/<name>/`.
"""

import asyncio
import contextlib
import csv
import dataclasses
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import threading

import tensorflow_federated as tff

from tff_gpt import errors, internals
from tff_gpt.training import cohorts

METRICS_FILE = "experiment.metrics.csv"
CLIENTS_FILE = "sampled_clients.csv"
HPARAMS_FILE = "hparams.csv"
RUN_CONFIG_FILE = "run_config.json"
SUMMARY_FILE = "summary.json"
FROZEN_WEIGHTS_DIR = "frozen_weights"
PRETRAINED_DIR = "pretrained"
LOCK_FILE = ".lock"
# An unreadable checkpoint is renamed with this prefix (kept for inspection, out of TFF's versions).
UNREADABLE_PREFIX = "unreadable_"
# What TFF's state and CSV managers write first, then rename: left behind only by a crash mid-write.
_PARTIAL_WRITE = re.compile(r"_temp\d{4}$")


class RunInUseError(errors.UserInputError):
  """Raised when another process is running the same experiment."""


class NoReadableCheckpointError(errors.RunFailure):
  """Raised when a run has checkpoints but none of them can be read."""


@dataclasses.dataclass
class RunDirs:
  checkpoints: str
  results: str
  logdir: str

  @classmethod
  def of(cls, root_output_dir: str, experiment_name: str) -> "RunDirs":
    """The directories of run `experiment_name`; nothing is created."""
    return cls(
      *(os.path.join(root_output_dir, sub, experiment_name) for sub in ("checkpoints", "results", "logdir"))
    )

  def create_all(self) -> "RunDirs":
    for path in dataclasses.astuple(self):
      os.makedirs(path, exist_ok=True)
    return self

  @property
  def metrics_csv(self) -> str:
    return os.path.join(self.results, METRICS_FILE)

  @property
  def clients_csv(self) -> str:
    return os.path.join(self.results, CLIENTS_FILE)

  @property
  def personalization_csv(self) -> str:
    """Per-client global and personalized held-out loss of the last evaluation (`personalization.py`)."""
    return os.path.join(self.results, "personalization.csv")

  @property
  def run_config(self) -> str:
    return os.path.join(self.checkpoints, RUN_CONFIG_FILE)

  @property
  def frozen_weights(self) -> str:
    """The frozen part of the model when only a subset trains (`tff_gpt.models.frozen`)."""
    return os.path.join(self.checkpoints, FROZEN_WEIGHTS_DIR)

  @property
  def pretrained(self) -> str:
    """`--preset` converted to keras-nlp's layout, when it came as keras-hub or Hugging Face."""
    return os.path.join(self.checkpoints, PRETRAINED_DIR)

  @property
  def summary(self) -> str:
    return os.path.join(self.results, SUMMARY_FILE)


def create_managers(dirs: RunDirs):
  """Returns `(program_state_manager, metrics_managers, clients_manager)` for a run.

  The CSV managers drop rows at or after a released round, so a resumed run
  that repeats rounds after its last checkpoint rewrites them once. The
  clients manager records each round's sampled client ids.
  """
  state_manager = tff.program.FileProgramStateManager(dirs.checkpoints, keep_total=3, keep_first=False)
  metrics_managers = [
    tff.program.CSVFileReleaseManager(
      dirs.metrics_csv, save_mode=tff.program.CSVSaveMode.WRITE, key_fieldname="round_num"
    ),
    tff.program.TensorBoardReleaseManager(dirs.logdir),
  ]
  clients_manager = tff.program.CSVFileReleaseManager(
    dirs.clients_csv, save_mode=tff.program.CSVSaveMode.WRITE, key_fieldname="round_num"
  )
  return state_manager, metrics_managers, clients_manager


class OutputLoop:
  """Runs the `tff.program` managers' coroutines, with Ctrl-C held back until each has finished.

  A KeyboardInterrupt raised while an asyncio event loop waits on its executor
  threads can be lost inside the loop, which then waits forever (seen when
  Ctrl-C arrived during a checkpoint save), and stopping a write half-way
  leaves a file the next run must not trust. While a coroutine runs here,
  SIGINT is only recorded; KeyboardInterrupt is raised as soon as it is done.
  """

  def __init__(self):
    self._loop = asyncio.new_event_loop()
    self._interrupted = False

  def _hold(self, signum, frame) -> None:
    del signum, frame
    self._interrupted = True

  def run(self, coroutine):
    """Runs `coroutine` to completion and returns its result."""
    previous = signal.getsignal(signal.SIGINT)
    # Only Python's own Ctrl-C handler is replaced: an ignored SIGINT, or a caller's handler, stays.
    hold = threading.current_thread() is threading.main_thread() and previous is signal.default_int_handler
    if hold:
      signal.signal(signal.SIGINT, self._hold)
    try:
      result = self._loop.run_until_complete(coroutine)
    finally:
      if hold:
        signal.signal(signal.SIGINT, previous)
    if self._interrupted:
      self._interrupted = False
      raise KeyboardInterrupt
    return result

  def close(self) -> None:
    self._loop.close()


@contextlib.contextmanager
def run_lock(dirs: RunDirs):
  """Holds the experiment's lock while the block runs; a second run on the same directories stops at once.

  An advisory `flock` on `<checkpoints>/.lock`: the kernel releases it when
  the holder ends however it ends (kill -9 too), so a stale lock never blocks
  a resume. (On network file systems without `flock`, it does not guard.)

  Raises:
    RunInUseError: Another process holds the lock; names its pid and host.
  """
  path = os.path.join(dirs.checkpoints, LOCK_FILE)
  with open(path, "a+") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      raise RunInUseError(
        f"{dirs.checkpoints} is in use by a run still going ({holder}). Wait for it to end or stop it, or "
        "use another --experiment_name."
      ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    try:
      yield
    finally:
      f.truncate(0)
      fcntl.flock(f, fcntl.LOCK_UN)


def remove_partial_writes(dirs: RunDirs) -> None:
  """Removes what a crash in the middle of a checkpoint or CSV write left (never a finished file)."""
  for directory in (dirs.checkpoints, dirs.results):
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
      if _PARTIAL_WRITE.search(name):
        path = os.path.join(directory, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


async def load_latest_readable(state_manager, structure, *, set_aside: bool = True):
  """`(state, version)` of the newest checkpoint that reads back; `(None, 0)` when there is none.

  A newer checkpoint that cannot be read (truncated or corrupted on disk) is
  skipped with a warning and, when `set_aside`, renamed `unreadable_...` so
  that the resumed run writes that round again.

  Raises:
    NoReadableCheckpointError: There are checkpoints, and none reads back.
  """
  versions = await state_manager.get_versions() or []
  unreadable = []
  for version in reversed(versions):
    try:
      state = await state_manager.load(version, structure)
    except Exception as e:  # noqa: BLE001 - TF reports damaged files with many error types.
      unreadable.append((version, e))
      continue
    for bad, error in unreadable:
      path = internals.checkpoint_path(state_manager, bad)
      logging.warning(
        "Checkpoint %s cannot be read (%s: %s); resuming from round %d instead.",
        path,
        type(error).__name__,
        str(error).splitlines()[0][:200] if str(error) else "",
        version,
      )
      if set_aside:
        os.replace(path, os.path.join(os.path.dirname(path), UNREADABLE_PREFIX + os.path.basename(path)))
    return state, version
  if unreadable:
    version, error = unreadable[0]
    directory = os.path.dirname(internals.checkpoint_path(state_manager, 0))
    raise NoReadableCheckpointError(
      f"none of the {len(versions)} checkpoints in {directory} "
      f"reads back (round {version}: {type(error).__name__}: {str(error).splitlines()[0][:200]}). Move them "
      "away to start over, or use another --experiment_name."
    )
  return None, 0


def write_hparams(dirs: RunDirs, hparams: dict) -> None:
  """Writes the run's hyperparameters as one-row `hparams.csv`."""
  write_rows(os.path.join(dirs.results, HPARAMS_FILE), [{k: hparams[k] for k in sorted(hparams)}])


def write_rows(path: str, rows: list[dict]) -> None:
  """Writes rows with the same keys as a CSV file (None as empty)."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def write_json(path: str, value: dict) -> None:
  """Writes `value` as JSON, durably: a crash leaves the old file or the new one, never half of one."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  try:
    os.fsync(directory)
  finally:
    os.close(directory)


def read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def read_csv(path: str) -> list[dict]:
  """A CSV file as a list of rows (strings); `[]` when it does not exist."""
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def read_metrics(dirs: RunDirs) -> list[dict]:
  """The metrics CSV as a list of rows (strings), oldest round first."""
  return read_csv(dirs.metrics_csv)


def seconds_spent(rows: list[dict]) -> float:
  """Seconds of training and evaluation over metrics rows."""
  return sum(float(r["round_seconds"]) + float(r.get("eval_seconds") or 0) for r in rows)


def read_sampled_clients(dirs: RunDirs) -> dict[int, list[str]]:
  """`{round_num: client ids}` as the run recorded them."""
  return {int(r["round_num"]): cohorts.parse_ids(r["client_ids"]) for r in read_csv(dirs.clients_csv)}
