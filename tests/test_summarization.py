"""Summarization in a run: --rouge_pairs decodes held-out responses and scores them with rouge-score."""

import json

import pytest
from rouge_score import rouge_scorer

from tests import helpers
from tff_gpt import errors, generation, response_scoring
from tff_gpt.data import pairs
from tff_gpt.settings import ConfigError
from tff_gpt.training import report, trainer

DOCUMENTS = [
  ("the budget meeting moved to monday at noon in room four", "budget meeting monday"),
  ("please review the draft of the grant report before friday", "review grant draft"),
  ("the server will be down tonight for an upgrade of its disks", "server down tonight"),
]


def _corpus(path, documents=DOCUMENTS):
  rows = [
    {"client_id": f"list{c}", "prompt": f"{doc} {c}", "response": summary}
    for c in range(6)
    for doc, summary in documents
  ]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  return str(path)


def _config(tmp_path, **overrides):
  values = dict(
    dataset_path=_corpus(tmp_path / "mail.jsonl"),
    examples="pairs",
    response_separator="\\nTL;DR:",
    sequence_length=48,
    rouge_pairs=2,
    rouge_max_tokens=12,
  )
  return helpers.tiny_config(tmp_path, **(values | overrides))


def test_rouge_of_a_hand_made_pair():
  # Unigrams: 5 of 6 shared; bigrams: 3 of 5 (the cat, on the, the mat); longest common subsequence 5 of 6.
  scores = response_scoring.rouge(["the cat sat on the mat"], ["The cat lay on the mat."])
  assert scores == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6, "pairs": 1})
  assert response_scoring.rouge(["meetings moved"], ["meeting moves"])["rouge1"] == 1.0  # Porter stemmer.


def test_summarization_run_scores_its_greedy_responses_with_rouge_score(tmp_path):
  helpers.ensure_tff_context()
  config = _config(tmp_path, total_rounds=2, export=True)
  experiment = trainer.FederatedExperiment(config)
  summary = experiment.run()
  task = experiment.task
  model = task.keras_model(summary["model_weights"])
  separator = config.example_format().separator
  scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
  scored, decoder = [], response_scoring.greedy_decoder(model)
  for client in task.eval_client_ids:
    examples = [pairs.split(e) for e in task.test_data.texts[client][:2]]
    batch = response_scoring.greedy_responses(
      decoder, task.tokenizer, [p for p, _ in examples], separator, sequence_length=48, max_new_tokens=12
    )
    for (prompt, reference), response in zip(examples, batch, strict=True):
      # One prompt at a time, unpadded, through the project's reply: the same greedy tokens first.
      alone = generation.reply(model, task.tokenizer, prompt, separator, max_new_tokens=12, sampler="greedy")
      assert len(response) <= 12 and alone.startswith(response)
      scored.append(scorer.score(reference, response))
    assert summary["rouge_by_client"][client]["pairs"] == len(examples)
  assert sorted(summary["rouge_by_client"]) == sorted(task.eval_client_ids)
  for name in ("rouge1", "rouge2", "rougeL"):
    assert summary[f"eval_{name}"] == pytest.approx(sum(s[name].fmeasure for s in scored) / len(scored))
  assert "greedy responses: ROUGE-1" in report.format_summary(summary)
  assert summary["export"]


@pytest.mark.parametrize(
  "overrides, error, message",
  [
    (dict(examples="text"), ConfigError, "--rouge_pairs scores responses"),
    (dict(rouge_max_tokens=47), ConfigError, "--rouge_max_tokens must leave a prompt room"),
  ],
)
def test_rouge_settings_that_cannot_work_are_refused(tmp_path, overrides, error, message):
  with pytest.raises(error, match=message):
    _config(tmp_path, **overrides).validate()


def test_an_empty_document_stops_the_run_before_round_1(tmp_path):
  config = _config(tmp_path)
  path = tmp_path / "mail.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  rows[3]["prompt"] = "  "
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  config.validate()
  with pytest.raises(errors.UserInputError, match="has a pair with an empty document"):
    trainer.FederatedExperiment(config)
