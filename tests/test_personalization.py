"""Personalization evaluation: clients fine-tune the global model on their own text (TFF's computation)."""

import os

import pytest

from tests import helpers
from tff_gpt.training import outputs, report, trainer

# Its module-scoped run is built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  helpers.ensure_tff_context()
  config = helpers.tiny_config(
    tmp_path_factory.mktemp("personalization"),
    total_rounds=1,
    personalization_clients=4,
    personalization_steps=10,
    personalization_learning_rate=0.5,
    export=True,
  )
  experiment = trainer.FederatedExperiment(config)
  return experiment, experiment.run()


def test_each_client_personalizes_below_the_global_models_loss_on_its_held_out_text(run):
  experiment, summary = run
  rows = outputs.read_csv(summary["personalization_csv"])
  assert sorted(r["client_id"] for r in rows) == sorted(experiment.task.eval_client_ids)
  for r in rows:
    assert float(r["personalized_loss"]) < float(r["global_loss"]), r
  # The baseline is the global model: token-weighted, the federated evaluation's loss on the same clients.
  tokens = sum(int(r["tokens"]) for r in rows)
  assert tokens == summary["eval_tokens"]
  baseline = sum(float(r["global_loss"]) * int(r["tokens"]) for r in rows) / tokens
  assert baseline == pytest.approx(summary["eval_loss"], rel=1e-5)
  p = summary["personalization"]
  assert p["clients"] == 4 and p["fraction_improved"] == 1.0 and p["gain_median"] > 0
  assert "personalized on 4 clients" in report.format_summary(summary)
  metrics = outputs.read_metrics(experiment.dirs)
  assert float(metrics[-1]["personalization_gain_median"]) == pytest.approx(p["gain_median"])
  assert os.path.basename(summary["personalization_csv"]) == "personalization.csv"


@pytest.mark.full
def test_the_notebook_shows_the_gains(run, tmp_path):
  experiment, _ = run
  text = helpers.run_notebook(experiment.dirs.results, tmp_path, figures=3)
  assert "4 clients, held-out loss" in text and "100% of clients improved" in text
