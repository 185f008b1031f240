"""Clients that drop out, over-selection and simulated time (`tff_gpt.training.cohorts`)."""

import csv
import dataclasses
import math
import os

import pytest

from tests import helpers
from tff_gpt.settings import ConfigError
from tff_gpt.training import cohorts, outputs, trainer

SAMPLED = [f"c{i}" for i in range(10)]


def test_dropout_is_a_function_of_the_seed_and_the_round():
  one = cohorts.choose(SAMPLED, round_num=3, seed=7, target=10, dropout=0.3)
  assert one == cohorts.choose(SAMPLED, round_num=3, seed=7, target=10, dropout=0.3)  # As on resume.
  assert one.dropped and set(one.dropped) | set(one.reporters) == set(SAMPLED) and not one.late
  other_rounds = [cohorts.choose(SAMPLED, round_num=r, seed=7, target=10, dropout=0.3) for r in range(4, 9)]
  assert any(c.dropped != one.dropped for c in other_rounds)
  assert cohorts.choose(SAMPLED, round_num=3, seed=7, target=10).reporters == tuple(SAMPLED)  # No dropout.


def test_over_selection_aggregates_exactly_the_first_clients_per_round_to_report():
  for round_num in range(1, 30):
    c = cohorts.choose(SAMPLED, round_num=round_num, seed=0, target=6, dropout=0.2)
    reported = [x for x in SAMPLED if x not in c.dropped]
    assert c.reporters == tuple(reported[:6]) and c.late == tuple(reported[6:])  # In sampled order.
    assert len(c.reporters) == min(6, len(reported))
  assert cohorts.sampled_per_round(10, 1.3, population=1000) == 13
  assert cohorts.sampled_per_round(10, 1.3, population=11) == 11


def test_the_simulated_round_lasts_as_long_as_its_slowest_aggregated_reporter():
  seconds = {"a": 4.0, "b": 1.0, "c": 9.0, "d": 2.5, "e": 7.0}
  c = cohorts.choose(list(seconds), round_num=1, seed=0, target=3, seconds_of=seconds.get, overhead=10.0)
  # The three fastest report first ("b" 1.0, "d" 2.5, "a" 4.0); the round waits for "a".
  assert c.reporters == ("a", "b", "d") and c.late == ("c", "e") and c.simulated_seconds == 10.0 + 4.0


def test_client_speeds_are_seeded_lognormal_around_the_median(tmp_path):
  config = helpers.tiny_config(tmp_path, client_speeds="lognormal:0.5")
  speed = cohorts.speed_of(dataclasses.replace(config, client_speed_median=200.0))
  assert speed("alice") == speed("alice") and speed("alice") != speed("bob")
  logs = [math.log(speed(f"client{i}") / 200.0) for i in range(4000)]
  assert sum(logs) / len(logs) == pytest.approx(0.0, abs=0.03)  # Median 200.
  assert math.sqrt(sum(x * x for x in logs) / len(logs)) == pytest.approx(0.5, abs=0.02)  # Sigma 0.5.
  assert cohorts.speed_of(dataclasses.replace(config, client_speeds=None)) is None


@pytest.mark.parametrize(
  "flag, value, message",
  [
    ("client_dropout", 1.0, r"--client_dropout must be in \[0, 1\)"),
    ("over_selection", 0.8, "--over_selection must be >= 1"),
    ("client_speeds", "gaussian:1", "--client_speeds must be lognormal:S"),
    ("client_speeds", "lognormal:x", "--client_speeds must be lognormal:S"),
  ],
)
def test_bad_cohort_settings_are_one_line_errors(tmp_path, flag, value, message):
  with pytest.raises(ConfigError, match=message):
    helpers.tiny_config(tmp_path, **{flag: value}).validate()


def _clients(config) -> list[dict]:
  dirs = outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
  with open(os.path.join(dirs.results, "sampled_clients.csv"), newline="") as f:
    return list(csv.DictReader(f))


def test_a_run_with_dropout_drops_the_same_clients_on_resume_and_logs_simulated_time(tmp_path):
  helpers.ensure_tff_context()
  clients = {f"u{i}": [f"text {i} of user {i} " * 3] * 4 for i in range(12)}
  path = helpers.write_jsonl_corpus(tmp_path / "users.jsonl", clients)
  cohort = dict(client_dropout=0.4, over_selection=1.5, client_speeds="lognormal:1", round_overhead_seconds=5)

  def run(name, rounds):
    config = helpers.tiny_config(
      tmp_path, experiment_name=name, dataset_path=path, total_rounds=rounds, clients_per_round=4, **cohort
    )
    return config, trainer.FederatedExperiment(config, progress=False).run()

  config, _ = run("whole", 4)
  run("resumed", 2)  # Then "killed": run again with more rounds.
  resumed_config, _ = run("resumed", 4)
  whole, resumed = _clients(config), _clients(resumed_config)
  assert whole == resumed and len(whole) == 4
  assert any(cohorts.parse_ids(row.get("dropped_ids") or "[]") for row in whole)
  experiment = trainer.FederatedExperiment(config, progress=False)
  rows = outputs.read_metrics(experiment.dirs)
  for row, recorded in zip(rows, whole, strict=True):
    reporters = cohorts.parse_ids(recorded["client_ids"])
    assert int(row["clients"]) == len(reporters) <= 4 and int(row["sampled_clients"]) == 6
    speed, task = experiment.context.speed, experiment.task
    by_hand = max(  # Each reporter's tokens (its sequences, capped, times the length) over its speed.
      min(task.train_data.num_sequences(c), config.max_elements_per_client)
      * config.sequence_length
      / speed(c)
      for c in reporters
    )
    assert float(row["simulated_seconds"]) == pytest.approx(5 + by_hand)
  assert float(rows[-1]["simulated_time"]) == pytest.approx(sum(float(r["simulated_seconds"]) for r in rows))


def test_a_round_every_sampled_client_drops_trains_nothing_and_the_run_goes_on(tmp_path):
  helpers.ensure_tff_context()
  config = helpers.tiny_config(tmp_path, total_rounds=4, clients_per_round=1, client_dropout=0.9)
  experiment = trainer.FederatedExperiment(config, progress=False)
  summary = experiment.run()
  rows = outputs.read_metrics(experiment.dirs)
  empty = [r for r in rows if int(r["clients"]) == 0]
  assert len(rows) == 4 and empty and all(math.isnan(float(r["train_loss"])) for r in empty)
  assert all(
    cohorts.parse_ids(row["client_ids"]) == []
    for row, r in zip(_clients(config), rows, strict=True)
    if r in empty
  )
  assert math.isfinite(summary["eval_loss"])


def test_client_ids_with_spaces_commas_and_quotes_read_back_as_written(tmp_path):
  """Shakespeare's roles hold spaces ("hamlet:First Player"); runs before JSON fields wrote ids
  space-separated, and still read."""
  import asyncio

  dirs = outputs.RunDirs.of(str(tmp_path), "ids")
  os.makedirs(dirs.results, exist_ok=True)
  _, _, clients_manager = outputs.create_managers(dirs)
  written = {1: ("hamlet:First Player", "a,b", 'say "hi"'), 2: ()}
  for round_num, ids in written.items():
    asyncio.run(clients_manager.release(cohorts.Cohort(ids).row(), key=round_num))
  assert outputs.read_sampled_clients(dirs) == {r: list(ids) for r, ids in written.items()}
  assert cohorts.parse_ids("hamlet:HAMLET romeo:ROMEO") == ["hamlet:HAMLET", "romeo:ROMEO"]  # An old row.
