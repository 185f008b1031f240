"""Client text -> fixed-length, padding-masked token sequences for GPT-2.

Each client's examples become one token stream, `[BOS] example [EOS]` after
another, cut into windows of `sequence_length + 1` tokens that overlap by one,
so every token but the first is a label exactly once. Inputs are a window's
first `sequence_length` tokens, labels its last `sequence_length`; the last
window is padded, its padded inputs have `padding_mask` 0 and its padded
labels are -1, which the loss and metrics ignore.

Tokenizing happens here, in Python and numpy, because TFF's worker process
cannot run tensorflow-text's ops: datasets handed to TFF hold token ids only.
"""

import collections
import zlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

IGNORE_LABEL = -1


def _check_positive(name: str, value, allow_none: bool = False, minimum: int = 1) -> None:
  if value is None and allow_none:
    return
  if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def token_stream(token_ids: Sequence[np.ndarray], *, bos_id: int, eos_id: int, dtype=np.int32) -> np.ndarray:
  """One stream of `[BOS] example [EOS]` after another, as `dtype`."""
  parts = [np.concatenate([[bos_id], ids, [eos_id]]) for ids in token_ids]
  return (np.concatenate(parts) if parts else np.zeros(0)).astype(dtype)


def _num_sequences(stream_length: int, sequence_length: int) -> int:
  """Windows of `sequence_length + 1` tokens overlapping by one that cover a stream of `stream_length`."""
  return max(0, -(-(stream_length - 1) // sequence_length))


def pack_stream(stream: np.ndarray, *, sequence_length: int, pad_id: int) -> dict[str, np.ndarray]:
  """Cuts a token stream into padded `[n, sequence_length]` arrays (see the module docstring).

  Returns:
    `{"token_ids", "padding_mask", "labels"}`, each int32 `[n, sequence_length]`.
  """
  _check_positive("sequence_length", sequence_length, minimum=2)
  n = _num_sequences(len(stream), sequence_length)
  if n == 0:
    empty = np.zeros((0, sequence_length), dtype=np.int32)
    return {"token_ids": empty, "padding_mask": empty.copy(), "labels": empty.copy()}
  padded = np.full(n * sequence_length + 1, IGNORE_LABEL, dtype=np.int32)
  padded[: len(stream)] = stream[: len(padded)]
  # Row i is padded[i * L : i * L + L + 1]: windows of L + 1 tokens that overlap by one.
  window = np.lib.stride_tricks.sliding_window_view(padded, sequence_length + 1)[::sequence_length]
  inputs = window[:, :-1]
  padding_mask = (inputs != IGNORE_LABEL).astype(np.int32)
  return {
    "token_ids": np.where(padding_mask == 1, inputs, pad_id).astype(np.int32),
    "padding_mask": padding_mask,
    "labels": window[:, 1:].copy(),
  }


def pack_sequences(
  token_ids: Sequence[np.ndarray], *, sequence_length: int, bos_id: int, eos_id: int, pad_id: int
) -> dict[str, np.ndarray]:
  """Packs tokenized examples into padded `[n, sequence_length]` arrays.

  Args:
    token_ids: One int array per example, without BOS/EOS.
    sequence_length: Tokens per model input, at least 2.
    bos_id, eos_id, pad_id: Special token ids.

  Returns:
    `{"token_ids", "padding_mask", "labels"}`, each int32 `[n, sequence_length]`.
  """
  stream = token_stream(token_ids, bos_id=bos_id, eos_id=eos_id)
  return pack_stream(stream, sequence_length=sequence_length, pad_id=pad_id)


def num_characters(examples: Sequence[str]) -> int:
  """Labels a character model has on a client's examples: what per-character losses divide by.

  Every character of every example, and each `[BOS]` and `[EOS]` between
  them but the first `[BOS]` (no token predicts it): the labels the `char`
  tokenizer's stream of these examples has. Any tokenizer's total loss on
  the same examples, divided by this, is in nats per character, comparable
  across tokenizers; for the `char` tokenizer it is the loss itself.
  """
  return max(0, sum(len(text) + 2 for text in examples) - 1)


def stream_dtype(vocabulary_size: int):
  """The smallest unsigned integer type that holds every token id (uint16 for GPT-2's 50,257)."""
  for dtype in (np.uint8, np.uint16, np.uint32):
    if vocabulary_size <= np.iinfo(dtype).max + 1:
      return dtype
  raise ValueError(f"vocabulary_size {vocabulary_size} does not fit in 32 bits.")


RANK_FEATURE = "lora_rank"


def element_spec(sequence_length: int, *, ranked: bool = False):
  """The `(x, y)` element spec of a batched client dataset (`ranked`: x also holds each sequence's
  `lora_rank`, see `with_rank`)."""
  spec = tf.TensorSpec([None, sequence_length], tf.int32)
  x = collections.OrderedDict(token_ids=spec, padding_mask=spec)
  if ranked:
    x[RANK_FEATURE] = tf.TensorSpec([None], tf.int32)
  return (x, spec)


def with_rank(dataset: tf.data.Dataset, rank: int) -> tf.data.Dataset:
  """`dataset` (of `to_dataset`) whose `x` also holds `lora_rank`: `rank` for every sequence."""

  def add(x, y):
    x = collections.OrderedDict(x)
    x[RANK_FEATURE] = tf.fill(tf.shape(y)[:1], tf.constant(rank, tf.int32))
    return x, y

  return dataset.map(add)


def to_dataset(sequences: dict[str, np.ndarray], *, batch_size: int, order: np.ndarray | None = None):
  """Makes a batched `tf.data.Dataset` of `(OrderedDict(token_ids, padding_mask), labels)`."""
  _check_positive("batch_size", batch_size)
  if order is None:
    order = np.arange(len(sequences["labels"]))
  x = collections.OrderedDict(
    token_ids=sequences["token_ids"][order], padding_mask=sequences["padding_mask"][order]
  )
  return tf.data.Dataset.from_tensor_slices((x, sequences["labels"][order])).batch(batch_size)


def client_seed(seed: int, round_num: int, client_id: str) -> np.random.Generator:
  """A generator that depends only on (seed, round, client), never on call order."""
  return np.random.default_rng([seed, round_num, zlib.crc32(client_id.encode("utf-8"))])


class TokenizedClients:
  """Tokenizes clients' texts on demand and builds their datasets.

  Each client is tokenized once and kept in memory as its token stream in the
  smallest integer type that holds the vocabulary (2 bytes a token for GPT-2's
  BPE, 1 for characters; the packed int32 arrays would take 12), so later
  rounds that sample it again cost only the packing and the dataset
  construction, and a run's memory grows by at most that much as it meets
  new clients.

  Args:
    texts: `{client_id: [example, ...]}`, as `FederatedCorpus.texts` gives.
    tokenizer: A tokenizer from `tff_gpt.data.tokenizers`.
    sequence_length: Tokens per model input, at least 2.
  """

  def __init__(self, texts, tokenizer, *, sequence_length: int):
    _check_positive("sequence_length", sequence_length, minimum=2)
    self.texts = texts
    self.tokenizer = tokenizer
    self.sequence_length = sequence_length
    self._dtype = stream_dtype(tokenizer.vocabulary_size)
    self._streams = {}

  @property
  def client_ids(self) -> list[str]:
    return sorted(self.texts)

  def stream(self, client_id: str) -> np.ndarray:
    """The client's token stream (tokenized on first use, then kept)."""
    if client_id not in self._streams:
      self._streams[client_id] = token_stream(
        self.tokenizer.encode(self.texts[client_id]),
        bos_id=self.tokenizer.bos_id,
        eos_id=self.tokenizer.eos_id,
        dtype=self._dtype,
      )
    return self._streams[client_id]

  def cached_bytes(self) -> int:
    """Memory held by the kept token streams."""
    return sum(s.nbytes for s in self._streams.values())

  def sequences(self, client_id: str) -> dict[str, np.ndarray]:
    return pack_stream(
      self.stream(client_id), sequence_length=self.sequence_length, pad_id=self.tokenizer.pad_id
    )

  def num_sequences(self, client_id: str) -> int:
    return _num_sequences(len(self.stream(client_id)), self.sequence_length)

  def num_characters(self, client_id: str) -> int:
    """Characters the client's labels stand for (`num_characters`)."""
    return num_characters(self.texts[client_id])

  def train_dataset(
    self,
    client_id: str,
    *,
    round_num: int,
    seed: int,
    batch_size: int,
    epochs: int = 1,
    max_elements: int | None = None,
  ) -> tf.data.Dataset:
    """One client's training data for one round.

    The sequences are shuffled anew each epoch by a generator seeded from
    `(seed, round_num, client_id)`, repeated `epochs` times and capped at
    `max_elements` sequences, then batched.
    """
    _check_positive("epochs", epochs)
    _check_positive("max_elements", max_elements, allow_none=True)
    rng = client_seed(seed, round_num, client_id)
    sequences = self.sequences(client_id)
    n = len(sequences["labels"])
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return to_dataset(sequences, batch_size=batch_size, order=order[:max_elements])

  def eval_dataset(self, client_id: str, *, batch_size: int) -> tf.data.Dataset:
    """One client's data in order, once, for evaluation."""
    return to_dataset(self.sequences(client_id), batch_size=batch_size)


def unigram_perplexity(
  train_labels: Sequence[np.ndarray], test_labels: Sequence[np.ndarray], vocabulary_size: int
) -> float:
  """Perplexity on `test_labels` of add-one-smoothed unigram counts of `train_labels`.

  The baseline a language model must beat: it knows token frequencies only.
  Labels equal to `IGNORE_LABEL` are skipped.
  """
  counts = np.ones(vocabulary_size, dtype=np.float64)
  for labels in train_labels:
    labels = labels[labels != IGNORE_LABEL]
    counts += np.bincount(labels.ravel(), minlength=vocabulary_size)
  log_probs = np.log(counts / counts.sum())
  test = np.concatenate([labels[labels != IGNORE_LABEL].ravel() for labels in test_labels])
  return float(np.exp(-log_probs[test].mean()))
