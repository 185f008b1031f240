"""Faults: interrupts during writes, corrupt checkpoints, dead workers, concurrent runs, kill -9 anywhere."""

import asyncio
import os
import signal
import subprocess
import time

import numpy as np
import portpicker
import psutil
import pytest

from tests import helpers
from tff_gpt.training import outputs, restore, trainer


def test_ctrl_c_during_a_write_finishes_the_write_then_interrupts(tmp_path):
  """Ctrl-C inside the managers' event loop was once lost there (the run then hung at a checkpoint save)."""
  path = tmp_path / "out.txt"

  def write():
    os.kill(os.getpid(), signal.SIGINT)  # Arrives while the loop waits on this executor thread.
    time.sleep(0.3)
    path.write_text("done")

  async def save():
    await asyncio.get_running_loop().run_in_executor(None, write)
    return "saved"

  # Python's own Ctrl-C handler, as in a terminal (a suite run as a background job has SIGINT ignored).
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  loop = outputs.OutputLoop()
  try:
    with pytest.raises(KeyboardInterrupt):
      loop.run(save())
    assert path.read_text() == "done"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert loop.run(asyncio.sleep(0, result="next")) == "next"  # The loop still works after the interrupt.
  finally:
    loop.close()
    signal.signal(signal.SIGINT, previous)


def _metrics_csv(tmp_path):
  return tmp_path / "runs" / "results" / "tiny" / "experiment.metrics.csv"


@pytest.mark.full
@pytest.mark.slow
def test_a_worker_killed_mid_run_fails_the_round_with_advice_then_resumes(tmp_path):
  """TFF's own context restarts a dead worker and retries without a word; ours stops and says why."""
  log = tmp_path / "run.log"
  overrides = dict(total_rounds=10_000, rounds_per_eval=1000, clients_per_round=8, max_elements_per_client=64)
  proc = helpers.start_run(tmp_path, stdout=open(log, "w"), **overrides)
  helpers.wait_for_rows(_metrics_csv(tmp_path), 3, proc)
  [worker] = helpers.worker_processes(proc.pid)
  worker.kill()  # As the kernel's out-of-memory killer does.
  output = helpers.wait_for_exit(proc, log, 120, "the run went on after its worker died")
  assert proc.returncode == 1, output[-3000:]
  error = helpers.assert_ends_with_one_error_line(output)
  assert "was killed by SIGKILL" in error and "--max_concurrent_computation_calls=1" in error, error
  helpers.assert_no_worker_left(proc.pid, within=0)  # The run stopped every worker before it exited.
  # The same command resumes after the last checkpoint once memory is back.
  finished = len(outputs.read_csv(str(_metrics_csv(tmp_path))))
  proc = helpers.start_run(tmp_path, **dict(overrides, total_rounds=finished + 2))
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out.decode()[-3000:]
  assert b"Resuming tiny after round" in out
  rounds = [int(r["round_num"]) for r in outputs.read_csv(str(_metrics_csv(tmp_path)))]
  assert rounds == list(range(1, finished + 3))


def _weights_of(config):
  weights, version = restore.latest_weights(restore.open_run(config.root_output_dir, config.experiment_name))
  return version, weights.trainable


def _truncate_checkpoint(dirs, round_num):
  variables = os.path.join(dirs.checkpoints, f"program_state_{round_num}", "variables")
  [data] = [os.path.join(variables, f) for f in os.listdir(variables) if f.startswith("variables.data")]
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)  # As a disk that filled up during the save would leave it.


