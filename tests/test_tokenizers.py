"""Tokenizer round trips, TFF compatibility and bad vocabulary files."""

import collections

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_federated.python.simulation.baselines import client_spec
from tensorflow_federated.python.simulation.baselines.shakespeare import char_prediction_preprocessing

from tff_gpt.data import tokenizers


def test_char_round_trip():
  tok = tokenizers.CharTokenizer()
  text = "To be, or not to be: that is the question.\nWhether 'tis nobler"
  (ids,) = tok.encode([text])
  assert tok.decode(ids) == text
  assert tok.vocabulary_size == 90
  (unknown,) = tok.encode(["é~"])
  assert list(unknown) == [tok.oov_id, tok.oov_id]


def test_char_ids_equal_tff_shakespeare_preprocessing():
  """Our ids are the ids of TFF's own Shakespeare task."""
  text = "Hark! who's there? [A]"
  spec = client_spec.ClientSpec(num_epochs=1, batch_size=1, shuffle_buffer_size=1)
  preprocess = char_prediction_preprocessing.create_preprocess_fn(spec, sequence_length=len(text) + 1)
  dataset = tf.data.Dataset.from_tensor_slices(collections.OrderedDict(snippets=[text]))
  x, _ = next(iter(preprocess(dataset)))
  tok = tokenizers.CharTokenizer()
  expected = [tok.bos_id, *tok.encode([text])[0]]
  assert x.numpy()[0][: len(expected)].tolist() == expected


def test_bpe_round_trip(bpe_files):
  tok = tokenizers.build_tokenizer("bpe", vocab_file=bpe_files[0], merges_file=bpe_files[1])
  text = "the cat sat on the mat, caf\u00e9!"
  (ids,) = tok.encode([text])
  assert tok.decode(ids) == text
  assert len(ids) < len(text.encode("utf-8"))  # merges applied
  assert tok.eos_id == tok.vocabulary_size - 1


def test_bpe_ids_are_the_keras_layers_own_for_any_number_of_texts(bpe_files):
  tok = tokenizers.build_tokenizer("bpe", vocab_file=bpe_files[0], merges_file=bpe_files[1])
  texts = ["", "the cat", "  two  spaces\nand a line", "caf\u00e9 \u2014 na\u00efve \U0001f600", "mat " * 40]
  for batch in ([texts[1]], texts, texts[::-1]):
    eager = tok.keras_tokenizer.tokenize(tf.constant(batch)).to_list()
    assert [list(ids) for ids in tok.encode(batch)] == eager


def test_bpe_missing_file(tmp_path, bpe_files):
  with pytest.raises(tokenizers.TokenizerError, match="does not exist"):
    tokenizers.load_bpe(str(tmp_path / "nope.json"), bpe_files[1])


def test_bpe_vocab_that_does_not_parse(tmp_path, bpe_files):
  bad = tmp_path / "vocab.json"
  bad.write_text("{this is not json", encoding="utf-8")
  with pytest.raises(tokenizers.TokenizerError, match="does not parse as JSON"):
    tokenizers.load_bpe(str(bad), bpe_files[1])
  bad.write_text('["a", "b"]', encoding="utf-8")
  with pytest.raises(tokenizers.TokenizerError, match="token -> integer id"):
    tokenizers.load_bpe(str(bad), bpe_files[1])


def test_bpe_merges_that_do_not_parse(tmp_path, bpe_files):
  bad = tmp_path / "merges.txt"
  bad.write_text("#version: 0.2\nt h\nthree parts here\n", encoding="utf-8")
  with pytest.raises(tokenizers.TokenizerError, match="line 2 'three parts here' is not a pair"):
    tokenizers.load_bpe(bpe_files[0], str(bad))


def test_unknown_tokenizer():
  with pytest.raises(tokenizers.TokenizerError, match="Unknown tokenizer 'sentencepiece'"):
    tokenizers.build_tokenizer("sentencepiece")


def test_decode_skips_out_of_range_ids():
  tok = tokenizers.CharTokenizer()
  assert tok.decode(np.array([-1, 200, tok.encode(["a"])[0][0]])) == "a"


def test_bpe_files_made_by_the_project_load_and_round_trip(tmp_path):
  from tff_gpt.data import bpe_training

  texts = ["the cat sat on the mat", "the dog sat on the log", "caf\u00e9 au lait"] * 20
  files = bpe_training.train_bpe(texts, str(tmp_path / "bpe"), vocab_size=300, min_frequency=2)
  tok = tokenizers.load_bpe(*files)
  assert 257 < tok.vocabulary_size <= 300  # bytes, <|endoftext|> and the merges this text allows
  (ids,) = tok.encode(["the cat sat on the log, caf\u00e9!"])
  assert tok.decode(ids) == "the cat sat on the log, caf\u00e9!"
  assert len(ids) < len("the cat sat on the log, caf\u00e9!")
  with pytest.raises(ValueError, match="vocab_size must be >= 257"):
    bpe_training.train_bpe(texts, str(tmp_path / "small"), vocab_size=100)


def test_bpe_encodes_batches_of_any_size_with_one_trace(bpe_files):
  tokenizer = tokenizers.load_bpe(*bpe_files)
  texts = ["the cat sat", "on the mat", "a", "the cat sat on the mat, and then some more text"]
  for n in (1, 2, 3, 4):
    got = tokenizer.encode(texts[:n])
    want = tokenizer.keras_tokenizer(texts[:n]).to_list()
    assert [list(g) for g in got] == want
  assert tokenizer._tokenize.experimental_get_tracing_count() == 1
