"""Classification in generative form in a run: --classes scores every evaluation; bad labels stop it first."""

import json

import pytest

from tests import helpers
from tff_gpt import errors
from tff_gpt.settings import ConfigError
from tff_gpt.training import outputs, report, trainer

REVIEWS = {"fresh": ["a fine film", "good and warm", "great fun"], "rotten": ["a dull mess", "bad and cold"]}


def _labelled(path, responses=None):
  rows = [
    {"client_id": f"movie{m}", "prompt": f"{text} {m}", "response": (responses or {}).get(label, label)}
    for m in range(6)
    for label, texts in REVIEWS.items()
    for text in texts
  ]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  return str(path)


def _config(tmp_path, **overrides):
  values = dict(
    dataset_path=_labelled(tmp_path / "reviews.jsonl"),
    examples="pairs",
    classes="fresh,rotten",
    response_separator="\\n>",
    sequence_length=24,
    total_rounds=2,
  )
  return helpers.tiny_config(tmp_path, **(values | overrides))


def test_every_evaluation_scores_the_likeliest_class_overall_and_per_client(tmp_path):
  helpers.ensure_tff_context()
  experiment = trainer.FederatedExperiment(_config(tmp_path))
  summary = experiment.run()
  rows = [r for r in outputs.read_metrics(experiment.dirs) if r.get("eval_loss")]
  assert len(rows) == 2 and all(0 <= float(r["eval_label_accuracy"]) <= 1 for r in rows)
  by_client = summary["classification_by_client"]
  test = experiment.task.test_data.texts
  assert sorted(by_client) == sorted(experiment.task.eval_client_ids)
  assert all(by_client[c]["examples"] == len(test[c]) for c in by_client)  # Every held-out pair, once.
  overall = sum(by_client[c]["accuracy"] * by_client[c]["examples"] for c in by_client) / sum(
    by_client[c]["examples"] for c in by_client
  )
  assert summary["eval_label_accuracy"] == pytest.approx(overall)  # The clients' accuracies, by examples.
  assert 0 <= summary["eval_macro_f1"] <= 1
  assert f"likeliest class: accuracy {summary['eval_label_accuracy']:.4f}" in report.format_summary(summary)


@pytest.mark.parametrize(
  "overrides, error, message",
  [
    (dict(classes="fresh"), ConfigError, "--classes needs two or more different words"),
    (dict(examples="text", classes="fresh,rotten"), ConfigError, "--classes scores responses"),
    (dict(classes="fresh,stale"), errors.UserInputError, "has the response 'rotten', not one of --classes"),
    (dict(classes="fresh,rotten,meh"), errors.UserInputError, r"class\(es\) \['meh'\]"),
  ],
)
def test_classes_that_do_not_fit_the_labels_stop_the_run_before_round_1(tmp_path, overrides, error, message):
  config = _config(tmp_path, **overrides)
  if overrides.get("examples") == "text":
    config.dataset_path = str(tmp_path / "corpus.jsonl")  # Plain text: helpers' corpus.
  with pytest.raises(error, match=message):
    config.validate()
    trainer.FederatedExperiment(config)