@pytest.mark.full
@pytest.mark.slow
def test_a_truncated_latest_checkpoint_is_skipped_and_the_run_resumes_from_the_one_before(tmp_path):
  reference = helpers.tiny_config(tmp_path, experiment_name="reference", total_rounds=4)
  trainer.FederatedExperiment(reference, progress=False).run()

  config = helpers.tiny_config(tmp_path, total_rounds=3)
  trainer.FederatedExperiment(config, progress=False).run()
  dirs = outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
  _truncate_checkpoint(dirs, 3)
  # What a crash half-way through TFF's write-then-rename saves leaves behind.
  os.makedirs(os.path.join(dirs.checkpoints, "program_state_4_temp1234", "variables"))
  with open(dirs.metrics_csv + "_temp5678", "w") as f:
    f.write("round_num,train_loss\n1,")

  config.total_rounds = 4
  trainer.FederatedExperiment(config, progress=False).run()

  names = sorted(os.listdir(dirs.checkpoints))
  assert "unreadable_program_state_3" in names and not [n for n in names if "_temp" in n], names
  assert not [n for n in os.listdir(dirs.results) if "_temp" in n]
  assert [int(r["round_num"]) for r in outputs.read_metrics(dirs)] == [1, 2, 3, 4]
  (got_round, got), (want_round, want) = _weights_of(config), _weights_of(reference)
  assert got_round == want_round == 4
  for a, b in zip(got, want, strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.full
@pytest.mark.slow
def test_a_second_run_on_the_same_experiment_stops_at_start(tmp_path):
  log = tmp_path / "first.log"
  first = helpers.start_run(tmp_path, stdout=open(log, "w"), total_rounds=10_000, rounds_per_eval=1000)
  try:
    helpers.wait_for_rows(_metrics_csv(tmp_path), 1, first)
    second = helpers.start_run(tmp_path, total_rounds=10_000, rounds_per_eval=1000)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 2, out.decode()[-3000:]
    error = helpers.assert_ends_with_one_error_line(out.decode())
    assert f"is in use by a run still going (pid {first.pid} on" in error, error
    assert first.poll() is None, "the first run goes on"
  finally:
    first.send_signal(signal.SIGINT)
    try:
      first.wait(timeout=120)
    finally:
      if first.poll() is None:  # Never leave the long run behind, whatever failed.
        first.kill()
  assert first.returncode == 130, log.read_text()[-3000:]


def _kill_9_when(proc, ready, timeout: float = 300) -> list:
  """SIGKILLs the run's Python process once `ready()` holds; returns the workers it had then."""
  deadline = time.time() + timeout
  while not ready():
    if proc.poll() is not None or time.time() > deadline:
      pytest.fail(f"the kill point was never reached (run status {proc.poll()})")
    time.sleep(0.005)
  workers = helpers.worker_processes(proc.pid)
  proc.kill()
  proc.wait(timeout=30)
  return workers


@pytest.mark.full
@pytest.mark.slow
def test_kill_9_before_between_and_during_checkpoints_loses_nothing(tmp_path):
  """Three kills of the Python process, then the same command to the end: as one uninterrupted run."""
  settings = dict(total_rounds=7, rounds_per_checkpoint=3, rounds_per_eval=1000)
  reference = helpers.tiny_config(tmp_path, experiment_name="reference", **settings)
  trainer.FederatedExperiment(reference, progress=False).run()

  dirs = outputs.RunDirs.of(str(tmp_path / "runs"), "tiny")

  def rows():
    return len(outputs.read_metrics(dirs)) if os.path.exists(dirs.metrics_csv) else 0

  def names():
    return os.listdir(dirs.checkpoints) if os.path.isdir(dirs.checkpoints) else []

  kill_points = {
    "before the first checkpoint": lambda: rows() >= 1 and "program_state_3" not in names(),
    "between checkpoints": lambda: rows() >= 4 and "program_state_3" in names(),
    "during a checkpoint save": lambda: any("_temp" in n for n in names()),
  }

  left_behind = []
  for point, ready in kill_points.items():
    proc = helpers.start_run(tmp_path, stdout=open(tmp_path / "run.log", "a"), **settings)
    workers = _kill_9_when(proc, ready)
    assert workers, f"{point}: the worker had started"
    _, alive = psutil.wait_procs(workers, timeout=30)
    left_behind += alive
  assert not left_behind, f"workers left running: {left_behind}"

  proc = helpers.start_run(tmp_path, **settings)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out.decode()[-3000:]
  assert [int(r["round_num"]) for r in outputs.read_metrics(dirs)] == list(range(1, 8))
  (got_round, got), (want_round, want) = (
    _weights_of(helpers.tiny_config(tmp_path, **settings)),
    _weights_of(reference),
  )
  assert got_round == want_round == 7
  for a, b in zip(got, want, strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.fixture
def small_disk(tmp_path):
  """A 400 KB tmpfs (root and mount(8) needed, as on CI here); skipped with the reason elsewhere."""
  mount = tmp_path / "small_disk"
  mount.mkdir()
  result = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True
  )
  if result.returncode:
    pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip() or 'not root'}")
  try:
    yield mount
  finally:
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.full
def test_a_full_disk_ends_the_run_with_one_line_keeping_every_row(tmp_path, small_disk):
  """A disk that fills during the rounds: exit 1, one last `error:` line, no traceback, rows 1..N kept."""
  log = tmp_path / "run.log"
  run = dict(total_rounds=40, rounds_per_eval=40, root_output_dir=str(small_disk))
  with open(log, "w") as out:
    proc = helpers.start_run(tmp_path, stdout=out, **run)
    text = helpers.wait_for_exit(proc, log, 600, "the run on a full disk did not end")
  assert proc.returncode == 1, text[-3000:]
  error = helpers.assert_ends_with_one_error_line(text)
  assert "no space left on the device" in error and "run the same command again" in error
  rows = outputs.read_metrics(outputs.RunDirs.of(str(small_disk), "tiny"))
  assert 0 < len(rows) < 40 and [int(r["round_num"]) for r in rows] == list(range(1, len(rows) + 1))


@pytest.mark.full
def test_divergence_and_an_unreachable_worker_end_the_command_with_one_line(tmp_path):
  """The terminal of two more handled failures, as a user sees them: exit 1, one last `error:` line."""
  unreachable = f"localhost:{portpicker.pick_unused_port()}"
  runs = {
    "diverged": dict(client_learning_rate=100.0, total_rounds=6, rounds_per_eval=5),
    "unreachable": dict(workers=unreachable, total_rounds=2),
  }
  procs = {}
  for name, overrides in runs.items():
    (tmp_path / name).mkdir()
    log = tmp_path / f"{name}.log"
    procs[name] = (log, helpers.start_run(tmp_path / name, stdout=open(log, "w"), **overrides))
  for name, (log, proc) in procs.items():
    output = helpers.wait_for_exit(proc, log, 300, f"the {name} run did not end")
    assert proc.returncode == 1, output[-3000:]
    error = helpers.assert_ends_with_one_error_line(output)
    assert ("diverged" in error) if name == "diverged" else (unreachable in error), error
