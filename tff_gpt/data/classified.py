"""Labelled text for a classifier head: one window a text, its class at the last token.

With `--classes` and `--classify_with=head`, a pair's prompt is the text and
its response the class word (`pairs.join`, as in the generative form). The
window is `[BOS] text`, the text cut from its start when it does not fit in
`sequence_length` tokens; its label is the class's index at the window's last
token and `IGNORE_LABEL` everywhere else. A GPT-2 with a classifier head
(`gpt2_lm.GPT2LM(num_classes=...)`) gives class logits at every position, so
the language model's masked loss and accuracy read them at the last token
only: the loss, metrics, aggregation and `--trainable` modes are the language
model's, unchanged. Transformers' `GPT2ForSequenceClassification` pools the
same position (the last non-padding token).
"""

import dataclasses

import numpy as np

from tff_gpt import errors
from tff_gpt.data import pairs, preprocessing


@dataclasses.dataclass
class LabelledWindow(pairs.Window):
  """`[BOS] text` and the index of its class."""

  label: int = 0


def text_window(text_ids, label: int, *, sequence_length: int, bos_id: int) -> LabelledWindow:
  """`[BOS]` and the text's last `sequence_length - 1` tokens, labelled `label` at the last token."""
  room = sequence_length - 1
  kept = np.asarray(text_ids)[max(0, len(text_ids) - room) :]
  tokens = np.concatenate([[bos_id], kept]).astype(np.int64)
  return LabelledWindow(tokens, len(tokens) - 1, len(kept) < len(text_ids), False, label=label)


def pack_labelled(
  windows: list[LabelledWindow], *, sequence_length: int, pad_id: int
) -> dict[str, np.ndarray]:
  """`{"token_ids", "padding_mask", "labels"}` `[len(windows), sequence_length]`, each class at its last
  token."""
  n = len(windows)
  token_ids = np.full((n, sequence_length), pad_id, dtype=np.int32)
  padding_mask = np.zeros((n, sequence_length), dtype=np.int32)
  labels = np.full((n, sequence_length), preprocessing.IGNORE_LABEL, dtype=np.int32)
  for i, w in enumerate(windows):
    token_ids[i, : len(w.tokens)] = w.tokens
    padding_mask[i, : len(w.tokens)] = 1
    labels[i, len(w.tokens) - 1] = w.label
  return {"token_ids": token_ids, "padding_mask": padding_mask, "labels": labels}


def last_positions(padding_mask: np.ndarray) -> np.ndarray:
  """Each row's last non-padding position (where the classifier reads its logits)."""
  return np.asarray(padding_mask).sum(axis=1) - 1


class ClassifiedTexts(pairs.TokenizedPairs):
  """`preprocessing.TokenizedClients` of labelled texts: one window a text, its class at the last token.

  Args:
    texts: `{client_id: [example, ...]}`, examples made by `pairs.join(text, class word)`.
    tokenizer: A tokenizer from `tff_gpt.data.tokenizers`.
    sequence_length: Tokens per model input (at least 2: `[BOS]` and one token).
    classes: The class words; a label's index here is its class id.
  """

  def __init__(self, texts, tokenizer, *, sequence_length: int, classes):
    preprocessing.TokenizedClients.__init__(self, texts, tokenizer, sequence_length=sequence_length)
    self.classes = list(classes)
    self._index = {c: i for i, c in enumerate(self.classes)}
    self._windows, self._counts = {}, {}

  def windows(self, client_id: str) -> list[LabelledWindow]:
    """The client's windows (tokenized on first use, then kept)."""
    if client_id not in self._windows:
      texts, labels = zip(*(pairs.split(e) for e in self.texts[client_id]), strict=True)
      counts, kept = pairs.PairCounts(), []
      for ids, text, label in zip(self.tokenizer.encode(list(texts)), texts, labels, strict=True):
        if label not in self._index:
          raise errors.UserInputError(
            f"Client {client_id!r} has the label {label!r}, not one of --classes {','.join(self.classes)}: "
            "add it there or drop its examples."
          )
        w = text_window(
          ids, self._index[label], sequence_length=self.sequence_length, bos_id=self.tokenizer.bos_id
        )
        w.tokens = w.tokens.astype(self._dtype)
        w.characters = len(text)
        counts.add(w)
        kept.append(w)
      self._windows[client_id], self._counts[client_id] = kept, counts
    return self._windows[client_id]

  def sequences(self, client_id: str) -> dict[str, np.ndarray]:
    return pack_labelled(
      self.windows(client_id), sequence_length=self.sequence_length, pad_id=self.tokenizer.pad_id
    )

  def labels(self, client_id: str) -> list[int]:
    """The class ids of the client's texts, in order."""
    return [w.label for w in self.windows(client_id)]
