"""Tokenizers that run outside TFF computations.

TFF's C++ worker lacks tensorflow-text's ops, so text is tokenized in Python
before client data enters TFF. Three tokenizers share one small interface
(`encode`, `decode`, `vocabulary_size`, `pad_id`, `bos_id`, `eos_id`):

- `CharTokenizer`: the character vocabulary of TFF's Shakespeare task
  (`tff.simulation.baselines.shakespeare`): pad 0, characters 1..86, then
  out-of-vocabulary, beginning and end of snippet, 90 ids in all.
- `BPETokenizer`: GPT-2's byte-level BPE (`keras_nlp.models.GPT2Tokenizer`)
  from local `vocab.json` and `merges.txt`, or from a KerasNLP preset.
- `WordTokenizer`: the word vocabulary of TFF's Stack Overflow next-word task
  (`tff.simulation.baselines.stackoverflow`): pad 0, the `size` most frequent
  words 1..size, then out-of-vocabulary, beginning and end of sentence.
"""

import json
import os
from collections.abc import Sequence

import numpy as np

from tff_gpt import errors
from tff_gpt.internals import tff_shakespeare, tff_stackoverflow


class TokenizerError(errors.UserInputError):
  """Raised when tokenizer files are missing or do not parse."""


class CharTokenizer:
  """TFF Shakespeare's character vocabulary, as a fast numpy lookup."""

  name = "char"

  def __init__(self):
    self.vocabulary = list(tff_shakespeare.CHAR_VOCAB)
    self.pad_id, self.oov_id, self.bos_id, self.eos_id = tff_shakespeare.get_special_tokens()
    self.vocabulary_size = self.eos_id + 1
    self._ids = np.full(128, self.oov_id, dtype=np.int32)
    for i, char in enumerate(self.vocabulary):
      self._ids[ord(char)] = i + 1
    self._chars = np.array(["", *self.vocabulary, "\ufffd", "", ""], dtype=object)

  def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
    """Maps each text to an int32 array of character ids (no BOS/EOS)."""
    out = []
    for text in texts:
      codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
      ids = np.full(codes.shape, self.oov_id, dtype=np.int32)
      ascii_ = codes < 128
      ids[ascii_] = self._ids[codes[ascii_]]
      out.append(ids)
    return out

  def decode(self, ids: Sequence[int]) -> str:
    ids = np.asarray(ids, dtype=np.int64)
    ids = ids[(ids >= 0) & (ids < self.vocabulary_size)]
    return "".join(self._chars[ids])

  def config(self) -> dict:
    return {"name": self.name}


class WordTokenizer:
  """Space-separated words with TFF Stack Overflow's ids, as a Python dict lookup.

  Args:
    vocabulary: The words, most frequent first (ids 1..len).
    source: Where it came from, recorded in run configs.
  """

  name = "word"
  OOV_TEXT = "<unk>"

  def __init__(self, vocabulary: Sequence[str], source: dict | None = None):
    self.vocabulary = list(vocabulary)
    self.source = source or {}
    special = tff_stackoverflow.get_special_tokens(len(self.vocabulary), num_out_of_vocab_buckets=1)
    self.pad_id, self.bos_id, self.eos_id = (
      special.padding,
      special.beginning_of_sentence,
      special.end_of_sentence,
    )
    (self.oov_id,) = special.out_of_vocab
    self.vocabulary_size = self.eos_id + 1
    self._ids = {word: i + 1 for i, word in enumerate(self.vocabulary)}

  def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
    """Maps each text's space-separated words to int32 ids (no BOS/EOS)."""
    oov = self.oov_id
    return [np.array([self._ids.get(w, oov) for w in t.split(" ") if w], dtype=np.int32) for t in texts]

  def decode(self, ids: Sequence[int]) -> str:
    words = []
    for i in np.asarray(ids, dtype=np.int64).ravel():
      if 1 <= i <= len(self.vocabulary):
        words.append(self.vocabulary[i - 1])
      elif i == self.oov_id:
        words.append(self.OOV_TEXT)
    return " ".join(words)

  def config(self) -> dict:
    return {"name": self.name, "vocabulary_size": self.vocabulary_size, **self.source}


def load_word_vocabulary(path: str, size: int) -> WordTokenizer:
  """The `size` first words of a word-count file (TFF's `stackoverflow.word_count`: `word count` lines).

  Lines holding a word alone are accepted too; the file's order is the ids'
  order (TFF's file is sorted by decreasing count).
  """
  if not path or not os.path.isfile(path):
    raise TokenizerError(
      f"Word vocabulary file {path!r} does not exist. Pass TFF's stackoverflow.word_count "
      "(lines 'word count', most frequent first) with --vocab_file."
    )
  if size < 1:
    raise TokenizerError(f"--word_vocab_size must be >= 1, got {size}.")
  words = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) > 2 or (len(fields) == 2 and not fields[1].isdigit()):
        raise TokenizerError(f"{path}:{number}: expected 'word count' or 'word', got {line.strip()[:60]!r}.")
      words.append(fields[0])
      if len(words) == size:
        break
  if not words:
    raise TokenizerError(f"{path} holds no words.")
  return WordTokenizer(words, {"vocab_file": os.path.abspath(path), "word_vocab_size": size})


