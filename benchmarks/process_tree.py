"""A command in a process of its own: its wall seconds and its process tree's peak memory (PSS)."""

import os
import subprocess
import sys
import threading
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TreeMemory:
  """Peak PSS (MB) of a process and its descendants, and of the process alone, sampled every 100 ms."""

  def __init__(self, pid: int):
    self.root, self.peak, self.root_peak = psutil.Process(pid), 0.0, 0.0
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()

  def _sample(self) -> None:
    while self.root.is_running() and self.root.status() != psutil.STATUS_ZOMBIE:
      try:
        tree = [self.root, *self.root.children(recursive=True)]
      except psutil.Error:
        break
      pss = []
      for p in tree:
        try:
          pss.append(p.memory_full_info().pss / 2**20)
        except psutil.Error:
          pss.append(0.0)
      self.peak, self.root_peak = max(self.peak, sum(pss)), max(self.root_peak, pss[0])
      time.sleep(0.1)

  def join(self) -> tuple[float, float]:
    self._thread.join()
    return self.peak, self.root_peak


def measured(command: list[str], log: str, env: dict | None = None) -> dict:
  """Runs `command` (output to `log`), with its wall seconds and its process tree's peak PSS."""
  start = time.perf_counter()
  with open(log, "w") as out:
    proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    memory = TreeMemory(proc.pid)
    status = proc.wait()
  peak, root_peak = memory.join()
  if status != 0:
    with open(log) as f:
      sys.exit(f"error: {' '.join(command[:3])} ... exited {status}:\n{f.read()[-3000:]}")
  return {"wall_seconds": time.perf_counter() - start, "peak_pss_mb": peak, "peak_root_pss_mb": root_peak}
