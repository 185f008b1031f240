"""Faults: interrupts during writes, corrupt checkpoints, dead workers, concurrent runs, kill -9 anywhere."""

import asyncio
import os
import signal
import subprocess
import time

import pytest

from tests import helpers
from tff_gpt.training import outputs


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

  loop = outputs.OutputLoop()
  try:
    with pytest.raises(KeyboardInterrupt):
      loop.run(save())
    assert path.read_text() == "done"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert loop.run(asyncio.sleep(0, result="next")) == "next"  # The loop still works after the interrupt.
  finally:
    loop.close()


def _metrics_csv(tmp_path):
  return tmp_path / "runs" / "results" / "tiny" / "experiment.metrics.csv"


@pytest.mark.slow
def test_a_worker_killed_mid_run_fails_the_round_with_advice_then_resumes(tmp_path):
  """TFF's own context restarts a dead worker and retries without a word; ours stops and says why."""
  log = tmp_path / "run.log"
  overrides = dict(total_rounds=10_000, rounds_per_eval=1000, clients_per_round=8, max_elements_per_client=64)
  proc = helpers.start_run(tmp_path, stdout=open(log, "w"), **overrides)
  helpers.wait_for_rows(_metrics_csv(tmp_path), 3, proc)
  [worker] = helpers.worker_processes(proc.pid)
  worker.kill()  # As the kernel's out-of-memory killer does.
  try:
    proc.wait(timeout=120)
  except subprocess.TimeoutExpired:
    proc.kill()
    pytest.fail("the run went on after its worker died:\n" + log.read_text()[-3000:])
  output = log.read_text()
  assert proc.returncode == 1, output[-3000:]
  [error] = [line for line in output.splitlines() if line.startswith("error: ")]
  assert "was killed by SIGKILL" in error and "--max_concurrent_computation_calls=1" in error, error
  assert "Traceback" not in output
  assert not helpers.worker_processes(proc.pid)
  # The same command resumes after the last checkpoint once memory is back.
  finished = len(outputs.read_csv(str(_metrics_csv(tmp_path))))
  proc = helpers.start_run(tmp_path, **dict(overrides, total_rounds=finished + 2))
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out.decode()[-3000:]
  assert b"Resuming tiny after round" in out
  rounds = [int(r["round_num"]) for r in outputs.read_csv(str(_metrics_csv(tmp_path)))]
  assert rounds == list(range(1, finished + 3))
