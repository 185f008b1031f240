"""TFF's C++ worker process (`worker_binary`): started, watched and stopped by the project.

TFF's own local context restarts its worker when it dies and retries the
computation without a word; when memory is what killed the worker, that loop
never ends. `LocalWorker` starts the same binary the same way, but a worker
that has ended raises `WorkerDiedError`, which says how it ended and what to
change. When this process itself dies without stopping its workers (kill -9,
an out-of-memory kill), a small watchdog process kills them.
"""

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time

import grpc
import portpicker
import psutil
import tensorflow_federated as tff

from tff_gpt import errors, internals
from tff_gpt.internals import remote_executor_grpc_stub

WORKER_NAME = "worker_binary"
WORKER_BINARY = os.path.join(os.path.dirname(tff.__file__), "data", WORKER_NAME)
# How long a worker gets to stop after SIGINT before it is killed.
STOP_SECONDS = 20.0
# How long a starting worker gets to answer.
START_SECONDS = 60.0
MEMORY_ADVICE = (
  "If memory ran out, use --max_concurrent_computation_calls=1, fewer --clients_per_round, or a lighter "
  "--trainable (lora:8, bitfit)."
)


class WorkerDiedError(errors.RunFailure):
  """TFF's worker process ended while the run needed it."""


def describe_exit(returncode: int) -> str:
  """How a process with `returncode` ended, in words."""
  if returncode < 0:
    name = signal.Signals(-returncode).name
    if -returncode == signal.SIGKILL:
      return f"was killed by {name} (what the kernel's out-of-memory killer sends)"
    return f"was ended by {name}"
  return f"exited with status {returncode}"


def _stop(processes: list[psutil.Process]) -> None:
  """SIGINT (as TFF stops its worker), SIGTERM after 2 s, then SIGKILL after `STOP_SECONDS`.

  SIGTERM covers workers that ignore SIGINT, as every process started from a
  background job of a non-interactive shell (`cmd &` in a script) does.
  """
  alive = processes
  for sig, wait in ((signal.SIGINT, 2.0), (signal.SIGTERM, STOP_SECONDS)):
    for process in alive:
      try:
        process.send_signal(sig)
      except psutil.Error:
        pass
    _, alive = psutil.wait_procs(alive, timeout=wait)
  for process in alive:
    logging.warning("TFF worker %d ran on %.0f s after SIGTERM; killing it.", process.pid, STOP_SECONDS)
    try:
      process.kill()
      process.wait(timeout=STOP_SECONDS)
    except psutil.Error:
      pass


def children() -> list[psutil.Process]:
  """This process's `worker_binary` children still running (ours, or ones TFF's own contexts started)."""
  found = []
  for child in psutil.Process().children():
    try:
      if child.status() != psutil.STATUS_ZOMBIE and child.name() == WORKER_NAME:
        found.append(child)
    except psutil.Error:
      pass
  return found


def stop_children() -> None:
  """Stops every worker this process started, bounded by `STOP_SECONDS`."""
  _stop(children())


class LocalWorker:
  """One `worker_binary` on a free localhost port, started at the first computation.

  Args:
    max_concurrent_computation_calls: How many client computations the
      worker runs at once (nonpositive: no limit).
  """

  def __init__(self, *, max_concurrent_computation_calls: int, port: int | None = None):
    self.max_concurrent_computation_calls = max_concurrent_computation_calls
    self.port = port
    self.process: subprocess.Popen | None = None
    self.address: str | None = None
    self._stub = None

  def start(self) -> None:
    """Starts the worker and waits until it answers (done by the first `stub()` otherwise)."""
    port = self.port or portpicker.pick_unused_port()
    self.address = f"localhost:{port}"
    self.process = subprocess.Popen(
      [
        WORKER_BINARY,
        f"--port={port}",
        f"--max_concurrent_computation_calls={self.max_concurrent_computation_calls}",
      ],
      stdin=subprocess.DEVNULL,
      # Its log goes to our stderr; holding our stdout would keep `run | tail` waiting after we exit.
      stdout=sys.stderr,
      stderr=sys.stderr,
    )
    _register_with_watchdog(self.process.pid)
    channel = grpc.insecure_channel(self.address, internals.grpc_channel_options())
    self._stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)
    deadline = time.monotonic() + START_SECONDS
    while not self._stub.is_ready:
      if self.process.poll() is not None:
        raise WorkerDiedError(f"TFF's worker_binary {describe_exit(self.process.returncode)} while starting.")
      if time.monotonic() > deadline:
        self.stop()
        raise WorkerDiedError(
          f"TFF's worker_binary did not answer on {self.address} in {START_SECONDS:.0f} s."
        )
      time.sleep(0.02)  # TFF's own context polls every second.

  def stub(self):
    """The worker's gRPC stub, starting the worker the first time.

    Raises:
      WorkerDiedError: The worker has ended; it is not restarted.
    """
    if self.process is None:
      self.start()
    elif self.process.poll() is not None:
      raise WorkerDiedError(
        f"TFF's worker process (pid {self.process.pid}) {describe_exit(self.process.returncode)} during a "
        f"computation; the round was not finished. {MEMORY_ADVICE} The same command resumes after the last "
        "checkpoint."
      )
    return self._stub

  def stop(self) -> None:
    """Stops the worker (bounded); a no-op when it never started or has ended."""
    if self.process is not None and self.process.poll() is None:
      # It can end between poll() and here: Ctrl-C reaches the worker too.
      with contextlib.suppress(psutil.NoSuchProcess):
        _stop([psutil.Process(self.process.pid)])
      self.process.wait()

  def replace(self) -> None:
    """Stops this worker; the next `stub()` starts a fresh one (between computations only)."""
    self.stop()
    self.process, self._stub = None, None


