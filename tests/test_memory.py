"""The peak-memory estimate: its fit to measured peaks, the refusal before round 1, and the override."""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers
from tff_gpt.training import memory, outputs, trainer

GPT2_124M = dict(num_layers=12, hidden_dim=768, num_heads=12, vocabulary_size=50257)
GPT2_124M_BYTES = 124_439_808 * 4


def _peft_peak(clients: int, mode: str) -> dict:
  """`benchmarks/results_peft.json`'s row of `mode` at `clients` a round (BENCHMARKS.md section 6)."""
  with open(os.path.join(helpers.REPO, "benchmarks", "results_peft.json")) as f:
    return next(r for r in json.load(f)[f"clients_{clients}"]["rows"] if r["mode"] == mode)


@pytest.mark.parametrize(
  "mode, clients, python_gb",
  [  # Batches of 4 x 128 tokens, one client at a time; GB = 2^30 bytes.
    ("all", 2, 4.3),  # The whole model; its Python process held 4.3 GB.
    ("lora:8", 10, 2.0),
    ("bitfit", 10, 2.0),
    ("last_blocks:1", 10, 2.0),
  ],
)
def test_estimate_matches_the_measured_gpt2_124m_peaks(mode, clients, python_gb):
  row = _peft_peak(clients, mode)
  trained_params, measured_gb = row["trained_parameters"], row["peak_mb"] / 1024
  estimate = memory.estimate(
    process_bytes=int(python_gb * 2**30),
    weights_bytes=GPT2_124M_BYTES,
    trained_bytes=trained_params * 4,
    activations_bytes=memory.activation_bytes(GPT2_124M, batch_size=4, sequence_length=128),
    clients_per_round=clients,
    max_concurrent_computation_calls=1,
  )
  # docs/reliability.md: "within 15%" of the process tree's peak, the Python process's measured size given
  # (a run measures it before round 1); the worker's share, which the estimate models, within 24%.
  assert estimate.total_mb / 1024 == pytest.approx(measured_gb, rel=0.15)
  assert estimate.worker_mb / 1024 == pytest.approx(measured_gb - python_gb, rel=0.24)


def test_the_whole_124m_model_at_10_clients_is_refused_on_a_24_gb_machine():
  """It was killed by the kernel at 19.4 GB (worker) + 4.3 GB (Python) during its first round."""
  estimate = memory.estimate(
    process_bytes=int(4.3 * 2**30),
    weights_bytes=GPT2_124M_BYTES,
    trained_bytes=GPT2_124M_BYTES,
    activations_bytes=memory.activation_bytes(GPT2_124M, batch_size=4, sequence_length=128),
    clients_per_round=10,
    max_concurrent_computation_calls=1,
  )
  with pytest.raises(memory.MemoryEstimateError) as raised:
    memory.check(estimate, process_mb=4.3 * 1024, available_mb=19.5 * 1024)
  message = str(raised.value)
  assert "--max_concurrent_computation_calls=1" in message and "--ignore_memory_estimate" in message
  assert len(message) < 400


def test_more_concurrent_clients_need_more_memory():
  kwargs = dict(
    process_bytes=0, weights_bytes=10**8, trained_bytes=10**6, activations_bytes=10**7, clients_per_round=8
  )
  one, four = (memory.estimate(max_concurrent_computation_calls=k, **kwargs) for k in (1, 4))
  assert four.concurrent_clients == 4 and four.worker_mb > one.worker_mb


def test_a_round_in_parts_holds_one_parts_client_updates():
  kwargs = dict(
    process_bytes=0, weights_bytes=10**8, trained_bytes=10**8, activations_bytes=0, clients_per_round=1000
  )
  whole, tenths = (
    memory.estimate(max_concurrent_computation_calls=1, round_parts=k, **kwargs) for k in (1, 10)
  )
  held = memory.HELD_PER_CLIENT * 10**8 / memory.MB
  assert whole.worker_mb - tenths.worker_mb == pytest.approx((1000 - 100) * held)


