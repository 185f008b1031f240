"""Where TFF computations run: set up with known knobs, shut down cleanly.

TFF runs computations in a separate C++ worker process. `set_up` installs a
context over a worker that the project starts and watches
(`workers.LocalWorker`): one that dies mid-round fails the round with
`WorkerDiedError` instead of being restarted silently, as TFF's own context
does. `shutdown` (also at exit, on error or Ctrl-C) drops the context and
stops the worker, killing one that ignores the stop; a watchdog process kills
the workers of a process that died without running any of that (kill -9, an
out-of-memory kill).
"""

import atexit
import contextlib
import ctypes
import gc
import logging
import os

# Set before TensorFlow starts its thread pools (the worker inherits them).
# They cut a round's time by 20-40% on 2 cores; callers may override them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")


def _limit_malloc_arenas(arenas: int) -> None:
  """glibc's `mallopt(M_ARENA_MAX, arenas)` for this process (a no-op without glibc)."""
  try:
    ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX.
  except (OSError, AttributeError):
    pass


# glibc gives threads that allocate at once arenas of their own (up to 8 per core). TensorFlow's, gRPC's
# and TFF's threads then spread the freed memory over many arenas, and the Python process grew by 56 MB
# over 1,000 rounds of the tiny model; with 2 arenas it stays flat, for about 4% of a round's time
# (BENCHMARKS.md s.8; MALLOC_ARENA_MAX=16 restores glibc's default). The worker reads
# the variable when it starts; this process, already started, is told through `mallopt`.
os.environ.setdefault("MALLOC_ARENA_MAX", "2")
_limit_malloc_arenas(int(os.environ["MALLOC_ARENA_MAX"]))

import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_federated.python.core.impl.context_stack import (  # noqa: E402
  context_stack_impl,  # noqa: E402
  set_default_context,  # noqa: E402
)

from tff_gpt import errors  # noqa: E402
from tff_gpt.algorithms import aggregators  # noqa: E402
from tff_gpt.runtime import contexts  # noqa: E402
from tff_gpt.runtime import workers as workers_lib  # noqa: E402
from tff_gpt.runtime.workers import WorkerDiedError  # noqa: E402, F401


class _DropKnownNoise(logging.Filter):
  """Drops log lines that every traced computation repeats and that need no action.

  Our inputs carry an explicit `padding_mask`, which is what keras-nlp asks
  for; the warning says the Keras mask is then ignored, which is intended.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "explicitly setting `padding_mask`" not in message and "Object was never used" not in message


logging.getLogger("absl").addFilter(_DropKnownNoise())
# TFF's secure aggregator builds asserts whose results TF reports as unused, at ERROR.
logging.getLogger("tensorflow").addFilter(_DropKnownNoise())

_worker: workers_lib.LocalWorker | None = None
_factory: contexts.WorkerExecutorFactory | None = None
# TFF's worker process grows by about 0.1-0.2 MB a round of the tiny model (BENCHMARKS.md s.8): the
# training loop replaces the local worker at the first checkpoint this many rounds after the last
# replacement, which bounds it. $TFF_GPT_REPLACE_WORKER_ROUNDS overrides (a huge value: never).
REPLACE_WORKER_ROUNDS = int(os.environ.get("TFF_GPT_REPLACE_WORKER_ROUNDS", "100"))


def shutdown() -> None:
  """Drops the default context and stops its worker (killed if it does not stop in time)."""
  global _worker, _factory
  try:
    # Any worker started by TFF's own contexts first: dropping such a context makes TFF send its worker
    # SIGINT and wait without a bound, forever when SIGINT is ignored (a `cmd &` in a shell script).
    workers_lib.stop_children()
  except psutil.Error:
    pass
  set_default_context.set_no_default_context()
  _factory = None
  if _worker is not None:
    _worker.stop()
    _worker = None
  gc.collect()


atexit.register(shutdown)


def replace_local_worker() -> bool:
  """Replaces the local worker with a fresh process, between computations; False with remote workers.

  Everything a computation needs travels with each call, so results do not
  change; the new worker starts with the next computation.
  """
  if _worker is None or _factory is None:
    return False
  _factory.close_all()  # Disposes of the executors on the old worker while it still answers.
  _worker.replace()
  return True


def local_worker() -> "workers_lib.LocalWorker | None":
  """The local context's worker (None with `--workers`, or before `set_up`)."""
  return _worker


