"""Classification scored: the generative form's likeliest class word, or a classifier head's.

Generative form (`--classify_with=words`): every held-out prompt is packed
with every class as its response, exactly as training packs a pair
(`pairs.TokenizedPairs`: `[BOS] prompt separator class [END]`, the prompt cut
from its start when long), and each class scored by the summed cross-entropy
of its tokens and the end token; the prediction is the lowest. Head
(`--classify_with=head`, `data/classified.py`): the argmax of the class logits
at each text's last token. Accuracy and macro-F1 (scikit-learn's)
per client and over all of them.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from tff_gpt import errors
from tff_gpt.data import classified, pairs, preprocessing


def class_losses(
  model: tf.keras.Model,
  tokenizer,
  prompts: Sequence[str],
  classes: Sequence[str],
  *,
  separator: str,
  sequence_length: int,
  batch_size: int = 32,
) -> np.ndarray:
  """`[len(prompts), len(classes)]`: each class's summed cross-entropy as the response to each prompt."""
  texts = [pairs.join(p, c, separator)[0] for p in prompts for c in classes]
  if None in texts:
    raise errors.UserInputError(
      f"A class or prompt is empty or holds the separator {separator!r}: change it."
    )
  packed = pairs.TokenizedPairs(
    {"all": texts}, tokenizer, sequence_length=sequence_length, separator=separator
  )
  sequences = packed.sequences("all")
  if len(sequences["labels"]) != len(texts):
    raise errors.UserInputError(
      f"A class does not fit in --sequence_length={sequence_length} beside the separator; use a longer one."
    )
  out = []
  for start in range(0, len(texts), batch_size):
    part = {k: v[start : start + batch_size] for k, v in sequences.items()}
    logits = model({"token_ids": part["token_ids"], "padding_mask": part["padding_mask"]})
    labels = part["labels"]
    losses = tf.keras.losses.sparse_categorical_crossentropy(np.maximum(labels, 0), logits, from_logits=True)
    out.append(np.sum(np.where(labels != preprocessing.IGNORE_LABEL, losses, 0.0), axis=1))
  return np.concatenate(out).reshape(len(prompts), len(classes))


def scores(truth: Sequence[int], predicted: Sequence[int], classes: Sequence[str]) -> dict:
  """Accuracy and macro-F1 (over every class, a class never predicted nor true scoring 0) of one group."""
  from sklearn import metrics

  labels = list(range(len(classes)))
  return {
    "examples": len(truth),
    "accuracy": float(metrics.accuracy_score(truth, predicted)),
    "macro_f1": float(metrics.f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
  }


def evaluate(
  model: tf.keras.Model,
  tokenizer,
  held_out: Mapping[str, Sequence[tuple[str, str]]],
  classes: Sequence[str],
  *,
  separator: str,
  sequence_length: int,
) -> dict:
  """`{"overall": scores, "clients": {client: scores}}` of `held_out`'s `(prompt, label)` pairs.

  Raises:
    errors.UserInputError: A label that is not one of `classes`.
  """
  index = {c: i for i, c in enumerate(classes)}
  by_client = {}
  for client, examples in held_out.items():
    for _, label in examples:
      if label not in index:
        raise errors.UserInputError(
          f"Client {client!r} has the label {label!r}, not one of the classes {list(classes)}: add it to "
          "the classes or drop its examples."
        )
    losses = class_losses(
      model,
      tokenizer,
      [p for p, _ in examples],
      classes,
      separator=separator,
      sequence_length=sequence_length,
    )
    by_client[client] = ([index[label] for _, label in examples], list(np.argmin(losses, axis=1)))
  return _scored(by_client, classes)


def head_predictions(
  model: tf.keras.Model, sequences: Mapping[str, np.ndarray], batch_size: int = 32
) -> np.ndarray:
  """The classifier head's class of each row of `sequences` (`classified.pack_labelled`): the argmax at
  its last token."""
  last = classified.last_positions(sequences["padding_mask"])
  out = []
  for start in range(0, len(last), batch_size):
    part = {k: sequences[k][start : start + batch_size] for k in ("token_ids", "padding_mask")}
    logits = model(part).numpy()
    out.append(np.argmax(logits[np.arange(len(logits)), last[start : start + batch_size]], axis=-1))
  return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def evaluate_head(model: tf.keras.Model, data: classified.ClassifiedTexts, client_ids: Sequence[str]) -> dict:
  """`evaluate`'s scores of a classifier head on `client_ids`' labelled texts in `data`."""
  by_client = {
    cid: (data.labels(cid), list(head_predictions(model, data.sequences(cid)))) for cid in client_ids
  }
  return _scored(by_client, data.classes)


def _scored(by_client: Mapping[str, tuple[list[int], list[int]]], classes: Sequence[str]) -> dict:
  """`{"overall": scores, "clients": {client: scores}}` of each client's `(truth, predicted)`."""
  clients, truth, predicted = {}, [], []
  for client, (own_truth, own) in by_client.items():
    clients[client] = scores(own_truth, own, classes)
    truth += own_truth
    predicted += own
  return {"overall": scores(truth, predicted, classes), "clients": clients}


def check_labels(train: Mapping[str, Sequence[str]], test: Mapping[str, Sequence[str]], classes) -> None:
  """Raises (one line) unless every response of both splits is a class and every class is trained on."""
  trained = set()
  for split, texts in (("training", train), ("held-out", test)):
    for client, examples in texts.items():
      for example in examples:
        response = pairs.split(example)[1]
        if response not in classes:
          raise errors.UserInputError(
            f"{split.capitalize()} client {client!r} has the response {response!r}, not one of --classes "
            f"{','.join(classes)}: add it there or drop its examples."
          )
        if split == "training":
          trained.add(response)
  if missing := [c for c in classes if c not in trained]:
    raise errors.UserInputError(
      f"No training client has an example of the class(es) {missing} of --classes: drop them or add examples."
    )
