"""No TFF worker outlives a run: normal end, Ctrl-C, and stdout piped to another program."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests import helpers

pytestmark = pytest.mark.full  # Subprocess runs or benchmarks: ./test.sh --full.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATCHDOG_SECONDS = 2.0  # README: "the watchdog kills the workers within 2 seconds".


@pytest.mark.slow
def test_finished_run_closes_stdout_and_leaves_no_worker(tmp_path):
  log = tmp_path / "run.log"
  proc = helpers.start_run(tmp_path, stdout=open(log, "w"), total_rounds=3, rounds_per_eval=1000)
  helpers.wait_for_rows(tmp_path / "runs" / "results" / "tiny" / "experiment.metrics.csv", 1, proc)
  assert helpers.workers_in_session(proc.pid), "training is under way in the run's own TFF worker"
  proc.wait(timeout=300)
  # The run stops its worker before it exits (its watchdog is the second line: tests below).
  helpers.assert_no_worker_left(proc.pid, within=0)
  out = log.read_bytes()
  assert proc.returncode == 0, out.decode()[-2000:]
  assert b"Finished 3 rounds of fedavg" in out
  assert b"Traceback" not in out, out.decode()[-3000:]  # Nothing asks a stopped worker for anything at exit.


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [True, False], ids=["ctrl_c", "kill_int"])
def test_ctrl_c_stops_the_worker(tmp_path, whole_group):
  """SIGINT to the terminal's process group (Ctrl-C), or to the Python process alone."""
  log = open(tmp_path / "run.log", "w")
  proc = helpers.start_run(tmp_path, stdout=log, total_rounds=10_000, rounds_per_eval=1000)
  metrics = tmp_path / "runs" / "results" / "tiny" / "experiment.metrics.csv"
  deadline = time.time() + 300
  while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) > 1):
    time.sleep(0.5)
  workers = helpers.worker_processes(proc.pid)
  assert workers, "training is under way in the TFF worker"
  if whole_group:
    os.killpg(proc.pid, signal.SIGINT)
  else:
    proc.send_signal(signal.SIGINT)
  helpers.wait_for_exit(proc, tmp_path / "run.log", 120, "no exit 120 s after SIGINT")
  assert proc.returncode == 130
  output = (tmp_path / "run.log").read_text()
  assert "Run the same command again to resume" in output
  assert "Exception ignored" not in output
  helpers.assert_no_worker_left(proc.pid, within=0)  # Stopped by the run before it exited.


@pytest.mark.slow
def test_kill_9_leaves_no_worker(tmp_path):
  """A run killed with SIGKILL cannot stop its worker itself: the runtime's watchdog does."""
  log = open(tmp_path / "run.log", "w")
  proc = helpers.start_run(tmp_path, stdout=log, total_rounds=10_000, rounds_per_eval=1000)
  deadline = time.time() + 300
  workers = []
  while time.time() < deadline and not workers:
    time.sleep(0.5)
    workers = helpers.worker_processes(proc.pid)
  assert workers, (tmp_path / "run.log").read_text()[-2000:]
  proc.kill()
  proc.wait(timeout=30)
  # The watchdog sees the run's end at once (its pipe closes) or at its next look (every 0.5 s).
  helpers.assert_no_worker_left(proc.pid, within=WATCHDOG_SECONDS)


def test_a_worker_that_ignores_sigint_is_stopped_within_seconds():
  """Processes started from a background job of a script ignore SIGINT, and so do their workers."""
  import time

  from tff_gpt.runtime import workers

  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    worker = workers.LocalWorker(max_concurrent_computation_calls=1)
    worker.start()  # Inherits SIGINT ignored.
  finally:
    signal.signal(signal.SIGINT, previous)
  start = time.monotonic()
  worker.stop()
  assert worker.process.poll() is not None and time.monotonic() - start < 10


def test_kill_9_before_the_watchdog_looks_leaves_no_worker(tmp_path):
  """The watchdog learns of each worker before `start()` returns, so however late it looks (here: paused
  until after the kill, as on a loaded machine) a kill cannot slip through."""
  script = (
    "import os, signal\n"
    "from tff_gpt.runtime import workers\n"
    "workers.start_watchdog()  # As runtime.set_up does.\n"
    "os.kill(workers._watchdog.pid, signal.SIGSTOP)\n"
    "worker = workers.LocalWorker(max_concurrent_computation_calls=1)\n"
    "worker.start()\n"
    "print(worker.process.pid, workers._watchdog.pid, flush=True)\n"
    "os.kill(os.getpid(), signal.SIGKILL)\n"
  )
  # The worker logs to the script's stderr: a file, since a pipe it held would keep us waiting.
  with open(tmp_path / "stderr.log", "w") as stderr:
    proc = subprocess.run(
      [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300
    )
  assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.log").read_text()[-2000:]
  worker, watchdog = (psutil.Process(int(pid)) for pid in proc.stdout.split())
  watchdog.resume()
  _, alive = psutil.wait_procs([worker], timeout=30)
  if alive:
    worker.kill()
  assert not alive, f"worker {worker.pid} left running after kill -9"
