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
import gc
import logging
import os

import psutil
import tensorflow as tf

from tff_gpt import errors, internals
from tff_gpt.internals import context_stack_impl, set_default_context
from tff_gpt.runtime import contexts, host
from tff_gpt.runtime import workers as workers_lib
from tff_gpt.runtime.workers import WorkerDiedError  # noqa: F401

_worker: workers_lib.LocalWorker | None = None
_factory: contexts.WorkerExecutorFactory | None = None
# TFF's worker process grows by about 0.1-0.2 MB a round of the tiny model (BENCHMARKS.md, "Reliability"): the
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


_exit_hook_installed = False


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
  scheduling; docs/round_speedups.md). The weighted mean does not depend on the
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
  intra_op_threads: int | None = None,
  inter_op_threads: int | None = None,
  malloc_arenas: int | None = None,
  round_parts: int = 1,
) -> None:
  """Sizes this process for the host and installs the context that runs TFF computations.

  Importing `tff_gpt` changes nothing in the process; this call does: thread
  pools and malloc arenas (`host.configure`), log filters, an exit hook.

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
      docs/round_speedups.md) or with TFF's native compiler. None: for the local
      worker when this machine has no GPU, never for remote workers.
    round_parts: Run each computation's clients in this many parts per
      worker, one after another, merging their aggregates: the worker holds
      one part's client results at a time (a cohort of 1,000 clients needs
      a tenth of the memory in 10 parts). 1: all at once.
    intra_op_threads, inter_op_threads, malloc_arenas: Override
      `host.for_host`'s sizing and the environment (None: do not override).

  Raises:
    errors.UserInputError: A malformed address, or secure aggregation with
      several workers or parts.
    WorkerDiedError: A worker does not answer (names it).
  """
  workers_ = [workers_lib.RemoteWorker(a) for a in parse_workers(workers)] if workers is not None else None
  if workers_ and len(workers_) > 1 and secure_aggregation:
    raise errors.UserInputError(
      "secure aggregation runs on one worker only here (TFF lowers it to plain sums in simulation); use "
      "one --workers address or another --aggregator."
    )
  if round_parts > 1 and secure_aggregation:
    raise errors.UserInputError(
      "secure aggregation sums a whole round at once here: use --round_parts=1 or another --aggregator."
    )
  host.configure(
    intra_op_threads=intra_op_threads,
    inter_op_threads=inter_op_threads,
    malloc_arenas=malloc_arenas,
    concurrent_calls=max_concurrent_computation_calls,
  )
  _install_exit_hook()
  workers_lib.start_watchdog()
  shutdown()
  for worker in workers_ or []:
    worker.check(during_run=False)  # Before round 1, naming the worker.
  if optimize_for_cpu is None:
    optimize_for_cpu = workers_ is None and not tf.config.list_physical_devices("GPU")
  context = _context(
    workers_, max_concurrent_computation_calls, secure_aggregation, optimize_for_cpu, round_parts
  )
  context_stack_impl.context_stack.set_default_context(context)


def _install_exit_hook() -> None:
  """Once per process: `shutdown` at exit, and a warning if the private APIs' pins moved."""
  global _exit_hook_installed
  if not _exit_hook_installed:
    atexit.register(shutdown)
    _exit_hook_installed = True
    for moved in internals.check_versions():
      logging.warning("%s: tff_gpt.internals' private uses may no longer hold.", moved)


def _context(
  workers_, max_concurrent_computation_calls: int, secure_aggregation: bool, optimize_for_cpu, round_parts
):
  """The execution context over a local worker this process starts, one remote worker, or several."""
  global _worker, _factory
  if workers_ is None:
    _worker = workers_lib.LocalWorker(max_concurrent_computation_calls=max_concurrent_computation_calls)
    _factory = contexts.WorkerExecutorFactory(_worker)
    if round_parts > 1:
      return contexts.workers_context(
        [_worker], parts=round_parts, factories=[_factory], optimize_for_cpu=optimize_for_cpu
      )
    return contexts.worker_context(
      _worker, secure_aggregation=secure_aggregation, factory=_factory, optimize_for_cpu=optimize_for_cpu
    )
  if len(workers_) == 1 and round_parts == 1:
    return contexts.worker_context(
      workers_[0], secure_aggregation=secure_aggregation, optimize_for_cpu=optimize_for_cpu
    )
  return contexts.workers_context(workers_, parts=round_parts)


@contextlib.contextmanager
def execution_context(**set_up_args):
  """Context manager: `set_up(**set_up_args)`, then `shutdown` however the block ends."""
  set_up(**set_up_args)
  try:
    yield
  finally:
    shutdown()
