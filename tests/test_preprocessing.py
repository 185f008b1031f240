"""Packing into fixed-length sequences, label masking and client datasets."""

import numpy as np
import pytest

from tff_gpt.data import preprocessing, tokenizers


def _pack(examples, length):
  return preprocessing.pack_sequences(examples, sequence_length=length, bos_id=8, eos_id=9, pad_id=0)


def test_labels_are_inputs_shifted_and_every_token_labelled_once():
  seqs = _pack([np.array([1, 2, 3]), np.array([4, 5])], 3)
  stream = [8, 1, 2, 3, 9, 8, 4, 5, 9]
  # Windows of 4 tokens overlap by one: 8 1 2 3 | 3 9 8 4 | 4 5 9 [pad]
  assert seqs["token_ids"].tolist() == [[8, 1, 2], [3, 9, 8], [4, 5, 9]]
  assert seqs["labels"].tolist() == [[1, 2, 3], [9, 8, 4], [5, 9, -1]]
  labels = seqs["labels"][seqs["labels"] != -1]
  assert labels.tolist() == stream[1:]


def test_padding_is_masked_in_inputs_and_labels():
  seqs = _pack([np.array([1, 2, 3, 4])], 5)
  assert seqs["padding_mask"].tolist() == [[1, 1, 1, 1, 1]]
  seqs = _pack([np.array([1])], 5)
  assert seqs["token_ids"].tolist() == [[8, 1, 9, 0, 0]]
  assert seqs["padding_mask"].tolist() == [[1, 1, 1, 0, 0]]
  assert seqs["labels"].tolist() == [[1, 9, -1, -1, -1]]


def test_sequence_length_below_two_is_rejected():
  with pytest.raises(ValueError, match="sequence_length must be an integer >= 2"):
    _pack([np.array([1])], 1)
  with pytest.raises(ValueError, match="sequence_length must be an integer >= 2"):
    preprocessing.TokenizedClients({}, tokenizers.CharTokenizer(), sequence_length=1)


def _clients():
  texts = {"a": ["one speech here", "and another one", "third"], "b": ["short"]}
  return preprocessing.TokenizedClients(texts, tokenizers.CharTokenizer(), sequence_length=8)


def test_train_dataset_batches_epochs_and_cap():
  clients = _clients()
  n = clients.num_sequences("a")
  assert n == 5
  ds = clients.train_dataset("a", round_num=1, seed=0, batch_size=2, epochs=3)
  batches = list(ds)
  assert sum(len(y) for _, y in batches) == 3 * n
  assert [len(y) for _, y in batches][:2] == [2, 2]
  x, y = batches[0]
  assert set(x) == {"token_ids", "padding_mask"} and x["token_ids"].shape == (2, 8)
  capped = clients.train_dataset("a", round_num=1, seed=0, batch_size=2, epochs=3, max_elements=7)
  assert sum(len(y) for _, y in capped) == 7


def test_shuffle_depends_on_seed_round_and_client_only():
  clients = _clients()

  def labels(**kw):
    return np.concatenate([y.numpy() for _, y in clients.train_dataset("a", batch_size=5, **kw)])

  np.testing.assert_array_equal(labels(round_num=1, seed=0), labels(round_num=1, seed=0))
  orders = {labels(round_num=r, seed=s).tobytes() for r in range(4) for s in range(3)}
  assert len(orders) == 12  # Every (round, seed) pair its own order.


def test_unigram_perplexity_of_uniform_tokens_is_vocabulary_size():
  labels = [np.arange(10)]
  assert preprocessing.unigram_perplexity(labels, labels, 10) == pytest.approx(10.0)
  skewed = [np.array([0] * 90 + list(range(10)))]
  assert preprocessing.unigram_perplexity(skewed, skewed, 10) < 10.0


def _pack_by_loop(stream, length, pad_id):
  """Packing written the plain way: one window of length + 1 tokens per sequence, overlapping by one."""
  n = max(0, -(-(len(stream) - 1) // length))
  windows = [list(stream[i * length : i * length + length + 1]) for i in range(n)]
  windows = [w + [-1] * (length + 1 - len(w)) for w in windows]
  return {
    "token_ids": [[t if t != -1 else pad_id for t in w[:-1]] for w in windows],
    "padding_mask": [[int(t != -1) for t in w[:-1]] for w in windows],
    "labels": [w[1:] for w in windows],
  }


@pytest.mark.parametrize("length", [2, 3, 7, 16])
def test_packing_a_stream_matches_the_plain_loop(length):
  rng = np.random.default_rng(length)
  for size in [0, 1, 2, length, length + 1, length + 2, 5 * length, 5 * length + 3]:
    stream = rng.integers(0, 300, size=size).astype(np.uint16)
    got = preprocessing.pack_stream(stream, sequence_length=length, pad_id=0)
    want = _pack_by_loop([int(t) for t in stream], length, pad_id=0)
    for key in ("token_ids", "padding_mask", "labels"):
      assert got[key].dtype == np.int32 and got[key].shape[1:] == (length,)
      assert got[key].tolist() == want[key], (size, key)


def test_clients_keep_compact_token_streams():
  clients = _clients()
  assert clients.cached_bytes() == 0
  seqs = clients.sequences("a")
  stream = clients.stream("a")
  assert stream.dtype == np.uint8  # The character vocabulary (90 ids) fits a byte.
  assert clients.cached_bytes() == stream.nbytes == len(stream) * stream.itemsize
  assert seqs["labels"].dtype == np.int32 and clients.num_sequences("a") == len(seqs["labels"])
  assert preprocessing.stream_dtype(256) == np.uint8
  assert preprocessing.stream_dtype(257) == np.uint16
  assert preprocessing.stream_dtype(50257) == np.uint16
  assert preprocessing.stream_dtype(70000) == np.uint32


@pytest.mark.parametrize(
  "examples",
  [[], ["a"], ["to be", "or not"], ["café — naïve", "", "x\ny"]],
  ids=["none", "one", "two", "unicode"],
)
def test_num_characters_counts_the_char_tokenizers_labels(examples):
  """What per-character losses divide by: the labels the `char` tokenizer's packed stream has."""
  data = preprocessing.TokenizedClients({"c": examples}, tokenizers.CharTokenizer(), sequence_length=4)
  labels = data.sequences("c")["labels"]
  assert preprocessing.num_characters(examples) == int((labels != preprocessing.IGNORE_LABEL).sum())