class BPETokenizer:
  """GPT-2 byte-level BPE through `keras_nlp.models.GPT2Tokenizer`.

  Args:
    keras_tokenizer: A `keras_nlp.models.GPT2Tokenizer`.
    source: Where it came from (files or preset), recorded in run configs.
  """

  name = "bpe"

  def __init__(self, keras_tokenizer, source: dict):
    import tensorflow as tf

    self.keras_tokenizer = keras_tokenizer
    self.source = source
    self.vocabulary_size = int(keras_tokenizer.vocabulary_size())
    self.bos_id = self.eos_id = self.pad_id = int(keras_tokenizer.end_token_id)
    # One trace for every batch size: called directly, the layer traces anew for each new number of
    # texts, about a second each, which made tokenizing clients one by one ~20x slower. No AutoGraph: the
    # layer's loops are tf.while_loop already, and converting its source made the one trace cost ~11 s of
    # every run's start-up instead of ~3 s (2 cores, 2026-12-08).
    self._tokenize = tf.function(
      keras_tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
    )

  def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
    if not texts:
      return []
    ragged = self._tokenize(list(texts))
    return [np.asarray(row, dtype=np.int32) for row in ragged.to_list()]

  def decode(self, ids: Sequence[int]) -> str:
    ids = [int(i) for i in ids if 0 <= int(i) < self.vocabulary_size and int(i) != self.eos_id]
    if not ids:
      return ""
    return self.keras_tokenizer.detokenize([ids]).numpy()[0].decode("utf-8", errors="replace")

  def config(self) -> dict:
    return {"name": self.name, **self.source}


def load_bpe(vocab_file: str, merges_file: str) -> BPETokenizer:
  """Loads GPT-2's BPE from `vocab.json` and `merges.txt`, checking both first."""
  import keras_nlp  # Imported here: it takes seconds and only BPE needs it.

  for path, what in ((vocab_file, "vocabulary (vocab.json)"), (merges_file, "merges (merges.txt)")):
    if not path or not os.path.isfile(path):
      raise TokenizerError(f"BPE {what} file {path!r} does not exist. Pass the file of a GPT-2 tokenizer.")
  try:
    with open(vocab_file, encoding="utf-8") as f:
      vocabulary = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise TokenizerError(f"{vocab_file} does not parse as JSON ({e}). Expected GPT-2's vocab.json.") from e
  if not isinstance(vocabulary, dict) or not all(isinstance(v, int) for v in vocabulary.values()):
    raise TokenizerError(
      f"{vocab_file}: expected a JSON object of token -> integer id, as GPT-2's vocab.json."
    )
  if "<|endoftext|>" not in vocabulary:
    raise TokenizerError(f"{vocab_file} lacks GPT-2's '<|endoftext|>' token; add it to the vocabulary.")
  with open(merges_file, encoding="utf-8") as f:
    merges = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
  bad = [(i, m) for i, m in enumerate(merges) if len(m.split(" ")) != 2]
  if bad:
    raise TokenizerError(f"{merges_file}: line {bad[0][0] + 1} {bad[0][1]!r} is not a pair 'a b'.")
  tokenizer = keras_nlp.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
  return BPETokenizer(
    tokenizer, {"vocab_file": os.path.abspath(vocab_file), "merges_file": os.path.abspath(merges_file)}
  )


def from_preset(preset: str) -> BPETokenizer:
  """Loads the tokenizer of a KerasNLP preset (a local directory or a hub name)."""
  import keras_nlp

  return BPETokenizer(keras_nlp.models.GPT2Tokenizer.from_preset(preset), {"preset": preset})


def build_tokenizer(
  name: str,
  *,
  vocab_file: str | None = None,
  merges_file: str | None = None,
  preset: str | None = None,
  word_vocab_size: int = 10_000,
):
  """Returns the tokenizer called `name` ('char', 'bpe' or 'word').

  'bpe' loads from `preset` when given, else from `vocab_file` and `merges_file`;
  'word' takes the `word_vocab_size` first words of `vocab_file`.
  """
  if name == "char":
    if preset:
      raise TokenizerError("A preset brings its own BPE tokenizer: use tokenizer 'bpe' with a preset.")
    return CharTokenizer()
  if name == "bpe":
    if preset:
      return from_preset(preset)
    return load_bpe(vocab_file, merges_file)
  if name == "word":
    return load_word_vocabulary(vocab_file, word_vocab_size)
  raise TokenizerError(f"Unknown tokenizer {name!r}; expected 'char', 'bpe' or 'word'.")
