"""Each part of one run tested alone on a `Run` of the tiny model, without a `FederatedExperiment`:
the task, the round loop, evaluation, restore, the report and the divergence record.

A whole run, built by the trainer and run from flags: `tests/test_training.py`, `tests/test_experiments.py`.
"""

import dataclasses
import os
import shutil

import numpy as np
import pytest

from tests import helpers
from tff_gpt import errors
from tff_gpt.training import divergence, evaluation, outputs, report, restore, rounds
from tff_gpt.training import run as run_lib
from tff_gpt.training.run import Run
from tff_gpt.training.task import FederatedTask

ROUNDS = 2

# Its module-scoped fixtures are built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A `Run` of the tiny GPT-2: 4 clients, 3 a round, one of the 4 evaluation clients a validation client."""
  helpers.ensure_tff_context()
  config = helpers.tiny_config(tmp_path_factory.mktemp("parts"), total_rounds=ROUNDS, validation_clients=1)
  config.validate()
  return Run.build(config)


@pytest.fixture(scope="module")
def finished(run):
  """The round loop run to the end on `run`: `(evaluate, what restore read before, final state, last row)`."""
  evaluate = evaluation.Evaluation(run.task, progress=False)
  before = restore.latest_state(run.task, run.process)
  run.dirs.create_all()
  outputs.write_json(run.dirs.run_config, run.task.run_config())
  state, last = rounds.RoundLoop(run, evaluate, progress=False).run()
  return evaluate, before, state, last


def test_task_sets_validation_clients_apart_from_the_test_clients(run):
  test, validation = run.task.eval_client_ids, run.task.validation_client_ids
  assert len(validation) == 1 and not set(test) & set(validation)
  assert sorted(test + validation) == run.task.test_data.client_ids  # clients_per_eval=None: all of them.


def test_task_of_a_stored_run_builds_its_model_without_reading_the_corpus(run, finished):
  stored = FederatedTask.of_run(run.dirs)
  assert "corpus" not in vars(stored) and "train_data" not in vars(stored)
  assert stored.model_config == run.task.model_config
  assert stored.tokenizer.config() == run.task.tokenizer.config()
  assert stored.config.to_dict() == run.config.to_dict()


def test_task_of_no_run_names_the_flags_to_check(tmp_path):
  with pytest.raises(
    errors.UserInputError, match="No run at .*check --root_output_dir and --experiment_name"
  ):
    FederatedTask.of_run(outputs.RunDirs.of(str(tmp_path), "nothing"))


def test_clients_of_a_round_depend_on_the_seed_and_the_round_only(run):
  assert len(run.clients_for_round(1)) == run.clients_per_round == 3
  in_order = {r: run.clients_for_round(r) for r in (1, 2, 7)}
  assert {r: run.clients_for_round(r) for r in (7, 2, 1)} == in_order  # No state carried between calls.
  assert len({tuple(c) for c in in_order.values()}) > 1


def test_a_round_row_counts_the_runs_bytes_and_clients(run):
  loop = rounds.RoundLoop(run, evaluation.Evaluation(run.task, progress=False), progress=False)
  _, row = loop.train_round(run.initial_state(), 3)
  per_client = run.bytes_per_client["client_download_bytes"] + run.bytes_per_client["client_upload_bytes"]
  assert row["round_bytes"] == run.round_bytes == 3 * per_client
  assert row["bytes_communicated"] == 3 * run.round_bytes == run.bytes_communicated(3)
  assert row["clients"] == 3 and row["train_sequences"] > 0 and np.isfinite(row["train_loss"])
  assert "eval_loss" not in row  # A round only trains; the loop evaluates.


def test_the_loop_records_every_round_and_restore_reads_its_last_checkpoint(run, finished):
  _, before, state, last = finished
  assert before == (None, 0)  # No checkpoint yet.
  rows = outputs.read_metrics(run.dirs)
  assert [int(r["round_num"]) for r in rows] == [1, 2]
  assert "eval_loss" in last and "val_loss" in last
  restored, round_num = restore.latest_state(run.task, run.process)
  assert round_num == ROUNDS
  got = run.process.get_model_weights(restored).trainable
  want = run.process.get_model_weights(state).trainable
  for g, w in zip(got, want, strict=True):
    np.testing.assert_array_equal(g, w)  # A checkpoint holds the weights bit for bit.
  weights, round_num = restore.latest_weights(restore.open_run(run.config.root_output_dir, "tiny"))
  assert round_num == ROUNDS
  for g, w in zip(weights.trainable, want, strict=True):
    np.testing.assert_array_equal(g, w)


def test_a_resumed_loop_goes_on_as_one_that_was_never_stopped(run, finished, tmp_path):
  """Round 3 after a restart (the state read back from round 2's checkpoint) equals round 3 trained from
  the state in memory: a resume equals an uninterrupted run (after kill -9: tests/test_faults.py)."""
  _, _, state, _ = finished
  root = str(tmp_path / "runs")
  shutil.copytree(run.config.root_output_dir, root)  # The process that wrote it "was killed" after round 2.
  task = FederatedTask.of_run(outputs.RunDirs.of(root, run.config.experiment_name))
  longer = dataclasses.replace(run.config, root_output_dir=root, total_rounds=ROUNDS + 1)
  restarted = dataclasses.replace(run, config=longer, task=task)
  loop = rounds.RoundLoop(restarted, evaluation.Evaluation(task, progress=False), progress=False)
  resumed, row = loop.run()
  uninterrupted, want = loop.train_round(state, ROUNDS + 1)
  for g, w in zip(
    resumed.global_model_weights.trainable, uninterrupted.global_model_weights.trainable, strict=False
  ):
    np.testing.assert_array_equal(g, w)
  assert row["train_loss"] == want["train_loss"]
  assert [int(r["round_num"]) for r in outputs.read_metrics(task.dirs)] == [1, 2, 3]
  assert outputs.read_sampled_clients(task.dirs) == {r: run.clients_for_round(r) for r in (1, 2, 3)}


