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
  assert len(orders) > 1


def test_unigram_perplexity_of_uniform_tokens_is_vocabulary_size():
  labels = [np.arange(10)]
  assert preprocessing.unigram_perplexity(labels, labels, 10) == pytest.approx(10.0)
  skewed = [np.array([0] * 90 + list(range(10)))]
  assert preprocessing.unigram_perplexity(skewed, skewed, 10) < 10.0
