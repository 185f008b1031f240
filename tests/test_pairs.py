"""Prompt and response pairs: the length rule, the masked loss, the readers, dialogue, and a federated run."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from tests import helpers
from tff_gpt import errors, export, generation, label_scoring
from tff_gpt.algorithms import privacy
from tff_gpt.data import client_data, pairs, preprocessing, shakespeare, text_corpus, tokenizers
from tff_gpt.export import portable
from tff_gpt.models import gpt2_lm, metrics, tff_model
from tff_gpt.training import outputs, report, trainer

IGNORE = preprocessing.IGNORE_LABEL
SEP = pairs.DEFAULT_SEPARATOR


def _window(prompt, response, length, long_responses="cut", sep=(7, 8)):
  return pairs.window(
    np.array(prompt), np.array(sep), np.array(response), sequence_length=length, bos_id=1, eos_id=2,
    long_responses=long_responses,
  )  # fmt: skip


def test_labels_are_the_response_and_its_end_token_only():
  w = _window([10, 11, 12], [20, 21], length=10)
  packed = pairs.pack_windows([w], sequence_length=10, pad_id=0)
  np.testing.assert_array_equal(w.tokens, [1, 10, 11, 12, 7, 8, 20, 21, 2])
  np.testing.assert_array_equal(packed["token_ids"][0], [1, 10, 11, 12, 7, 8, 20, 21, 2, 0])
  np.testing.assert_array_equal(packed["padding_mask"][0], [1] * 9 + [0])
  # Position i predicts token i + 1: the separator's last token predicts the response's first.
  np.testing.assert_array_equal(packed["labels"][0], [IGNORE] * 5 + [20, 21, 2] + [IGNORE] * 2)
  assert not (w.prompt_cut or w.response_cut)


def test_a_long_prompt_is_cut_from_its_start_and_a_long_response_cut_or_dropped():
  w = _window(list(range(10, 20)), [20, 21], length=8)  # 9 tokens: BOS, 2 separator, 3 response, 3 prompt.
  np.testing.assert_array_equal(w.tokens, [1, 17, 18, 19, 7, 8, 20, 21, 2])
  assert w.prompt_cut and not w.response_cut
  w = _window([10], list(range(30, 40)), length=8)  # The response alone does not fit: no prompt, no end.
  np.testing.assert_array_equal(w.tokens, [1, 7, 8, 30, 31, 32, 33, 34, 35])
  assert w.prompt_cut and w.response_cut
  assert _window([10], list(range(30, 40)), length=8, long_responses="drop") is None
  with pytest.raises(ValueError, match="no room for a response"):
    _window([10], [20], length=3, sep=(7, 8, 9))


def _pair_data(texts, length=16, **kwargs):
  return pairs.TokenizedPairs(
    texts, tokenizers.CharTokenizer(), sequence_length=length, separator="\n>", **kwargs
  )


def test_the_masked_loss_is_the_cross_entropy_of_response_tokens_computed_by_hand():
  examples = [pairs.join("to be", "or not", "\n>")[0], pairs.join("a long prompt to cut", "yes", "\n>")[0]]
  data = _pair_data({"c": examples})
  batch = data.sequences("c")
  tf.keras.utils.set_random_seed(3)
  config = gpt2_lm.model_config(
    "tiny", vocabulary_size=data.tokenizer.vocabulary_size, max_sequence_length=16
  )
  model = tff_model.build_keras_model(config)
  logits = model({k: batch[k] for k in ("token_ids", "padding_mask")}).numpy().astype(np.float64)
  labels = batch["labels"]
  keep = labels != IGNORE
  assert keep.sum() == len("or not") + 1 + len("yes") + 1  # Each response and its end token.
  log_probs = logits - logits.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  by_hand = -np.take_along_axis(log_probs, np.maximum(labels, 0)[..., None], -1)[..., 0][keep].mean()
  accuracy = (logits.argmax(-1) == labels)[keep].mean()
  loss, token_loss, token_accuracy = metrics.lm_loss(), metrics.TokenLoss(), metrics.TokenAccuracy()
  token_loss.update_state(labels, logits)
  token_accuracy.update_state(labels, logits)
  assert float(loss(labels, logits)) == pytest.approx(by_hand, rel=1e-6)
  assert float(token_loss.result()) == pytest.approx(by_hand, rel=1e-6)
  assert float(token_accuracy.result()) == pytest.approx(accuracy, abs=1e-7)
  # Any value at a prompt position of the labels is ignored: replace the prompt's with its true next tokens.
  text_labels = np.where(keep, labels, np.roll(batch["token_ids"], -1, axis=1))
  prompt_only = ~keep & (batch["padding_mask"] == 1)
  changed = np.where(prompt_only, text_labels, labels)
  assert (changed != labels).any()
  changed = np.where(prompt_only, IGNORE, changed)  # What the pipeline does with them.
  assert float(loss(changed, logits)) == pytest.approx(by_hand, rel=1e-6)
  assert float(loss(np.where(batch["padding_mask"] == 1, text_labels, IGNORE), logits)) != pytest.approx(
    by_hand
  )


def test_pair_counts_and_characters():
  texts = {"c": [pairs.join("p" * 30, "short", "\n>")[0], pairs.join("q", "r" * 40, "\n>")[0]]}
  data = _pair_data(texts)
  assert data.counts() == pairs.PairCounts(pairs=2, prompts_cut=2, responses_cut=1, responses_dropped=0)
  # 'short' and its end (6), and the cut response's share: 14 of its 41 labels stand for 14 of 41 characters.
  assert data.num_characters("c") == 6 + 14
  dropped = _pair_data(texts, long_responses="drop")
  assert dropped.num_sequences("c") == 1 and dropped.counts().responses_dropped == 1


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  return str(path)


def test_jsonl_pairs_and_alpaca_records_and_their_counted_drops(tmp_path):
  rows = [
    {"client_id": "a", "prompt": "hi", "response": "hello"},
    {"client_id": "a", "prompt": "hi", "response": "  "},  # Empty response: dropped, counted.
    {"client_id": "b", "prompt": f"x{SEP}y", "response": "z"},  # Separator inside: dropped, counted.
  ]
  parsed = text_corpus.parse_jsonl(
    _write(tmp_path / "p.jsonl", rows), client_field="client_id", examples=pairs.ExampleFormat("pairs")
  )
  assert parsed.clients == {"a": [f"hi{pairs.PAIR_MARK}hello"]}
  assert parsed.dropped == {pairs.EMPTY_RESPONSE: 1, pairs.SEPARATOR_INSIDE: 1}
  alpaca = [
    {"client_id": "a", "instruction": "Add", "input": "1 2", "output": "3"},
    {"client_id": "a", "instruction": "Greet", "output": "hi"},
  ]
  parsed = text_corpus.parse_jsonl(
    _write(tmp_path / "a.jsonl", alpaca), client_field="client_id", examples=pairs.ExampleFormat("alpaca")
  )
  assert [pairs.split(e) for e in parsed.clients["a"]] == [
    ("### Instruction:\nAdd\n\n### Input:\n1 2", "3"),
    ("### Instruction:\nGreet", "hi"),
  ]


@pytest.mark.parametrize(
  "rows, message",
  [
    ([{"client_id": "a", "prompt": "only a prompt"}], r"prompts.jsonl:1: missing field\(s\) \['response'\]"),
    (
      [{"client_id": "a", "prompt": "p", "response": 3}],
      "prompts.jsonl:1: field 'response' must be a string",
    ),
    ([{"client_id": "a", "prompt": "p", "response": ""}], r"no usable JSON lines \(dropped"),
  ],
)
def test_bad_pair_files_name_the_file_and_line(tmp_path, rows, message):
  with pytest.raises(client_data.CorpusError, match=message):
    text_corpus.parse_jsonl(
      _write(tmp_path / "prompts.jsonl", rows),
      client_field="client_id",
      examples=pairs.ExampleFormat("pairs"),
    )


PLAY = """# Act 1
**ROMEO**
But soft, what light?
_Exit_
**JULIET**
Ay me.
**ROMEO**
She speaks.
# Scene 2
**NURSE**
Madam!
**ROMEO & JULIET**
Farewell.
**NURSE**
Go.
**NURSE**
Still here.
"""


def test_shakespeare_dialogue_pairs_each_speech_with_the_one_before_in_its_scene():
  got = {role: [pairs.split(p) for p in ps] for role, ps in shakespeare.dialogue_pairs(PLAY, SEP).items()}
  assert got == {
    "JULIET": [("ROMEO:\nBut soft, what light?", "Ay me.")],
    "ROMEO": [("JULIET:\nAy me.", "She speaks.")],  # Not NURSE's "Madam!": a new scene starts.
    "NURSE": [
      ("ROMEO & JULIET:\nFarewell.", "Go.")
    ],  # A joint speech prompts; NURSE answering NURSE does not.
  }


def test_shakespeare_dialogue_corpus_has_natural_clients_and_a_summary(tmp_path):
  plays = tmp_path / "plays"
  plays.mkdir()
  for name in ("hamlet.md", "macbeth.md"):  # Two of the plays, to keep it quick.
    shutil.copy(os.path.join(shakespeare.find_plays_dir(), "tragedies", name), plays / name)
  corpus = shakespeare.load_data(
    plays_dir=str(plays), cache_dir=str(tmp_path / "cache"), examples=pairs.ExampleFormat("pairs")
  )
  train = corpus.texts("train")
  assert len(train) > 40 and all(cid.split(":")[0] in ("hamlet", "macbeth") for cid in train)
  prompt, response = pairs.split(train["hamlet:HAMLET"][0])
  assert prompt.split(":\n", 1)[0].isupper() and response
  assert "Federated corpus 'shakespeare_dialogue'" in corpus.summary_text()
  assert corpus.summary["partition_label"] == "play"


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("pairs")
  rows = [
    {"client_id": c, "prompt": f"say {w}", "response": f"{w} {w}"}
    for c, words in {"a": ["abc", "cab"], "b": ["xyz", "zyx"], "c": ["cat", "act"]}.items()
    for w in words * 4
  ]
  helpers.ensure_tff_context()
  config = helpers.tiny_config(
    tmp_path,
    dataset_path=_write(tmp_path / "pairs.jsonl", rows),
    examples="pairs",
    response_separator="\\n>",
    sequence_length=24,
    total_rounds=3,
  )
  experiment = trainer.FederatedExperiment(config)
  return experiment, experiment.run()


def test_a_federated_run_on_pairs_learns_the_responses_and_counts_them(pair_run):
  experiment, summary = pair_run
  rows = [r for r in outputs.read_metrics(experiment.dirs) if r.get("eval_loss")]
  assert float(rows[-1]["eval_loss"]) < float(rows[0]["eval_loss"])
  assert summary["pairs"]["train"] == {
    "pairs": 18,
    "prompts_cut": 0,
    "responses_cut": 0,
    "responses_dropped": 0,
  }
  # Held-out tokens are the test responses and their end tokens only.
  test = experiment.task.test_data
  responses = [pairs.split(e)[1] for cid in experiment.task.eval_client_ids for e in test.texts[cid]]
  assert summary["eval_tokens"] == sum(len(r) + 1 for r in responses)
  assert summary["eval_loss_per_char"] == pytest.approx(summary["eval_loss"])  # Characters: a label each.
  assert "prompt and response pairs, loss on responses: train 18 pairs" in report.format_summary(summary)


def test_a_reply_is_the_greedy_continuation_after_the_separator_up_to_the_end_token(pair_run):
  experiment, summary = pair_run
  model = experiment.task.keras_model(summary["model_weights"])
  tokenizer = experiment.task.tokenizer
  # By hand: argmax of the backbone's next-token logits after `[BOS] prompt separator`, one token at a time.
  ids = [tokenizer.bos_id, *(int(i) for part in tokenizer.encode(["say abc", "\n>"]) for i in part)]
  backbone, new = gpt2_lm.backbone_of(model), []
  while len(ids) < 24 and tokenizer.eos_id not in new:
    x = {"token_ids": np.array([ids], np.int32), "padding_mask": np.ones((1, len(ids)), bool)}
    hidden = backbone(x)[0, -1]
    logits = tf.linalg.matvec(backbone.token_embedding.embeddings, hidden)
    new.append(int(np.argmax(logits)))
    ids.append(new[-1])
  assert tokenizer.eos_id in new  # The case under test: the model ends its reply itself.
  expected = tokenizer.decode(np.array(new[: new.index(tokenizer.eos_id)], np.int32))
  assert generation.reply(model, tokenizer, "say abc", "\n>", sampler="greedy") == expected


def test_the_export_holds_the_pairs_and_the_portable_packing_equals_trainings(pair_run, tmp_path):
  experiment, summary = pair_run
  out = export.export_run(experiment.task, summary["model_weights"], 3, out_dir=str(tmp_path / "export"))
  config = portable.read_config(out)
  assert config["examples"] == {"kind": "pairs", "separator": "\n>"}
  heldout = portable.read_heldout(out)
  task = experiment.task
  for cid in task.eval_client_ids:
    assert heldout[cid] == [pairs.split(e) for e in task.test_data.texts[cid]]
  tokenizer = portable.Tokenizer(out)
  long = [("a prompt much longer than the window allows", "yes"), ("hi", "a response too long for it, cut")]
  for examples in (heldout[task.eval_client_ids[0]], long):
    ours = pairs.TokenizedPairs(
      {"c": [pairs.join(p, r, "\n>")[0] for p, r in examples]},
      task.tokenizer,
      sequence_length=12,
      separator="\n>",
    )
    theirs = portable.pack_pairs(
      tokenizer, examples, sequence_length=12, separator=portable.separator(config)
    )
    for key, value in ours.sequences("c").items():
      np.testing.assert_array_equal(theirs[key], value, err_msg=key)


@pytest.mark.full
def test_the_notebook_replies_to_held_out_prompts(pair_run, tmp_path):
  experiment, summary = pair_run
  export.export_run(experiment.task, summary["model_weights"], 3)
  text = helpers.run_notebook(experiment.dirs.results, tmp_path)
  assert text.count("  reply: ") == 3 and "held-out response: " in text, text[-3000:]


@pytest.mark.full
def test_pairs_train_with_lora_and_differential_privacy(tmp_path):
  """Pairs change only the data: a LoRA subset under a DP aggregator trains a round on them."""
  rows = [{"client_id": c, "prompt": "q", "response": f"answer {c} {i}"} for c in "abcd" for i in range(4)]
  helpers.ensure_tff_context()
  config = helpers.tiny_config(
    tmp_path,
    dataset_path=_write(tmp_path / "pairs.jsonl", rows),
    examples="pairs",
    response_separator="\\n>",
    sequence_length=24,
    total_rounds=1,
    trainable="lora:2",
    algorithm="fedavg_unweighted",
    aggregator="dp_adaptive",
    clients_per_round=4,
  )
  experiment = trainer.FederatedExperiment(config, progress=False)
  summary = experiment.run()
  clients = len(experiment.task.train_data.client_ids)
  assert summary["dp_epsilon"] == privacy.epsilon(
    noise_multiplier=config.dp_noise_multiplier, sampling_rate=4 / clients, rounds=1, delta=config.dp_delta
  )
  assert np.isfinite(summary["eval_loss"])
  assert summary["pairs"]["train"]["pairs"] == 12


def test_generative_classification_scores_each_class_as_its_response_and_counts_f1_by_class(pair_run):
  experiment, summary = pair_run
  model, tokenizer = experiment.task.keras_model(summary["model_weights"]), experiment.task.tokenizer
  classes, prompts = ["abc abc", "xyz xyz", "cat cat"], ["say abc", "say zyx"]
  losses = label_scoring.class_losses(model, tokenizer, prompts, classes, separator="\n>", sequence_length=24)

  def by_hand(prompt, response):  # [BOS] prompt separator response [END], summed -log p of the response part.
    head = [tokenizer.bos_id, *(int(i) for part in tokenizer.encode([prompt, "\n>"]) for i in part)]
    tail = [*(int(i) for i in tokenizer.encode([response])[0]), tokenizer.eos_id]
    ids = np.array([head + tail], np.int32)
    logits = model({"token_ids": ids[:, :-1], "padding_mask": np.ones_like(ids[:, :-1], bool)})[0].numpy()
    log_p = special.log_softmax(logits, axis=-1)
    return -sum(log_p[len(head) - 1 + i, t] for i, t in enumerate(tail))

  np.testing.assert_allclose(losses, [[by_hand(p, c) for c in classes] for p in prompts], rtol=1e-4)
  held_out = {"a": [("say abc", "abc abc"), ("say cat", "cat cat")], "b": [("say zyx", "xyz xyz")]}
  result = label_scoring.evaluate(model, tokenizer, held_out, classes, separator="\n>", sequence_length=24)
  truth = [0, 2, 1]
  predicted = [
    int(np.argmin([by_hand(p, c) for c in classes])) for examples in held_out.values() for p, _ in examples
  ]
  f1 = []  # Macro-F1 by hand: each class's F1 (0 where it is never true nor predicted), averaged.
  for k in range(3):
    tp = sum(t == p == k for t, p in zip(truth, predicted, strict=True))
    f1.append(2 * tp / (truth.count(k) + predicted.count(k)) if truth.count(k) + predicted.count(k) else 0.0)
  assert result["overall"] == {
    "examples": 3,
    "accuracy": pytest.approx(np.mean(np.equal(truth, predicted))),
    "macro_f1": pytest.approx(np.mean(f1)),
  }
  assert result["clients"]["a"]["examples"] == 2 and result["clients"]["b"]["examples"] == 1
  with pytest.raises(errors.UserInputError, match=r"^Client 'b' has the label 'dog', not one of the classes"):
    label_scoring.evaluate(
      model, tokenizer, {"b": [("say dog", "dog")]}, classes, separator="\n>", sequence_length=24
    )
