"""Classification in a run: --classes scores every evaluation (class words, or a classifier head exported
as transformers' GPT2ForSequenceClassification); bad labels stop it first."""

import json
import os

import numpy as np
import pytest
from sklearn import metrics

from tests import helpers
from tff_gpt import errors, generation
from tff_gpt.data import pairs
from tff_gpt.models import gpt2_lm, tff_model
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
    (dict(response_field="label"), errors.UserInputError, r":5: missing field\(s\) \['label'\]"),
  ],
)
def test_classes_that_do_not_fit_the_labels_stop_the_run_before_round_1(tmp_path, overrides, error, message):
  config = _config(tmp_path, **overrides)
  if overrides.get("examples") == "text":
    config.dataset_path = str(tmp_path / "corpus.jsonl")  # Plain text: helpers' corpus.
  if overrides.get("response_field"):  # One record without its label field.
    path = tmp_path / "reviews.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [{"label" if k == "response" else k: v for k, v in r.items()} for r in rows]
    del rows[4]["label"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  with pytest.raises(error, match=message):
    config.validate()
    trainer.FederatedExperiment(config)


@pytest.fixture(scope="module")
def head_run(tmp_path_factory):
  """A classifier head trained beside LoRA adapters, exported."""
  tmp_path = tmp_path_factory.mktemp("head")
  helpers.ensure_tff_context()
  config = _config(tmp_path, classify_with="head", trainable="lora:2", total_rounds=3, export=True)
  experiment = trainer.FederatedExperiment(config)
  return experiment, experiment.run()


def _own_predictions(experiment, summary) -> tuple[list[int], list[int], np.ndarray, dict]:
  """Truth and the head's argmax for each held-out text, one unpadded `[BOS] text` sequence at a time."""
  task = experiment.task
  model = task.keras_model(summary["model_weights"])
  classes, tokenizer = task.config.class_words(), task.tokenizer
  truth, predicted, logits, inputs = [], [], [], {"token_ids": [], "padding_mask": []}
  for client in task.eval_client_ids:
    for text, label in (pairs.split(e) for e in task.test_data.texts[client]):
      ids = np.concatenate([[tokenizer.bos_id], tokenizer.encode([text])[0]]).astype(np.int32)[None]
      row = model({"token_ids": ids, "padding_mask": np.ones_like(ids)}).numpy()[0, -1]
      truth.append(classes.index(label))
      predicted.append(int(np.argmax(row)))
      logits.append(row)
      if len(inputs["token_ids"]) < 4:
        inputs["token_ids"].append(ids[0])
  return truth, predicted, np.array(logits), inputs


def test_head_scores_its_own_predictions_as_scikit_learn_and_tff_do(head_run):
  experiment, summary = head_run
  truth, predicted, _, _ = _own_predictions(experiment, summary)
  assert len(truth) == sum(v["examples"] for v in summary["classification_by_client"].values()) > 0
  assert summary["eval_label_accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
  assert summary["eval_macro_f1"] == pytest.approx(metrics.f1_score(truth, predicted, average="macro"))
  # TFF's masked token accuracy reads the same last-token logits: it is the classifier's accuracy.
  rows = [r for r in outputs.read_metrics(experiment.dirs) if r.get("eval_loss")]
  assert len(rows) == 3
  assert all(float(r["eval_accuracy"]) == pytest.approx(float(r["eval_label_accuracy"])) for r in rows)
  assert "sample" not in summary  # A classifier writes no text, and says so when asked to.
  with pytest.raises(errors.UserInputError, match="trained a classifier head"):
    generation.generate(experiment.task.keras_model(summary["model_weights"]), experiment.task.tokenizer, "a")


@pytest.mark.parametrize("trainable", ["all", "last_blocks:1", "bitfit", "lora:2", "ffa_lora:2"])
def test_the_head_trains_in_every_trainable_mode(trainable):
  config = dict(gpt2_lm.size_config("tiny"), vocabulary_size=40, max_sequence_length=8, num_classes=3)
  model, trained, _ = tff_model.build_lm(config, trainable=trainable)
  (head,) = gpt2_lm.head_variables(model)
  assert head.shape == (16, 3) and trained[-1] is head
  assert len(trained) < len(model.weights) or trainable == "all"  # The rest as the mode says.


@pytest.mark.full
def test_head_export_loads_as_transformers_sequence_classifier_with_the_runs_logits(head_run, tmp_path):
  experiment, summary = head_run
  _, _, logits, inputs = _own_predictions(experiment, summary)
  rows = inputs["token_ids"]
  length = max(len(r) for r in rows)
  pad = experiment.task.tokenizer.pad_id
  token_ids = np.array([np.pad(r, (0, length - len(r)), constant_values=pad) for r in rows], np.int32)
  padding_mask = np.array([[1] * len(r) + [0] * (length - len(r)) for r in rows], np.int32)
  probe = tmp_path / "probe.npz"
  np.savez(probe, token_ids=token_ids, padding_mask=padding_mask, text="")
  helpers.colab(
    [os.path.join(helpers.REPO, "tests", "reference_gpt2.py"), "load-classifier", summary["export"], probe]
  )
  loaded = np.load(f"{probe}.load.npz")
  assert list(loaded["labels"]) == ["fresh", "rotten"]
  for name in ("huggingface", "portable"):  # Padded batches, pooled at each row's last token.
    np.testing.assert_allclose(loaded[name], logits[: len(rows)], atol=1e-4, err_msg=name)


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(classify_with="head", classes=None), "--classify_with head needs --classes"),
    (dict(classify_with="head", trainable="hetlora:2"), "--classify_with head trains beside adapters"),
  ],
)
def test_a_head_without_classes_or_with_ranked_adapters_is_refused(tmp_path, overrides, message):
  with pytest.raises(ConfigError, match=message):
    _config(tmp_path, **overrides).validate()


@pytest.mark.full
def test_notebook_shows_the_classifiers_confusion_matrix_with_the_runs_accuracy(head_run, tmp_path):
  experiment, summary = head_run
  text = helpers.run_notebook(experiment.dirs.results, tmp_path)  # Learning curves and the confusion matrix.
  assert f"held-out texts: accuracy {summary['eval_label_accuracy']:.4f}" in text
  diffs = helpers.one_call_diffs(text)
  assert set(diffs) == {"huggingface"} and diffs["huggingface"] < 1e-4, diffs
