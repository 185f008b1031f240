"""Loads a tff_gpt export with numpy and Keras 3 `keras_hub`; no TFF, no Keras 2.

This file is copied into every export as `tff_gpt_export.py`, so a notebook
(Colab) can `import tff_gpt_export` from the export directory. It imports only
numpy at module level; `load_backbone` imports `keras_hub`.

Export layout (what this loader reads):
  config.json     model (GPT2Backbone arguments), tokenizer, sequence length, run
  keras_hub/      the backbone as a keras-hub preset; the weights are read from here
  tokenizer.json  (char, word) vocabulary and special ids; or vocab.json + merges.txt (bpe)
  classifier_head.npy  a classifier's head kernel [hidden, classes] (config.json's "classifier")
  heldout.jsonl   held-out text of the run's evaluation clients, when exported
                  (prompt and response fields for runs on pairs, whose separator is in config.json)
Exports written before keras_hub/ held the notebook's weights have weights.npz
(keyed "<layer name>/<index>" in `layer.get_weights()` order); it is read when present.
"""

import json
import os

import numpy as np

IGNORE_LABEL = -1


def read_config(export_dir: str) -> dict:
  with open(os.path.join(export_dir, "config.json")) as f:
    return json.load(f)


def layer_arrays(arrays, layer_name: str) -> list[np.ndarray]:
  """The weights of one layer from `weights.npz`, in `get_weights()` order."""
  out, i = [], 0
  while f"{layer_name}/{i}" in arrays:
    out.append(np.asarray(arrays[f"{layer_name}/{i}"]))
    i += 1
  return out


def load_backbone(export_dir: str):
  """A `keras_hub.models.GPT2Backbone` with the exported weights (keras_hub/, or an older weights.npz)."""
  import keras_hub

  npz = os.path.join(export_dir, "weights.npz")
  if not os.path.exists(npz):
    return keras_hub.models.GPT2Backbone.from_preset(os.path.join(export_dir, "keras_hub"))
  config = read_config(export_dir)
  backbone = keras_hub.models.GPT2Backbone(**config["backbone"])
  arrays = np.load(npz)
  used = set()
  for layer in backbone.layers:
    expected = layer.get_weights()
    if not expected:
      continue
    values = layer_arrays(arrays, layer.name)
    shapes = [v.shape for v in values]
    if shapes != [w.shape for w in expected]:
      raise ValueError(
        f"Layer {layer.name!r}: export has shapes {shapes}, keras_hub expects {[w.shape for w in expected]}."
      )
    layer.set_weights(values)
    used.update(f"{layer.name}/{i}" for i in range(len(values)))
  unused = sorted(set(arrays.files) - used)
  if unused:
    raise ValueError(f"Exported weights not matched by any keras_hub layer: {unused[:5]}.")
  return backbone


def logits(backbone, token_ids, padding_mask, kernel=None):
  """GPT-2 logits with the LM head tied to the token embedding; with a classifier's head `kernel`
  (`load_head`), class logits at every position, as the export's SavedModel gives them."""
  hidden = backbone({"token_ids": token_ids, "padding_mask": padding_mask})
  if kernel is not None:
    return np.asarray(hidden) @ kernel
  return backbone.token_embedding(hidden, reverse=True)


def load_head(export_dir: str):
  """`(kernel [hidden, classes], class words)` of a classifier's export; None for a language model."""
  about = read_config(export_dir).get("classifier")
  if not about:
    return None
  return np.load(os.path.join(export_dir, about["head"])), about["classes"]


def class_logits(backbone, kernel, token_ids, padding_mask):
  """A classifier's logits `[batch, classes]`: the head on each row's last non-padding token."""
  hidden = np.asarray(backbone({"token_ids": token_ids, "padding_mask": padding_mask}))
  last = np.asarray(padding_mask).astype(np.int64).sum(axis=1) - 1
  return hidden[np.arange(len(last)), last] @ kernel


