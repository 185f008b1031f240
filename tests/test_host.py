"""Process settings: importing the library changes nothing; `set_up` sizes them from the host."""

import os
import subprocess
import sys

import pytest

from tests import helpers
from tff_gpt.runtime import host

_IMPORTS_CHANGE_NOTHING = """
import logging, os
import keras_nlp, tensorflow as tf, tensorflow_federated  # Third-party imports set variables of their own.
def snapshot():
  threads = tf.config.threading
  filters = {n: list(logging.getLogger(n).filters) for n in ("absl", "tensorflow")}
  pools = threads.get_intra_op_parallelism_threads(), threads.get_inter_op_parallelism_threads()
  return dict(os.environ), pools, filters
before = snapshot()
import tff_gpt.runtime, tff_gpt.training, tff_gpt.training.trainer, tff_gpt.comparison
after = snapshot()
changed = {k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k)}
assert not changed, changed
assert before[1:] == after[1:], (before[1:], after[1:])
from tff_gpt import runtime
runtime.set_up()
assert os.environ["TF_NUM_INTRAOP_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
assert tf.config.threading.get_intra_op_parallelism_threads() == int(os.environ["TF_NUM_INTRAOP_THREADS"])
runtime.shutdown()
print("ok")
"""


def test_importing_the_library_changes_nothing_and_set_up_configures():
  env = {k: v for k, v in os.environ.items() if k not in (host.INTRA_OP, host.INTER_OP, host.ARENAS)}
  result = subprocess.run(
    [sys.executable, "-c", _IMPORTS_CHANGE_NOTHING],
    capture_output=True,
    text=True,
    cwd=helpers.REPO,
    env=dict(env, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="3"),
    timeout=300,
  )
  assert result.stdout.strip().endswith("ok"), result.stderr[-3000:]


@pytest.mark.parametrize(
  "cores, gpu, calls, expected",
  [
    (2, False, 2, host.ProcessSettings(1, 2, 2)),  # The development machine: the measured settings.
    (16, False, 2, host.ProcessSettings(8, 2, 2)),
    (16, False, 1, host.ProcessSettings(16, 2, 2)),
    (4, False, 0, host.ProcessSettings(1, 2, 2)),  # No limit on concurrent clients: one core each.
    (16, True, 2, host.ProcessSettings(None, None, 2)),  # A GPU: TensorFlow's own thread defaults.
  ],
)
def test_host_sizing(cores, gpu, calls, expected):
  assert host.for_host(cores=cores, gpu=gpu, concurrent_calls=calls) == expected


def test_an_argument_beats_the_environment_which_beats_the_host(monkeypatch):
  monkeypatch.delenv(host.INTRA_OP, raising=False)
  monkeypatch.setenv(host.INTER_OP, "3")  # Set by the user.
  monkeypatch.setenv(host.ARENAS, "4")
  applied = host.configure(malloc_arenas=5, concurrent_calls=2)
  assert applied.inter_op_threads == 3 and applied.malloc_arenas == 5
  assert os.environ[host.INTER_OP] == "3" and os.environ[host.ARENAS] == "5"
  assert applied.intra_op_threads == host.for_host(concurrent_calls=2).intra_op_threads
  # What configure wrote itself is not taken for the user's choice by a later call.
  assert host.configure(concurrent_calls=2).malloc_arenas == 2
