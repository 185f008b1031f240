"""A diverging run stops at the round it diverged, says which rate to lower, and keeps what it finished.

A comparison with diverging grid points: `tests/test_compare.py`.
"""

import os

import numpy as np
import pytest

from tests import helpers
from tff_gpt import comparison, errors
from tff_gpt.models import tff_model
from tff_gpt.training import divergence, outputs, trainer

# The tiny model's client SGD at 0.5 trains; at 100 round 1 ends with finite weights so large that every
# client's round-2 update is NaN (TFF drops them all).
DIVERGING = 100.0


def test_diagnose_names_non_finite_weights_an_empty_round_and_a_non_finite_evaluation():
  finite = [np.ones((2, 3), np.float32), [np.zeros(4, np.float32)]]
  trained = {"train_sequences": 12, "train_loss": 3.2}
  assert divergence.diagnose(trained, finite) is None
  assert divergence.diagnose(dict(trained, eval_loss=3.1), finite) is None
  for bad in (np.nan, np.inf, -np.inf):
    weights = [np.ones((2, 3), np.float32), [np.array([0.0, bad, 0.0, 0.0], np.float32)]]
    assert "weights are no longer finite" in divergence.diagnose(trained, weights)
    assert f"held-out loss is {bad}" in divergence.diagnose(dict(trained, eval_loss=bad))
  assert "trained nothing" in divergence.diagnose({"train_sequences": 0, "train_loss": 0.0}, finite)
  assert "train loss is nan" in divergence.diagnose({"train_sequences": 12, "train_loss": np.nan}, finite)


def test_a_diverging_run_stops_there_names_the_rate_and_keeps_what_it_finished(tmp_path):
  # Not evaluated after round 1 (its evaluation would be NaN already, and stop the run there, as below).
  config = helpers.tiny_config(
    tmp_path, client_learning_rate=DIVERGING, total_rounds=6, rounds_per_eval=5, rounds_per_checkpoint=1
  )
  with pytest.raises(divergence.DivergedError) as raised:
    trainer.FederatedExperiment(config, progress=False).run()
  error = raised.value
  assert isinstance(error, errors.RunFailure)  # Entry points: "error: <message>", exit status 1.
  assert error.round_num == 2
  message = str(error)
  assert "Round 2 diverged: every sampled client's update was not finite" in message
  assert "--client_learning_rate (100 here)" in message and "--server_learning_rate" not in message
  assert "round 1's checkpoint are kept" in message and "train loss round 1 " in message
  dirs = outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
  rows = outputs.read_metrics(dirs)
  assert [int(r["round_num"]) for r in rows] == [1, 2]
  assert int(rows[1]["train_sequences"]) == 0
  assert sorted(f for f in os.listdir(dirs.checkpoints) if f.startswith("program_state")) == [
    "program_state_1"
  ]
  record = divergence.read(dirs.results)
  assert record["diverged_round"] == 2 and record["client_learning_rate"] == DIVERGING
  assert record["message"] == message and not os.path.exists(dirs.summary)

  # A comparison whose only configuration diverged before its first evaluation still gets a table and a plot.
  record = {"configuration": "tiny", "run": config.experiment_name, "summary": record}
  report = comparison.write_report([record], config.root_output_dir)
  (row,) = report["rows"]
  assert row["diverged_round"] == 2 and row["final_eval_loss"] == row["best_eval_loss"] == ""
  # The two rounds it ran, 3 clients each, every weight down and up (float32) and the client's weight.
  params = tff_model.build_keras_model(outputs.read_json(dirs.run_config)["model"]).count_params()
  assert (
    row["mb_communicated"] == round(2 * 3 * (8 * params + 4) / 2**20, 1) and row["client_lr"] == DIVERGING
  )
  with open(report["markdown"]) as f:
    assert "see grid.csv): tiny (round 2)." in f.read()
  assert os.path.getsize(report["plot"]) > 10_000  # A drawn figure, not an empty file.
