"""Prompt and response pairs: how a record becomes an example, and how an example becomes one window.

With `--examples=pairs` (fields `--prompt_field`, `--response_field`) or
`--examples=alpaca` (Alpaca's `instruction`, optional `input`, `output`), each
record of a JSON Lines file or TFDS dataset is one pair; with
`--dataset=shakespeare`, each speech answers the speech before it
(`shakespeare_dialogue`). A pair is stored in the corpus cache as one string,
`prompt + PAIR_MARK + response`, so partitions, the train/test split and the
cache treat it as any other example.

Training sees each pair as one window of its own (pairs are never packed
together): `[BOS] prompt separator response [EOS]`, padded to
`sequence_length + 1` tokens. Only the response's tokens and the end token are
labels; the prompt's, the separator's and the padding's labels are
`IGNORE_LABEL`, so loss, perplexity and accuracy count the response only.

Length rule (docs/data.md#prompt-and-response-pairs): the response and the end
token come first; a prompt that does not fit in what is left is cut from its
start (its last tokens, nearest the response, are kept). A response that does
not fit even with an empty prompt is cut to fit, without an end token
(`long_responses="cut"`), or dropped (`"drop"`). The counts of each are in the
run's summary.
"""

import dataclasses
from collections.abc import Mapping

import numpy as np

from tff_gpt.data import preprocessing

KINDS = ("text", "pairs", "alpaca")
LONG_RESPONSES = ("cut", "drop")
PAIR_MARK = "\x1e"  # ASCII record separator: between prompt and response in the corpus cache.
DEFAULT_SEPARATOR = "\n\n### Response:\n"

# Reasons a record is dropped (counted in the corpus summary).
EMPTY_RESPONSE = "empty response"
SEPARATOR_INSIDE = "separator inside the text"


@dataclasses.dataclass(frozen=True)
class ExampleFormat:
  """What one record of a corpus is: text, or a prompt and response pair."""

  kind: str = "text"
  text_field: str = "text"
  prompt_field: str = "prompt"
  response_field: str = "response"
  separator: str = DEFAULT_SEPARATOR

  @property
  def is_pairs(self) -> bool:
    return self.kind != "text"

  def fields(self) -> tuple[str, ...]:
    """The fields every record needs."""
    if self.kind == "alpaca":
      return ("instruction", "output")
    if self.kind == "pairs":
      return (self.prompt_field, self.response_field)
    return (self.text_field,)

  def optional_fields(self) -> tuple[str, ...]:
    return ("input",) if self.kind == "alpaca" else ()

  def cache_parts(self) -> list[str]:
    if not self.is_pairs:
      return [self.text_field]  # Text corpora keep their cache key.
    return [self.kind, self.prompt_field, self.response_field, self.separator]

  def read(self, record: Mapping[str, str]) -> tuple[str | None, str | None]:
    """`(example, None)`, or `(None, reason)` for a record dropped with a counted reason."""
    if not self.is_pairs:
      return record[self.text_field], None
    if self.kind == "alpaca":
      prompt = alpaca_prompt(record["instruction"], record.get("input") or "")
      response = record["output"]
    else:
      prompt, response = record[self.prompt_field], record[self.response_field]
    return join(prompt, response, self.separator)


def alpaca_prompt(instruction: str, context: str = "") -> str:
  """Alpaca's prompt layout (without its preamble); the separator adds the response marker."""
  if context.strip():
    return f"### Instruction:\n{instruction}\n\n### Input:\n{context}"
  return f"### Instruction:\n{instruction}"


def join(prompt: str, response: str, separator: str = DEFAULT_SEPARATOR) -> tuple[str | None, str | None]:
  """`(prompt + PAIR_MARK + response, None)`, or `(None, reason)` when the pair cannot be used."""
  if not response.strip():
    return None, EMPTY_RESPONSE
  if any(mark in text for text in (prompt, response) for mark in (PAIR_MARK, separator)):
    return None, SEPARATOR_INSIDE
  return f"{prompt}{PAIR_MARK}{response}", None


def split(example: str) -> tuple[str, str]:
  """`(prompt, response)` of an example `join` made."""
  prompt, _, response = example.partition(PAIR_MARK)
  return prompt, response


@dataclasses.dataclass
class Window:
  """One pair's tokens, `[BOS] prompt separator response [EOS]`, and where its labels start."""

  tokens: np.ndarray
  first_label: int  # Index in `tokens` of the first token that is a label (the response's first).
  prompt_cut: bool
  response_cut: bool
  characters: int = 0  # Characters its labels stand for (set by `TokenizedPairs`).


def check_room(separator_ids, sequence_length: int) -> None:
  """Raises `ValueError` unless a window holds [BOS], the separator and one response token."""
  if 1 + len(separator_ids) + 1 > sequence_length + 1:
    raise ValueError(
      f"--sequence_length {sequence_length} leaves no room for a response after the "
      f"{len(separator_ids)}-token separator; raise --sequence_length or shorten --response_separator."
    )


