"""Process settings sized from the host: TF thread pools, glibc malloc arenas, log filters.

Nothing here runs at import. `configure` is called by `runtime.set_up` (or by
a benchmark before it builds anything) and sets, in order of precedence, what
the caller passes, what the environment already says, or what `for_host`
sizes from this machine. It writes the environment variables that TFF's worker
process reads when it starts (it inherits them), and tells this process's
TensorFlow and glibc directly.

On the 2-core development machine `for_host` gives 1 intra-op and 2 inter-op
threads and 2 malloc arenas: a round of the small GPT-2 20-40% faster than
TensorFlow's defaults, and a Python process that stays flat over 1,000 rounds
(BENCHMARKS.md, "Reliability"). Larger hosts get `cores // client computations
at once` intra-op threads; a host where TensorFlow sees a GPU keeps TensorFlow's
own thread defaults. Only the 2-core figures are measured.
"""

import ctypes
import dataclasses
import logging
import os

import tensorflow as tf

INTRA_OP = "TF_NUM_INTRAOP_THREADS"
INTER_OP = "TF_NUM_INTEROP_THREADS"
ARENAS = "MALLOC_ARENA_MAX"
LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


@dataclasses.dataclass(frozen=True)
class ProcessSettings:
  """Thread pools and allocator arenas; None leaves TensorFlow's or glibc's default."""

  intra_op_threads: int | None = None
  inter_op_threads: int | None = None
  malloc_arenas: int | None = None


def for_host(
  *, cores: int | None = None, gpu: bool | None = None, concurrent_calls: int = 2
) -> ProcessSettings:
  """What this host gets when neither the caller nor the environment says.

  Args:
    cores: CPU cores; None: the ones this process may run on.
    gpu: Whether TensorFlow sees a GPU; None: asks TensorFlow.
    concurrent_calls: Client computations the local worker runs at once
      (nonpositive: no limit, taken as one per core).
  """
  if cores is None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  if gpu is None:
    gpu = bool(tf.config.list_physical_devices("GPU"))
  if gpu:
    return ProcessSettings(malloc_arenas=2)
  calls = concurrent_calls if concurrent_calls > 0 else cores
  return ProcessSettings(intra_op_threads=max(1, cores // calls), inter_op_threads=2, malloc_arenas=2)


# What `configure` wrote, so that a later call (another `set_up`) may change it again: the environment
# wins over host sizing only when the user set it.
_written: dict[str, str] = {}


def _choose(variable: str, requested: int | None, sized: int | None) -> int | None:
  if requested:
    return requested
  present = os.environ.get(variable)
  if present and _written.get(variable) != present:
    return int(present)
  return sized


def configure(
  *,
  intra_op_threads: int | None = None,
  inter_op_threads: int | None = None,
  malloc_arenas: int | None = None,
  concurrent_calls: int = 2,
) -> ProcessSettings:
  """Applies the process settings; returns what was applied.

  Each argument, when given (not None or 0), wins over the environment
  (`TF_NUM_INTRAOP_THREADS`, `TF_NUM_INTEROP_THREADS`, `MALLOC_ARENA_MAX`),
  which wins over `for_host(concurrent_calls=...)`. TensorFlow's pools in
  this process take the thread counts only before its first operation;
  TFF's worker takes them whenever it starts.
  """
  sized = for_host(concurrent_calls=concurrent_calls)
  settings = ProcessSettings(
    intra_op_threads=_choose(INTRA_OP, intra_op_threads, sized.intra_op_threads),
    inter_op_threads=_choose(INTER_OP, inter_op_threads, sized.inter_op_threads),
    malloc_arenas=_choose(ARENAS, malloc_arenas, sized.malloc_arenas),
  )
  for variable, value in (
    (INTRA_OP, settings.intra_op_threads),
    (INTER_OP, settings.inter_op_threads),
    (ARENAS, settings.malloc_arenas),
  ):
    if value is not None and os.environ.get(variable) != str(value):
      os.environ[variable] = _written[variable] = str(value)
  if LOG_LEVEL not in os.environ:
    os.environ[LOG_LEVEL] = _written[LOG_LEVEL] = "2"  # The worker's C++ logs: warnings and errors only.
  _set_tf_threads(settings)
  if settings.malloc_arenas is not None:
    _limit_malloc_arenas(settings.malloc_arenas)
  install_log_filters()
  return settings


def _set_tf_threads(settings: ProcessSettings) -> None:
  threading = tf.config.threading
  for value, setter in (
    (settings.intra_op_threads, threading.set_intra_op_parallelism_threads),
    (settings.inter_op_threads, threading.set_inter_op_parallelism_threads),
  ):
    if value is not None:
      try:
        setter(value)
      except RuntimeError:  # TensorFlow has run an operation already: its pools are fixed.
        logging.warning(
          "TensorFlow's thread pools were fixed before tff_gpt.runtime sized them (an operation ran first): "
          "%s(%d) not applied; size the process before running TensorFlow, or set %s / %s.",
          setter.__name__,
          value,
          INTRA_OP,
          INTER_OP,
        )


def _limit_malloc_arenas(arenas: int) -> None:
  """glibc's `mallopt(M_ARENA_MAX, arenas)` for this process (a no-op without glibc).

  glibc gives threads that allocate at once arenas of their own (up to 8 per
  core). TensorFlow's, gRPC's and TFF's threads then spread the freed memory
  over many arenas, and the Python process grew by 56 MB over 1,000 rounds of
  the tiny model; with 2 arenas it stays flat, for about 4% of a round's time
  (BENCHMARKS.md, "Reliability"). `MALLOC_ARENA_MAX=16` restores glibc's default.
  """
  try:
    ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX.
  except (OSError, AttributeError):
    pass


class _DropKnownNoise(logging.Filter):
  """Drops log lines that every traced computation repeats and that need no action.

  Our inputs carry an explicit `padding_mask`, which is what keras-nlp asks
  for; the warning says the Keras mask is then ignored, which is intended.
  TFF's secure aggregator builds asserts whose results TF reports as unused.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "explicitly setting `padding_mask`" not in message and "Object was never used" not in message


_FILTER = _DropKnownNoise()


def install_log_filters() -> None:
  """Adds `_DropKnownNoise` to absl's and TensorFlow's loggers (once)."""
  for name in ("absl", "tensorflow"):
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
      logger.addFilter(_FILTER)