def test_unreadable_checkpoints_fall_back_to_the_one_before_or_stop_keeping_them(run, finished, tmp_path):
  root = str(tmp_path / "runs")
  shutil.copytree(run.config.root_output_dir, root)
  dirs = outputs.RunDirs.of(root, run.config.experiment_name)
  task = FederatedTask.of_run(dirs)
  saved = sorted(int(d.removeprefix("program_state_")) for d in os.listdir(dirs.checkpoints) if "state_" in d)
  _truncate_checkpoint(dirs, saved[-1])
  assert restore.latest_state(task, run.process)[1] == saved[-2]
  for round_num in saved[:-1]:
    _truncate_checkpoint(dirs, round_num)
  with pytest.raises(outputs.NoReadableCheckpointError, match=f"none of the {len(saved)} checkpoints"):
    restore.latest_state(task, run.process, set_aside=True)
  assert sorted(d for d in os.listdir(dirs.checkpoints) if d.startswith("program_state_")) == [
    f"program_state_{r}" for r in saved
  ]


def _truncate_checkpoint(dirs, round_num):
  variables = os.path.join(dirs.checkpoints, f"program_state_{round_num}", "variables")
  [data] = [os.path.join(variables, f) for f in os.listdir(variables) if f.startswith("variables.data")]
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)  # As a disk that filled up during the save would leave it.


def test_restore_of_a_run_without_checkpoints_says_to_wait(run, tmp_path):
  dirs = outputs.RunDirs.of(str(tmp_path), run.config.experiment_name).create_all()
  outputs.write_json(dirs.run_config, run.task.run_config())
  with pytest.raises(errors.UserInputError, match="has no checkpoint yet; wait for the first one"):
    restore.latest_weights(FederatedTask.of_run(dirs))


def test_evaluation_in_groups_equals_one_keras_pass_over_the_test_clients(run, monkeypatch):
  """Federated evaluation, one call per group of clients, sums what Keras computes client by client."""
  monkeypatch.setattr(evaluation, "MIN_CLIENTS_PER_GROUP", 1)
  monkeypatch.setattr(evaluation, "GROUPS", 3)  # 3 test clients: 3 groups, combined by `combine`.
  weights = run.task.initial_weights()
  metrics = evaluation.Evaluation(run.task, progress=False)(weights)
  loss, tokens = helpers.keras_held_out_loss(run.task, weights)
  assert metrics["eval_tokens"] == tokens
  assert metrics["eval_loss"] == pytest.approx(loss, rel=1e-5)
  assert metrics["val_tokens"] > 0  # The validation client, apart.


def test_report_summarizes_the_run_and_evaluates_when_no_round_did(run, finished):
  evaluate, _, state, last = finished
  summary = report.summarize(run, evaluate, state, {}, memory_estimate_mb=12.4)
  assert summary["eval_loss"] == pytest.approx(last["eval_loss"], rel=1e-6)  # Evaluated again, same weights.
  assert summary["bytes_communicated"] == run.bytes_communicated(ROUNDS)
  assert summary["memory_estimate_mb"] == 12 and summary["validation_clients"] == 1
  assert {k: summary[k] for k in run.settings_summary()} == run.settings_summary()
  stored = outputs.read_json(run.dirs.summary)
  assert stored == {k: v for k, v in summary.items() if k != "model_weights"}
  report.add_to_summary(run.dirs, sample="ROMEO: hello")
  assert outputs.read_json(run.dirs.summary) == dict(stored, sample="ROMEO: hello")


def test_divergence_records_the_runs_settings_bytes_and_the_rates_to_lower(run, finished):
  rows = ({"train_loss": 2.5, "train_sequences": 9}, {"train_loss": float("nan"), "train_sequences": 9})
  error = divergence.stop(run, ROUNDS, "the round's train loss is nan", rows, last_checkpoint=1)
  assert str(error).startswith(
    "Round 2 diverged: the round's train loss is nan (train loss round 1 2.5, round 2 nan)."
  )
  assert "Lower --client_learning_rate (0.5 here)" in str(error)
  record = divergence.read(run.dirs.results)
  assert record["bytes_communicated"] == run.bytes_communicated(ROUNDS) and record["diverged_round"] == 2
  assert record["algorithm"] == "fedavg" and record["message"] == str(error)
  divergence.clear(run.dirs.results)
  assert divergence.read(run.dirs.results) is None
  assert not os.path.exists(os.path.join(run.dirs.results, divergence.FILE))


def test_settings_asking_for_more_clients_than_there_are_get_a_note_of_what_runs(run):
  asks = dataclasses.replace(run.config, clients_per_round=99, personalization_clients=100_000)
  assert run_lib.notes_on_capped_clients(asks, run.task) == [
    "--clients_per_round=99 but the corpus has 4 training clients: every round trains all 4.",
    "--personalization_clients=100000 but 3 evaluation clients have training text to fine-tune on: each "
    "evaluation personalizes those 3.",
  ]
  assert run_lib.notes_on_capped_clients(run.config, run.task) == []
  kept = dataclasses.replace(asks, population=4, personalization_clients=None)  # The task's 4 stand for it.
  assert run_lib.notes_on_capped_clients(kept, run.task) == [
    "--clients_per_round=99 but --population=4 keeps 4 training clients: every round trains all 4."
  ]