@pytest.mark.full
def test_a_round_in_parts_trains_the_same_clients_to_the_same_weights(tmp_path):
  """`--round_parts`: TFF's mergeable form sums the parts' aggregates; only the summation order differs."""
  import numpy as np

  from tff_gpt import runtime

  def run(name, parts):
    config = helpers.tiny_config(
      tmp_path, experiment_name=name, total_rounds=2, clients_per_round=4, round_parts=parts
    )
    with runtime.execution_context(**config.context_args()):
      summary = trainer.FederatedExperiment(config, progress=False).run()
    rows = outputs.read_metrics(outputs.RunDirs.of(config.root_output_dir, name))
    assert [int(r["clients"]) for r in rows] == [4, 4]
    return summary

  whole, parts = run("whole", 1), run("parts", 3)
  for a, b in zip(whole["model_weights"].trainable, parts["model_weights"].trainable, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert parts["eval_loss"] == pytest.approx(whole["eval_loss"], rel=1e-5)


@pytest.mark.slow
def test_a_run_records_its_estimate_beside_its_measured_peak(tmp_path):
  summary = trainer.FederatedExperiment(helpers.tiny_config(tmp_path, total_rounds=2), progress=False).run()
  assert 0.7 * summary["memory_peak_mb"] <= summary["memory_estimate_mb"] <= 2 * summary["memory_peak_mb"]


def test_an_oversized_run_is_refused_before_round_1_and_the_flag_overrides(tmp_path):
  config = helpers.tiny_config(tmp_path, client_batch_size=10_000_000)
  with pytest.raises(memory.MemoryEstimateError, match="GB at its peak"):
    trainer.FederatedExperiment(config)
  config = helpers.tiny_config(tmp_path, client_batch_size=10_000_000, ignore_memory_estimate=True)
  experiment = trainer.FederatedExperiment(config)
  assert experiment.memory_estimate.total_mb > 100 * 1024


@pytest.mark.full
def test_the_local_worker_is_replaced_every_few_rounds_without_changing_results(tmp_path, monkeypatch):
  """The worker's memory is bounded by replacing it at checkpoints; the rounds' results stay bit-identical."""
  import numpy as np

  from tff_gpt import runtime

  replace = runtime.replace_local_worker

  def run(name, every):
    monkeypatch.setattr(runtime, "REPLACE_WORKER_ROUNDS", every)
    pids = []

    def watched():
      pids.append(runtime.local_worker().process.pid)
      return replace()

    monkeypatch.setattr(runtime, "replace_local_worker", watched)
    with runtime.execution_context():
      config = helpers.tiny_config(tmp_path, experiment_name=name, total_rounds=6, rounds_per_checkpoint=2)
      weights = trainer.FederatedExperiment(config, progress=False).run()["model_weights"]
    return weights, pids

  kept, no_replacements = run("kept", 1000)
  replaced, pids = run("replaced", 2)
  assert no_replacements == [] and len(pids) == 3 and len(set(pids)) == 3  # Rounds 2, 4 and 6: new workers.
  for a, b in zip(kept.trainable, replaced.trainable, strict=True):
    np.testing.assert_array_equal(a, b)


_COUNT_ARENAS = """
import ctypes, sys, threading
from tff_gpt import runtime
if sys.argv[1] == "set_up":
  runtime.set_up()
import tensorflow as tf
def work():
  for _ in range(30):
    x = tf.random.normal([300, 300])
    (x @ x).numpy()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
ctypes.CDLL("libc.so.6").malloc_stats()  # One "Arena N:" block per arena, to stderr.
runtime.shutdown()
"""


def _arenas(mode: str) -> int:
  env = dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("MALLOC_ARENA_MAX", None)  # This process's own setting must not reach the child's start.
  result = subprocess.run(
    [sys.executable, "-c", _COUNT_ARENAS, mode], capture_output=True, text=True, env=env, timeout=300
  )
  assert result.returncode == 0, result.stderr[-2000:]
  return sum(line.startswith("Arena ") for line in result.stderr.splitlines())


def test_the_worker_and_this_process_use_few_malloc_arenas():
  """Many glibc arenas made the Python process grow over 1,000 rounds (docs/reliability.md): after
  `runtime.set_up`, 8 threads running TensorFlow ops leave at most 3 arenas in this process (2, and the one
  TensorFlow's import may make first) where they leave many more without it; TFF's worker starts with
  `MALLOC_ARENA_MAX=2`, which glibc reads when a process starts."""
  import psutil

  from tff_gpt import runtime

  assert _arenas("set_up") <= 3 < _arenas("default")
  helpers.ensure_tff_context()
  worker = runtime.local_worker()
  worker.stub()  # Started.
  assert psutil.Process(worker.process.pid).environ().get("MALLOC_ARENA_MAX") == "2"