def window(
  prompt_ids,
  separator_ids,
  response_ids,
  *,
  sequence_length: int,
  bos_id: int,
  eos_id: int,
  long_responses: str,
) -> Window | None:
  """The pair's window by the module's length rule; None when its response is dropped."""
  check_room(separator_ids, sequence_length)
  budget = sequence_length + 1
  fixed = 1 + len(separator_ids)  # [BOS] and the separator.
  response = np.concatenate([response_ids, [eos_id]])
  response_cut = fixed + len(response) > budget
  if response_cut:
    if long_responses == "drop":
      return None
    response = response[: budget - fixed]
  room = budget - fixed - len(response)
  prompt = np.asarray(prompt_ids)[max(0, len(prompt_ids) - room) :] if room else np.zeros(0)
  tokens = np.concatenate([[bos_id], prompt, separator_ids, response]).astype(np.int64)
  return Window(tokens, 1 + len(prompt) + len(separator_ids), len(prompt) < len(prompt_ids), response_cut)


def pack_windows(windows: list[Window], *, sequence_length: int, pad_id: int) -> dict[str, np.ndarray]:
  """`{"token_ids", "padding_mask", "labels"}` `[len(windows), sequence_length]`, one row a pair."""
  n = len(windows)
  full = np.full((n, sequence_length + 1), preprocessing.IGNORE_LABEL, dtype=np.int32)
  labels = np.full((n, sequence_length), preprocessing.IGNORE_LABEL, dtype=np.int32)
  for i, w in enumerate(windows):
    full[i, : len(w.tokens)] = w.tokens
    labels[i, w.first_label - 1 : len(w.tokens) - 1] = w.tokens[w.first_label :]
  inputs = full[:, :-1]
  padding_mask = (inputs != preprocessing.IGNORE_LABEL).astype(np.int32)
  return {
    "token_ids": np.where(padding_mask == 1, inputs, pad_id).astype(np.int32),
    "padding_mask": padding_mask,
    "labels": labels,
  }


@dataclasses.dataclass
class PairCounts:
  """How the length rule treated a split's pairs."""

  pairs: int = 0
  prompts_cut: int = 0
  responses_cut: int = 0
  responses_dropped: int = 0

  def add(self, w: Window | None) -> None:
    self.pairs += 1
    if w is None:
      self.responses_dropped += 1
    else:
      self.prompts_cut += w.prompt_cut
      self.responses_cut += w.response_cut


class TokenizedPairs(preprocessing.TokenizedClients):
  """`preprocessing.TokenizedClients` for pairs: one window a pair, labels on the response only.

  Args:
    texts: `{client_id: [example, ...]}`, examples made by `join`.
    tokenizer: A tokenizer from `tff_gpt.data.tokenizers`.
    sequence_length: Tokens per model input.
    separator: Text between prompt and response.
    long_responses: "cut" or "drop" (see the module docstring).
  """

  def __init__(self, texts, tokenizer, *, sequence_length: int, separator: str, long_responses: str = "cut"):
    super().__init__(texts, tokenizer, sequence_length=sequence_length)
    self.separator_ids = np.asarray(tokenizer.encode([separator])[0], dtype=np.int64)
    check_room(self.separator_ids, sequence_length)
    self.long_responses = long_responses
    self._windows: dict[str, list[Window]] = {}
    self._counts: dict[str, PairCounts] = {}

  def windows(self, client_id: str) -> list[Window]:
    """The client's kept windows (tokenized on first use, then kept)."""
    if client_id not in self._windows:
      prompts, responses = zip(*(split(e) for e in self.texts[client_id]), strict=True)
      prompt_ids, response_ids = self.tokenizer.encode(list(prompts)), self.tokenizer.encode(list(responses))
      counts, kept = PairCounts(), []
      for p, r, response in zip(prompt_ids, response_ids, responses, strict=True):
        w = window(
          p,
          self.separator_ids,
          r,
          sequence_length=self.sequence_length,
          bos_id=self.tokenizer.bos_id,
          eos_id=self.tokenizer.eos_id,
          long_responses=self.long_responses,
        )
        counts.add(w)
        if w is not None:
          w.tokens = w.tokens.astype(self._dtype)
          # The response's characters and the end token; of a cut response, its share of them.
          w.characters = round((len(response) + 1) * (len(w.tokens) - w.first_label) / (len(r) + 1))
          kept.append(w)
      self._windows[client_id], self._counts[client_id] = kept, counts
    return self._windows[client_id]

  def counts(self, client_ids=None) -> PairCounts:
    """The length rule's counts over `client_ids` (every client when None)."""
    total = PairCounts()
    for cid in self.client_ids if client_ids is None else client_ids:
      self.windows(cid)
      for f in dataclasses.fields(PairCounts):
        setattr(total, f.name, getattr(total, f.name) + getattr(self._counts[cid], f.name))
    return total

  def cached_bytes(self) -> int:
    return sum(w.tokens.nbytes for ws in self._windows.values() for w in ws)

  def sequences(self, client_id: str) -> dict[str, np.ndarray]:
    return pack_windows(
      self.windows(client_id), sequence_length=self.sequence_length, pad_id=self.tokenizer.pad_id
    )

  def num_sequences(self, client_id: str) -> int:
    return len(self.windows(client_id))

  def num_characters(self, client_id: str) -> int:
    """Characters the client's labels stand for: each kept response's and its end token's."""
    return sum(w.characters for w in self.windows(client_id))
