"""TFF workers on network stacks of their own: each in a Linux network namespace, reached over a veth pair.

Needs root and `ip netns` (as on CI here); skipped with the reason elsewhere.
Traffic stays on this machine: the namespaces and their addresses
(10.231.N.0/24) are made by the test and removed after it.
"""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from tests import helpers
from tff_gpt import runtime
from tff_gpt.training import outputs, trainer

pytestmark = [pytest.mark.full, pytest.mark.xdist_group(__name__)]
PORT = 8000


def _ip(*args: str) -> None:
  subprocess.run(["ip", *args], check=True, capture_output=True)


class NamespacedWorker:
  """`experiments.start_worker` inside namespace `name`, at 10.231.`index`.2 (the host is .1)."""

  def __init__(self, index: int):
    tag = f"tg{os.getpid() % 10000}{index}"
    self.namespace, self.host_if, self.ns_if = f"tff_gpt_{tag}", f"{tag}h", f"{tag}n"
    self.address = f"10.231.{index}.2:{PORT}"
    _ip("netns", "add", self.namespace)
    _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
    _ip("link", "set", self.ns_if, "netns", self.namespace)
    _ip("addr", "add", f"10.231.{index}.1/24", "dev", self.host_if)
    _ip("link", "set", self.host_if, "up")
    for args in (
      ("addr", "add", f"10.231.{index}.2/24", "dev", self.ns_if),
      ("link", "set", self.ns_if, "up"),
    ):
      _ip("netns", "exec", self.namespace, "ip", *args)
    _ip("netns", "exec", self.namespace, "ip", "link", "set", "lo", "up")
    self.log = open(f"/tmp/tff_gpt_netns_worker_{tag}.log", "w+")
    self.proc = subprocess.Popen(
      [
        "ip",
        "netns",
        "exec",
        self.namespace,
        sys.executable,
        "-m",
        "experiments.start_worker",
        f"--port={PORT}",
      ],
      cwd=helpers.REPO,
      stdout=self.log,
      stderr=subprocess.STDOUT,
      env=dict(os.environ, PYTHONPATH=helpers.REPO),
    )
    deadline = time.time() + 120
    while "listening on" not in self._output():
      assert self.proc.poll() is None and time.time() < deadline, self._output()[-2000:]
      time.sleep(0.2)

  def _output(self) -> str:
    self.log.seek(0)
    return self.log.read()

  def kill_binary(self) -> None:
    """Kills this worker's `worker_binary` (its process's child), as the out-of-memory killer would."""
    [binary] = [
      p for p in psutil.Process(self.proc.pid).children(recursive=True) if p.name() == "worker_binary"
    ]
    binary.kill()

  def remove(self) -> None:
    if self.proc.poll() is None:
      self.proc.terminate()
      try:
        self.proc.wait(timeout=60)
      except subprocess.TimeoutExpired:
        self.proc.kill()
    subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
    subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)


def _netns_unavailable() -> str | None:
  if os.geteuid() != 0 or not shutil.which("ip"):
    return "needs root and iproute2's ip"
  probe = f"tff_gpt_probe{os.getpid()}"
  result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
  if result.returncode:
    return f"ip netns add failed: {result.stderr.strip()}"
  subprocess.run(["ip", "netns", "del", probe], capture_output=True)
  return None


@pytest.fixture(scope="module")
def namespaced_workers():
  reason = _netns_unavailable()
  if reason:
    pytest.skip(f"network namespaces unavailable here ({reason})")
  workers = []
  try:
    workers = [NamespacedWorker(1), NamespacedWorker(2)]
    yield workers
  finally:
    for worker in workers:
      worker.remove()


def _losses(tmp_path, name: str, workers: str | None) -> list[float]:
  runtime.set_up(workers=workers)
  try:
    config = helpers.tiny_config(tmp_path, experiment_name=name, total_rounds=3, clients_per_round=4)
    trainer.FederatedExperiment(config, progress=False).run()
    return [
      float(r["train_loss"]) for r in outputs.read_metrics(outputs.RunDirs.of(config.root_output_dir, name))
    ]
  finally:
    runtime.set_up()


def test_workers_on_their_own_network_stacks_give_the_local_results(tmp_path, namespaced_workers):
  local = _losses(tmp_path, "local", None)
  remote = _losses(tmp_path, "remote", ",".join(w.address for w in namespaced_workers))
  np.testing.assert_allclose(remote, local, rtol=1e-5)


def test_a_namespaced_worker_killed_mid_run_ends_the_run_with_one_line(tmp_path, namespaced_workers):
  log = tmp_path / "run.log"
  spec = ",".join(w.address for w in namespaced_workers)
  proc = helpers.start_run(
    tmp_path, stdout=open(log, "w"), total_rounds=10_000, rounds_per_eval=1000, workers=spec
  )
  helpers.wait_for_rows(tmp_path / "runs" / "results" / "tiny" / "experiment.metrics.csv", 2, proc)
  namespaced_workers[1].kill_binary()
  output = helpers.wait_for_exit(proc, log, 180, "the run went on or hung after a namespaced worker died")
  assert proc.returncode == 1, output[-3000:]
  error = helpers.assert_ends_with_one_error_line(output)
  assert namespaced_workers[1].address.split(":")[0] in error and "resumes after the last checkpoint" in error