class Tokenizer:
  """The run's tokenizer: `encode(texts)`, `decode(ids)` and special ids."""

  def __init__(self, export_dir: str):
    config = read_config(export_dir)["tokenizer"]
    self.name = config["name"]
    if self.name in ("char", "word"):
      with open(os.path.join(export_dir, "tokenizer.json")) as f:
        spec = json.load(f)
      self.vocabulary = spec["vocabulary"]
      self.pad_id, self.oov_id, self.bos_id, self.eos_id = (
        spec[k] for k in ("pad_id", "oov_id", "bos_id", "eos_id")
      )
      self._ids = {c: i + 1 for i, c in enumerate(self.vocabulary)}
    else:
      import keras_hub

      self.keras_tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=os.path.join(export_dir, "vocab.json"), merges=os.path.join(export_dir, "merges.txt")
      )
      self.eos_id = self.bos_id = self.pad_id = self.keras_tokenizer.end_token_id

  def encode(self, texts: list[str]) -> list[np.ndarray]:
    if self.name == "word":  # TFF Stack Overflow's words: space-separated.
      return [
        np.array([self._ids.get(w, self.oov_id) for w in t.split(" ") if w], dtype=np.int32) for t in texts
      ]
    if self.name == "char":
      return [np.array([self._ids.get(c, self.oov_id) for c in t], dtype=np.int32) for t in texts]
    return [np.asarray(self.keras_tokenizer(t), dtype=np.int32) for t in texts]

  def decode(self, ids) -> str:
    ids = [int(i) for i in np.asarray(ids).ravel()]
    if self.name == "word":
      return " ".join(self.vocabulary[i - 1] for i in ids if 1 <= i <= len(self.vocabulary))
    if self.name == "char":
      return "".join(self.vocabulary[i - 1] if 1 <= i <= len(self.vocabulary) else "" for i in ids)
    ids = [i for i in ids if i != self.eos_id]
    text = np.asarray(self.keras_tokenizer.detokenize([ids])).ravel()[0] if ids else ""
    return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)


