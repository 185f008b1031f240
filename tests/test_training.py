"""Federated training end to end on a tiny model: learning, evaluation, resume."""

import csv
import dataclasses
import os
import shutil

import numpy as np
import pytest

from tests import helpers
from tff_gpt.training import outputs, trainer

ROUNDS = 4


def _rows(config):
  return outputs.read_metrics(outputs.RunDirs.of(config.root_output_dir, config.experiment_name))


# Its module-scoped fixtures are built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """A 4-round run evaluated and checkpointed every round."""
  tmp_path = tmp_path_factory.mktemp("uninterrupted")
  helpers.ensure_tff_context()
  config = helpers.tiny_config(
    tmp_path, total_rounds=ROUNDS, client_optimizer="adam", client_learning_rate=0.01, rounds_per_checkpoint=2
  )
  experiment = trainer.FederatedExperiment(config)
  summary = experiment.run()
  return experiment, config, summary


def test_loss_falls(uninterrupted):
  _, config, summary = uninterrupted
  rows = _rows(config)
  assert [int(r["round_num"]) for r in rows] == list(range(1, ROUNDS + 1))
  eval_loss = [float(r["eval_loss"]) for r in rows]
  assert eval_loss[-1] < eval_loss[0] - 0.3
  assert summary["unigram_perplexity"] > 1


def test_metrics_columns_and_summary(uninterrupted):
  _, config, summary = uninterrupted
  row = _rows(config)[-1]
  for column in (
    "train_loss",
    "train_perplexity",
    "train_accuracy",
    "train_tokens",
    "eval_loss",
    "eval_perplexity",
    "eval_accuracy",
    "round_seconds",
    "tokens_per_second",
    "memory_mb",
    "clients",
  ):
    assert row[column] != "", column
  assert int(row["clients"]) == config.clients_per_round
  assert float(row["eval_perplexity"]) == pytest.approx(np.exp(float(row["eval_loss"])), rel=1e-6)
  assert 0 < float(row["eval_accuracy"]) < 1
  assert summary["eval_loss"] == pytest.approx(float(row["eval_loss"]))
  # One label a character: the per-character loss is the loss itself.
  assert summary["tokenizer"] == "char"
  assert float(row["eval_loss_per_char"]) == pytest.approx(float(row["eval_loss"]), rel=1e-6)
  dirs = outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
  hparams = list(csv.DictReader(open(os.path.join(dirs.results, outputs.HPARAMS_FILE))))
  assert hparams[0]["client_learning_rate"] == "0.01"
  assert outputs.read_json(dirs.run_config)["model"]["hidden_dim"] == 16
  assert "eval_loss" in outputs.read_json(dirs.summary)
  assert os.listdir(dirs.logdir), "TensorBoard events are written"


@pytest.mark.full  # The everyday tier: tests/test_run_parts.py resumes at the seam.
def test_resume_after_kill_equals_uninterrupted_run(uninterrupted, tmp_path):
  _, reference_config, reference = uninterrupted
  config = helpers.tiny_config(
    tmp_path, total_rounds=3, client_optimizer="adam", client_learning_rate=0.01, rounds_per_checkpoint=2
  )
  trainer.FederatedExperiment(config, progress=False).run()
  dirs = outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
  # Round 3 finished and released its metrics, then the run was killed before
  # its checkpoint was written: remove that checkpoint.
  shutil.rmtree(os.path.join(dirs.checkpoints, "program_state_3"))
  assert len(_rows(config)) == 3

  config.total_rounds = ROUNDS
  resumed = trainer.FederatedExperiment(config, progress=False).run()

  rows = _rows(config)
  assert [int(r["round_num"]) for r in rows] == [1, 2, 3, 4]
  for row, ref in zip(rows, _rows(reference_config), strict=True):
    assert float(row["train_loss"]) == pytest.approx(float(ref["train_loss"]), rel=1e-5)
  got_weights, want_weights = resumed["model_weights"].trainable, reference["model_weights"].trainable
  for got, want in zip(got_weights, want_weights, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  # Running the finished command again trains nothing and changes no row.
  again = trainer.FederatedExperiment(config, progress=False).run()
  assert _rows(config) == rows
  assert again["eval_loss"] == pytest.approx(resumed["eval_loss"], rel=1e-5)


def test_resume_with_other_settings_fails_before_building_anything(uninterrupted):
  _, config, _ = uninterrupted
  changed = dataclasses.replace(config, client_learning_rate=0.02)
  with pytest.raises(trainer.ResumeError, match="--client_learning_rate was 0.01, now 0.02"):
    trainer.FederatedExperiment(changed)


@pytest.mark.full
def test_a_run_with_dropout_repeats_and_resumes_exactly(tmp_path):
  """Dropout masks come from the batches (seeded_dropout.py): no unseeded state decides a run."""

  def run(name, rounds, model_size="2x16h2d0.3"):
    config = helpers.tiny_config(
      tmp_path,
      experiment_name=name,
      model_size=model_size,
      total_rounds=rounds,
      client_optimizer="adam",
      client_learning_rate=0.01,
      rounds_per_eval=rounds,
    )
    return config, trainer.FederatedExperiment(config, progress=False).run()

  config, uninterrupted = run("dropout", 3)
  resumed_config, _ = run("dropout_resumed", 2)  # Then "killed": run again with more rounds.
  _, resumed = run("dropout_resumed", 3)
  for got, want in zip(
    resumed["model_weights"].trainable, uninterrupted["model_weights"].trainable, strict=True
  ):
    np.testing.assert_array_equal(got, want)
  assert [int(r["round_num"]) for r in _rows(resumed_config)] == [1, 2, 3]
  assert [r["train_loss"] for r in _rows(resumed_config)] == [r["train_loss"] for r in _rows(config)]
  # The same run without dropout (same shape and initial weights) trains differently from round 1.
  plain_config, _ = run("no_dropout", 1, model_size="2x16h2")
  assert _rows(plain_config)[0]["train_loss"] != _rows(config)[0]["train_loss"]
