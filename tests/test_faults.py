"""Faults: interrupts during writes, corrupt checkpoints, dead workers, concurrent runs, kill -9 anywhere."""

import asyncio
import os
import signal
import time

import pytest

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