def largest_first(client_datasets: list) -> list:
  """The clients' datasets ordered by number of batches, largest first (ties keep their order).

  TFF's worker starts a round's client computations in the order given,
  `max_concurrent_computation_calls` at a time; starting the largest first
  keeps a large client from running alone at the end of the round (LPT
  scheduling; BENCHMARKS.md s.1). The weighted mean does not depend on the
  order, up to float rounding. A dataset of unknown length counts as empty.
  """
  return sorted(client_datasets, key=lambda dataset: -max(int(dataset.cardinality()), 0))


def parse_workers(spec: str) -> list[str]:
  """`"HOST:PORT,HOST:PORT"` -> addresses; raises `UserInputError` naming a malformed one."""
  addresses = [a.strip() for a in spec.split(",") if a.strip()]
  for address in addresses:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise errors.UserInputError(f"--workers: {address!r} is not HOST:PORT (e.g. 10.0.0.2:8000).")
  if not addresses:
    raise errors.UserInputError("--workers is empty: give HOST:PORT,HOST:PORT,... or leave it unset.")
  return addresses


def set_up(
  *,
  max_concurrent_computation_calls: int = 2,
  secure_aggregation: bool = False,
  workers: str | None = None,
  optimize_for_cpu: bool | None = None,
) -> None:
  """Installs the context that runs TFF computations.

  Args:
    max_concurrent_computation_calls: How many client computations the local
      worker runs at once. Each parallel client holds a copy of the weights,
      so use 1 for models near GPT-2 124M. (Remote workers take theirs at
      start: `scripts/start_worker.sh --max_concurrent_computation_calls`.)
    secure_aggregation: Lower secure sums (`tff.learning.secure_aggregator`)
      to plain sums, as TFF's test context does, so that they run in
      simulation.
    workers: `HOST:PORT,...` of running TFF workers (`scripts/start_worker.sh`);
      None runs one local worker that this process starts and stops. With
      several, each computation's clients are split across them.
    optimize_for_cpu: Compile with `compilation.compile_for_cpu` (Grappler's
      CPU rewrites; rounds of the small GPT-2 5-14% faster here,
      BENCHMARKS.md s.1) or with TFF's native compiler. None: for the local
      worker when this machine has no GPU, never for remote workers.

  Raises:
    errors.UserInputError: A malformed address, or secure aggregation with
      several workers.
    WorkerDiedError: A worker does not answer (names it).
  """
  global _worker, _factory
  workers_ = [workers_lib.RemoteWorker(a) for a in parse_workers(workers)] if workers is not None else None
  if workers_ and len(workers_) > 1 and secure_aggregation:
    raise errors.UserInputError(
      "secure aggregation runs on one worker only here (TFF lowers it to plain sums in simulation); use "
      "one --workers address or another --aggregator."
    )
  workers_lib.start_watchdog()
  shutdown()
  for worker in workers_ or []:
    worker.check(during_run=False)  # Before round 1, naming the worker.
  if optimize_for_cpu is None:
    optimize_for_cpu = workers_ is None and not tf.config.list_physical_devices("GPU")
  if workers_ is None:
    _worker = workers_lib.LocalWorker(max_concurrent_computation_calls=max_concurrent_computation_calls)
    _factory = contexts.WorkerExecutorFactory(_worker)
    context = contexts.worker_context(
      _worker, secure_aggregation=secure_aggregation, factory=_factory, optimize_for_cpu=optimize_for_cpu
    )
  elif len(workers_) == 1:
    context = contexts.worker_context(
      workers_[0], secure_aggregation=secure_aggregation, optimize_for_cpu=optimize_for_cpu
    )
  else:
    context = contexts.workers_context(workers_)
  context_stack_impl.context_stack.set_default_context(context)


@contextlib.contextmanager
def execution_context(**set_up_args):
  """Context manager: `set_up(**set_up_args)`, then `shutdown` however the block ends."""
  set_up(**set_up_args)
  try:
    yield
  finally:
    shutdown()


def context_args(config) -> dict:
  """`execution_context` arguments for an `ExperimentConfig`."""
  return dict(
    max_concurrent_computation_calls=config.max_concurrent_computation_calls,
    secure_aggregation=aggregators.AGGREGATORS[config.aggregator].secure,
    workers=config.workers,
  )