class RemoteWorker:
  """A TFF worker someone started at `address` (HOST:PORT), for instance with `scripts/start_worker.sh`.

  The project never starts or stops it. A worker that does not answer within
  `timeout` seconds raises `WorkerDiedError` naming its address, at start and
  whenever TFF asks for it again after a failed call, so a dead worker fails
  the round in bounded time instead of TFF's retrying without end.
  """

  def __init__(self, address: str, *, timeout: float = 30.0):
    self.address = address
    self.timeout = timeout
    channel = grpc.insecure_channel(address, internals.grpc_channel_options())
    self._stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)

  def check(self, *, during_run: bool = True) -> None:
    """Waits up to `timeout` seconds for the worker to answer; raises `WorkerDiedError` if it does not."""
    deadline = time.monotonic() + self.timeout
    while not self._stub.is_ready:  # Each call waits up to 1 s for the channel.
      if time.monotonic() > deadline:
        what = (
          "stopped answering during a computation; the round was not finished"
          if during_run
          else ("does not answer")
        )
        raise WorkerDiedError(
          f"the TFF worker at {self.address} {what} (waited {self.timeout:.0f} s). Start it on that host "
          f"(scripts/start_worker.sh --port={self.address.rsplit(':', 1)[-1]}) or fix --workers; the same "
          "command resumes after the last checkpoint."
        )

  def stub(self):
    self.check()
    return self._stub


# Run by `python -c` beside this process: records this process's TFF workers
# while it lives, and kills them once it is gone however it ended (kill -9, an
# out-of-memory kill, a crash), when nothing of ours runs to stop them. Each
# worker we start is registered through the watchdog's stdin before `start()`
# returns, so a kill right after a start (even before the watchdog has finished
# starting) cannot miss it; end of file on stdin means we are gone. Workers
# that TFF's own contexts start are found by polling our children.
_WATCHDOG = """
import sys, threading, time
import psutil
try:
  parent = psutil.Process(int(sys.argv[1]))
except psutil.Error:
  parent = None
seen = {}
lock = threading.Lock()
gone = threading.Event()

def read_registrations():
  for line in sys.stdin:
    try:
      pid, created = line.split()
      worker = psutil.Process(int(pid))
      if abs(worker.create_time() - float(created)) < 0.01:
        with lock:
          seen[worker.pid] = worker
    except (psutil.Error, ValueError):
      pass
  gone.set()  # End of file: every holder of the pipe's other end has exited.

reader = threading.Thread(target=read_registrations, daemon=True)
reader.start()
while not gone.wait(0.5):
  try:
    for child in parent.children() if parent else ():
      if child.pid not in seen and child.name() == WORKER:
        with lock:
          seen[child.pid] = child
    if parent is None or parent.status() == psutil.STATUS_ZOMBIE:
      break
  except psutil.Error:
    break
reader.join(timeout=5)  # Registrations still in the pipe.
with lock:
  workers = list(seen.values())
for worker in workers:
  try:
    worker.kill()  # psutil checks the pid still names the same process.
  except psutil.Error:
    pass
""".replace("WORKER", repr(WORKER_NAME))
_watchdog: subprocess.Popen | None = None


def start_watchdog() -> None:
  """Starts, once per process, the watchdog that kills our workers after we die."""
  global _watchdog
  if _watchdog is not None and _watchdog.poll() is None:
    return
  _watchdog = subprocess.Popen(
    [sys.executable, "-c", _WATCHDOG, str(os.getpid())],
    stdin=subprocess.PIPE,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
    start_new_session=True,  # Ctrl-C to our process group leaves it to clean up after us.
  )


def _register_with_watchdog(pid: int) -> None:
  """Tells the watchdog about a worker we started (it kills it should we die without stopping it)."""
  start_watchdog()
  try:
    created = psutil.Process(pid).create_time()
    _watchdog.stdin.write(f"{pid} {created!r}\n".encode())
    _watchdog.stdin.flush()
  except (psutil.Error, OSError):
    pass  # The worker or the watchdog has already ended.
