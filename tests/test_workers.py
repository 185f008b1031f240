"""Rounds on TFF workers given by address (`--workers`), started here on loopback ports as a user would."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import portpicker
import psutil
import pytest

from tests import helpers
from tff_gpt import errors, runtime
from tff_gpt.training import outputs, trainer


class Worker:
  """`experiments.start_worker` in a process of its own, as `scripts/start_worker.sh` runs it."""

  def __init__(self, port: int | None = None):
    self.port = port or portpicker.pick_unused_port()
    self.address = f"localhost:{self.port}"
    self.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"tff_gpt_worker_{self.port}.log"), "w+")
    with helpers.sigint_not_ignored():  # The Ctrl-C test must see SIGINT even in a background suite.
      self.proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.start_worker", f"--port={self.port}"],
        cwd=helpers.REPO,
        stdout=self.log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=helpers.REPO),
      )
    deadline = time.time() + 120
    while "listening on" not in self.output():
      assert self.proc.poll() is None and time.time() < deadline, self.output()[-2000:]
      time.sleep(0.2)

  def output(self) -> str:
    self.log.seek(0)
    return self.log.read()

  def binary(self) -> psutil.Process:
    [binary] = [p for p in psutil.Process(self.proc.pid).children() if p.name() == "worker_binary"]
    return binary

  def stop(self) -> int:
    """SIGTERM, as a service manager stops it; returns the exit status."""
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGTERM)
    return self.proc.wait(timeout=60)


# Its module-scoped fixtures are built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = [pytest.mark.full, pytest.mark.xdist_group(__name__)]


@pytest.fixture(scope="module")
def two_workers():
  workers = [Worker(), Worker()]
  yield workers
  for worker in workers:
    worker.stop()


@pytest.fixture
def restore_local_context():
  yield
  runtime.set_up()


def _run(tmp_path, name, workers):
  runtime.set_up(workers=workers)
  config = helpers.tiny_config(tmp_path, experiment_name=name, total_rounds=2, clients_per_round=4)
  summary = trainer.FederatedExperiment(config, progress=False).run()
  rows = outputs.read_metrics(outputs.RunDirs.of(config.root_output_dir, name))
  clients = outputs.read_sampled_clients(outputs.RunDirs.of(config.root_output_dir, name))
  return summary, rows, clients


def test_results_do_not_depend_on_where_clients_ran(tmp_path, two_workers, restore_local_context):
  local, local_rows, local_clients = _run(tmp_path, "local", None)
  one, one_rows, one_clients = _run(tmp_path, "one", two_workers[0].address)
  both = ",".join(w.address for w in two_workers)
  two, two_rows, two_clients = _run(tmp_path, "two", both)
  # One worker runs the same computations as the local context, but compiled by TFF's compiler where the
  # local worker's go through `compile_for_cpu` (GELU's x ** 3 as x * x * x): equal up to float rounding.
  for a, b in zip(one["model_weights"].trainable, local["model_weights"].trainable, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-10)
  np.testing.assert_allclose(
    [float(r["train_loss"]) for r in one_rows], [float(r["train_loss"]) for r in local_rows], rtol=1e-6
  )
  # Two workers each aggregate part of the clients, then the parts merge: summation order only.
  for a, b in zip(two["model_weights"].trainable, local["model_weights"].trainable, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert one_clients == two_clients == local_clients
  for row, ref in zip(two_rows, local_rows, strict=True):
    assert row["train_tokens"] == ref["train_tokens"] and row["clients"] == ref["clients"]
    assert float(row["train_loss"]) == pytest.approx(float(ref["train_loss"]), rel=1e-5)
  assert two["eval_loss"] == pytest.approx(local["eval_loss"], rel=1e-5)
  # The project started neither worker, and stopped neither.
  assert all(w.proc.poll() is None for w in two_workers)


def test_a_worker_that_does_not_answer_fails_before_round_1_naming_it(restore_local_context):
  address = f"localhost:{portpicker.pick_unused_port()}"
  start = time.monotonic()
  with pytest.raises(runtime.WorkerDiedError, match=f"the TFF worker at {address} does not answer"):
    runtime.set_up(workers=f"{address}")
  assert time.monotonic() - start < 60


@pytest.mark.parametrize("spec", ["localhost", "localhost:port", ":8000", ",", "host:70000"])
def test_malformed_worker_addresses_are_refused(spec):
  with pytest.raises(errors.UserInputError, match="--workers"):
    runtime.parse_workers(spec)


@pytest.mark.slow
def test_a_worker_killed_mid_run_fails_the_round_then_the_run_resumes(tmp_path):
  workers = [Worker(), Worker()]
  try:
    spec = ",".join(w.address for w in workers)
    log = tmp_path / "run.log"
    settings = dict(total_rounds=10_000, rounds_per_eval=1000, workers=spec)
    proc = helpers.start_run(tmp_path, stdout=open(log, "w"), **settings)
    helpers.wait_for_rows(tmp_path / "runs" / "results" / "tiny" / "experiment.metrics.csv", 2, proc)
    workers[1].binary().kill()  # The host's worker dies; its wrapper notices and exits.
    output = helpers.wait_for_exit(proc, log, 180, "the run went on or hung after a worker died")
    assert proc.returncode == 1, output[-3000:]
    error = helpers.assert_ends_with_one_error_line(output)
    assert workers[1].address in error and "resumes after the last checkpoint" in error, error
    assert workers[0].proc.poll() is None, "the live worker is the user's: left running"

    workers[1].stop()
    workers[1] = Worker(workers[1].port)  # Back on the same port.
    dirs = outputs.RunDirs.of(str(tmp_path / "runs"), "tiny")
    done = len(outputs.read_metrics(dirs))
    proc = helpers.start_run(tmp_path, **dict(settings, total_rounds=done + 2))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-3000:]
    assert [int(r["round_num"]) for r in outputs.read_metrics(dirs)] == list(range(1, done + 3))
  finally:
    for worker in workers:
      worker.stop()


def test_start_worker_stops_cleanly_on_sigterm_and_ctrl_c():
  for stop in (signal.SIGTERM, signal.SIGINT):
    worker = Worker()
    binary = worker.binary()
    try:
      worker.proc.send_signal(stop)
      assert worker.proc.wait(timeout=60) == 0, worker.output()[-2000:]
    finally:
      if worker.proc.poll() is None:  # Never leave the worker behind, whatever failed.
        worker.proc.kill()
        with contextlib.suppress(psutil.NoSuchProcess):
          binary.kill()
    assert "TFF worker stopped." in worker.output()
    assert not binary.is_running() or binary.status() == psutil.STATUS_ZOMBIE


def test_each_computation_is_sent_to_the_worker_once(monkeypatch, restore_local_context):
  """TFF's context sends the compiled computation with every call; the project's executor sends it once."""
  import tensorflow_federated as tff
  from tensorflow_federated.python.core.impl.executors import remote_executor_grpc_stub

  sent = []
  original = remote_executor_grpc_stub.RemoteExecutorGrpcStub.create_value

  def create_value(self, request):
    if request.value.HasField("computation"):
      sent.append(request.value.computation.WhichOneof("computation"))
    return original(self, request)

  monkeypatch.setattr(remote_executor_grpc_stub.RemoteExecutorGrpcStub, "create_value", create_value)
  runtime.set_up()

  @tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
  def mean(values):
    return tff.federated_mean(values)

  results = [mean([1.0, 2.0, float(i)]) for i in range(4)]
  assert results == pytest.approx([1.0, 4 / 3, 5 / 3, 2.0])
  assert len(sent) == 1, sent
