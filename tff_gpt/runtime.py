"""TFF's execution context: set it up with known knobs, and shut it down cleanly.

TFF runs computations in a separate C++ worker process. Left to interpreter
exit, that worker is not always shut down and keeps stdout open, so
`python run.py | tail` hangs. `execution_context()` sets the local C++
context up and drops it (which stops the worker) on exit, error or Ctrl-C;
a worker that ignores the stop is killed. When this process dies without
running any of that (kill -9, an out-of-memory kill), a small watchdog
process started by `set_up` kills the workers it left behind.
"""

import atexit
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import time

import psutil

# Set before TensorFlow starts its thread pools (the worker inherits them).
# They cut a round's time by 20-40% on 2 cores; callers may override them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import tensorflow_federated as tff  # noqa: E402
from tensorflow_federated.python.core.impl.context_stack import set_default_context  # noqa: E402

from tff_gpt.algorithms import aggregators  # noqa: E402


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


WORKER_BINARY = "worker_binary"
# How long a worker gets to stop after SIGINT before it is killed.
WORKER_STOP_SECONDS = 20.0


def _workers() -> list[psutil.Process]:
  """This process's TFF worker processes (the C++ `worker_binary`) that are still running."""
  found = []
  for child in psutil.Process().children():
    try:
      running = child.status() != psutil.STATUS_ZOMBIE
      if running and child.cmdline() and WORKER_BINARY in child.cmdline()[0]:
        found.append(child)
    except psutil.Error:
      pass
  return found


def _stop_workers() -> None:
  """Asks each worker to stop (SIGINT, as TFF does) and kills it if it has not within `WORKER_STOP_SECONDS`.

  TFF stops its worker when its context is dropped, but then waits for it
  without a limit; a GPT-2 124M worker was seen to stay idle after SIGINT
  for minutes, hanging the run at exit. The workers are not reaped here, so
  TFF's own wait still finds them.
  """
  workers = _workers()
  for worker in workers:
    worker.send_signal(signal.SIGINT)
  deadline = time.monotonic() + WORKER_STOP_SECONDS
  while workers and time.monotonic() < deadline:
    time.sleep(0.05)
    workers = [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
  for worker in workers:
    logging.warning("TFF worker %d ran on %.0f s after SIGINT; killing it.", worker.pid, WORKER_STOP_SECONDS)
    worker.kill()


# Run by `python -c` beside this process: records this process's TFF workers
# while it lives, and kills them once it is gone however it ended (kill -9, an
# out-of-memory kill, a crash), when nothing of ours runs to stop them.
_WATCHDOG = """
import sys, time
import psutil
try:
  parent = psutil.Process(int(sys.argv[1]))
except psutil.Error:
  sys.exit(0)
seen = {}
while True:
  try:
    for child in parent.children():
      if child.pid not in seen and WORKER in (child.cmdline() or [""])[0]:
        seen[child.pid] = child
    if parent.status() == psutil.STATUS_ZOMBIE:
      break
  except psutil.Error:
    break
  time.sleep(0.5)
for worker in seen.values():
  try:
    worker.kill()  # psutil checks the pid still names the same process.
  except psutil.Error:
    pass
""".replace("WORKER", repr(WORKER_BINARY))
_watchdog: subprocess.Popen | None = None


def _start_watchdog() -> None:
  """Starts, once per process, the watchdog that kills our workers after we die."""
  global _watchdog
  if _watchdog is not None and _watchdog.poll() is None:
    return
  _watchdog = subprocess.Popen(
    [sys.executable, "-c", _WATCHDOG, str(os.getpid())],
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
    start_new_session=True,  # Ctrl-C to our process group leaves it to clean up after us.
  )


def shutdown() -> None:
  """Drops TFF's default context, which stops its worker process (killed if it does not stop)."""
  try:
    _stop_workers()
  except psutil.Error:
    pass
  set_default_context.set_no_default_context()
  gc.collect()


atexit.register(shutdown)


def set_up(*, max_concurrent_computation_calls: int = 2, secure_aggregation: bool = False) -> None:
  """Installs TFF's local C++ execution context.

  Args:
    max_concurrent_computation_calls: How many client computations the
      worker runs at once. Each parallel client holds a copy of the weights,
      so use 1 for models near GPT-2 124M.
    secure_aggregation: Install TFF's test context instead, which lowers
      secure sums (`tff.learning.secure_aggregator`) to plain sums so that
      they run in simulation. The local context cannot run them.
  """
  _start_watchdog()
  # Replacing a context makes TFF SIGINT the old worker and wait for it without a limit; a worker that
  # ignores the signal then hangs this call (seen in the test suite), so stop it here first, bounded.
  try:
    _stop_workers()
  except psutil.Error:
    pass
  if secure_aggregation:
    tff.backends.test.set_sync_test_cpp_execution_context(
      max_concurrent_computation_calls=max_concurrent_computation_calls
    )
  else:
    tff.backends.native.set_sync_local_cpp_execution_context(
      max_concurrent_computation_calls=max_concurrent_computation_calls
    )


@contextlib.contextmanager
def execution_context(*, max_concurrent_computation_calls: int = 2, secure_aggregation: bool = False):
  """Context manager: `set_up`, then `shutdown` however the block ends."""
  set_up(
    max_concurrent_computation_calls=max_concurrent_computation_calls, secure_aggregation=secure_aggregation
  )
  try:
    yield
  finally:
    shutdown()


def context_args(config) -> dict:
  """`execution_context` arguments for an `ExperimentConfig`."""
  return dict(
    max_concurrent_computation_calls=config.max_concurrent_computation_calls,
    secure_aggregation=aggregators.AGGREGATORS[config.aggregator].secure,
  )