def pack_sequences(token_ids, *, sequence_length: int, bos_id: int, eos_id: int, pad_id: int) -> dict:
  """`[BOS] text [EOS] ...` cut into windows of `sequence_length + 1` overlapping by one.

  The same packing as training (`tff_gpt.data.preprocessing.pack_sequences`):
  inputs are a window's first tokens, labels its last, padded labels are -1.
  """
  stream = np.concatenate([np.concatenate([[bos_id], ids, [eos_id]]) for ids in token_ids] or [np.zeros(0)])
  n = max(0, -(-(len(stream) - 1) // sequence_length))
  window = np.full((n, sequence_length + 1), IGNORE_LABEL, dtype=np.int32)
  for i in range(n):
    chunk = stream[i * sequence_length : i * sequence_length + sequence_length + 1]
    window[i, : len(chunk)] = chunk
  mask = (window[:, :-1] != IGNORE_LABEL).astype(np.int32)
  return {
    "token_ids": np.where(mask == 1, window[:, :-1], pad_id).astype(np.int32),
    "padding_mask": mask,
    "labels": window[:, 1:].copy(),
  }


def pack_pairs(tokenizer, pairs, *, sequence_length: int, separator: str) -> dict:
  """Prompt and response pairs, one window each, labels on the response (as `tff_gpt.data.pairs`).

  `[BOS] prompt separator response [EOS]`; the response and its end token go
  first, a prompt that does not fit is cut from its start, a response that does
  not fit alone is cut (no end token).
  """
  budget, sep = sequence_length + 1, tokenizer.encode([separator])[0]
  window = np.full((len(pairs), budget), IGNORE_LABEL, dtype=np.int32)
  labels = np.full((len(pairs), sequence_length), IGNORE_LABEL, dtype=np.int32)
  for i, (prompt, response) in enumerate(pairs):
    p, r = tokenizer.encode([prompt, response])
    r = np.concatenate([r, [tokenizer.eos_id]])[: budget - 1 - len(sep)]
    room = budget - 1 - len(sep) - len(r)
    p = p[max(0, len(p) - room) :] if room else p[:0]
    tokens = np.concatenate([[tokenizer.bos_id], p, sep, r]).astype(np.int32)
    window[i, : len(tokens)] = tokens
    labels[i, len(tokens) - len(r) - 1 : len(tokens) - 1] = r
  mask = (window[:, :-1] != IGNORE_LABEL).astype(np.int32)
  return {
    "token_ids": np.where(mask == 1, window[:, :-1], tokenizer.pad_id),
    "padding_mask": mask,
    "labels": labels,
  }


def separator(config: dict) -> str | None:
  """The response separator of a run on prompt and response pairs; None for text."""
  return config.get("examples", {}).get("separator")


def read_heldout(export_dir: str) -> dict[str, list]:
  """`{client_id: [text, ...]}` from `heldout.jsonl`; for a run on pairs, `[(prompt, response), ...]`."""
  clients: dict[str, list] = {}
  with open(os.path.join(export_dir, "heldout.jsonl"), encoding="utf-8") as f:
    for line in f:
      row = json.loads(line)
      example = (row["prompt"], row["response"]) if "prompt" in row else row["text"]
      clients.setdefault(row["client_id"], []).append(example)
  return clients


def evaluate_clients(
  backbone, tokenizer, clients: dict[str, list], sequence_length: int, batch_size=64, separator=None
):
  """Per-client `{client: (loss sum, correct, tokens)}` of next-token prediction (responses, with pairs)."""
  out = {}
  for client, examples in clients.items():
    if separator is not None:
      seqs = pack_pairs(tokenizer, examples, sequence_length=sequence_length, separator=separator)
    else:
      seqs = pack_sequences(
        tokenizer.encode(examples),
        sequence_length=sequence_length,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
      )
    loss_sum, correct, tokens = 0.0, 0, 0
    for start in range(0, len(seqs["labels"]), batch_size):
      sl = slice(start, start + batch_size)
      z = np.asarray(logits(backbone, seqs["token_ids"][sl], seqs["padding_mask"][sl]), dtype=np.float64)
      labels = seqs["labels"][sl]
      keep = labels != IGNORE_LABEL
      z = z - z.max(axis=-1, keepdims=True)
      log_probs = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
      picked = np.take_along_axis(log_probs, np.where(keep, labels, 0)[..., None], axis=-1)[..., 0]
      loss_sum += float(-(picked * keep).sum())
      correct += int(((z.argmax(-1) == labels) & keep).sum())
      tokens += int(keep.sum())
    out[client] = (loss_sum, correct, tokens)
  return out


def reply(backbone, tokenizer, prompt: str, separator: str, *, max_new_tokens: int = 48, sampler=None) -> str:
  """The model's response to `prompt` (runs on pairs): `[BOS] prompt separator`, then up to the end token."""
  import keras_hub

  limit = backbone.max_sequence_length
  p, sep = tokenizer.encode([prompt, separator])
  keep = max(0, limit - max_new_tokens - 1 - len(sep))
  ids = np.concatenate([[tokenizer.bos_id], p[max(0, len(p) - keep) :] if keep else p[:0], sep]).astype(
    np.int32
  )
  length = min(limit, len(ids) + max_new_tokens)
  # The sampler stops once every position after the prompt holds a stop token: never fill with one.
  fill = tokenizer.pad_id if tokenizer.pad_id != tokenizer.eos_id else int(tokenizer.eos_id == 0)
  token_ids = np.full((1, length), fill, dtype=np.int32)
  token_ids[0, : len(ids)] = ids
  mask = np.zeros((1, length), dtype=bool)
  mask[0, : len(ids)] = True
  causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
  causal_lm.compile(sampler=sampler or keras_hub.samplers.GreedySampler())
  out = causal_lm.generate({"token_ids": token_ids, "padding_mask": mask}, stop_token_ids=[tokenizer.eos_id])
  new = np.asarray(out["token_ids"])[0, len(ids) :][
    np.asarray(out["padding_mask"])[0, len(ids) :].astype(bool)
  ]
  stops = np.flatnonzero(new == tokenizer.eos_id)
  return tokenizer.decode(new[: stops[0]] if len(stops) else new)
