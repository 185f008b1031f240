"""Generated responses scored against the held-out ones: ROUGE-1/2/L, for summarization.

With `--rouge_pairs=N`, every evaluation decodes the model's response to the
first N held-out pairs of each evaluation client: `[BOS] prompt separator`,
as training packs a pair, the prompt cut from its start so that it leaves
`--rouge_max_tokens` positions within `--sequence_length`; greedy decoding
(keras-nlp's `GreedySampler`), up to the end token or `--rouge_max_tokens`
tokens. Each response is scored against the held-out one by `rouge-score`
(Google's implementation of Lin 2004, Porter stemmer on): the F-measures of
ROUGE-1, ROUGE-2 and ROUGE-L, averaged per client and over every pair.
"""

from collections.abc import Mapping, Sequence

import keras_nlp
import numpy as np
import tensorflow as tf

from tff_gpt import errors
from tff_gpt.data import pairs
from tff_gpt.models import gpt2_lm

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(references: Sequence[str], predictions: Sequence[str]) -> dict:
  """Mean F-measure of each of `ROUGE_TYPES` over the pairs, and their number."""
  from rouge_score import rouge_scorer

  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  rows = [scorer.score(r, p) for r, p in zip(references, predictions, strict=True)]
  out = {name: float(np.mean([row[name].fmeasure for row in rows])) if rows else 0.0 for name in ROUGE_TYPES}
  return dict(out, pairs=len(rows))


def prompt_ids(tokenizer, prompt: str, separator: str, *, room: int) -> np.ndarray:
  """`[BOS] prompt separator`, the prompt cut from its start to leave `room` tokens for the response."""
  ids, separator_ids = (np.asarray(x, np.int32) for x in tokenizer.encode([prompt, separator]))
  keep = max(0, room - 1 - len(separator_ids))
  return np.concatenate(
    [[tokenizer.bos_id], ids[max(0, len(ids) - keep) :] if keep else ids[:0], separator_ids]
  )


def greedy_decoder(model: tf.keras.Model):
  """keras-nlp's `GPT2CausalLM` of `model`'s backbone with greedy sampling (build once, decode many)."""
  causal_lm = keras_nlp.models.GPT2CausalLM(backbone=gpt2_lm.backbone_of(model), preprocessor=None)
  causal_lm.compile(sampler=keras_nlp.samplers.GreedySampler())
  return causal_lm


def greedy_responses(
  decoder,
  tokenizer,
  prompts: Sequence[str],
  separator: str,
  *,
  sequence_length: int,
  max_new_tokens: int,
  batch_size: int = 16,
) -> list[str]:
  """`decoder`'s (`greedy_decoder`) response to each prompt (module docstring), `batch_size` at a time.

  Every batch has the same shape, `[batch_size, sequence_length]` (short batches padded with empty rows),
  so that keras-nlp traces its decoding loop once.
  """
  if max_new_tokens >= sequence_length - 1:
    raise ValueError(f"{max_new_tokens} new tokens leave no room for a prompt in {sequence_length}.")
  # Positions after a prompt start as this fill (never the end token: the sampler would take it as done).
  fill = tokenizer.pad_id
  if fill == tokenizer.eos_id:
    fill = (tokenizer.eos_id + 1) % tokenizer.vocabulary_size
  out = []
  for start in range(0, len(prompts), batch_size):
    rows = [
      prompt_ids(tokenizer, p, separator, room=sequence_length - max_new_tokens)
      for p in prompts[start : start + batch_size]
    ]
    token_ids = np.full((batch_size, sequence_length), fill, np.int32)
    mask = np.zeros((batch_size, sequence_length), bool)
    token_ids[len(rows) :, 0], mask[len(rows) :, 0] = tokenizer.bos_id, True  # Padding rows: [BOS] alone.
    for i, r in enumerate(rows):
      token_ids[i, : len(r)], mask[i, : len(r)] = r, True
    generated = np.asarray(
      decoder.generate({"token_ids": token_ids, "padding_mask": mask}, stop_token_ids=[tokenizer.eos_id])[
        "token_ids"
      ]
    )
    for i, r in enumerate(rows):
      new = generated[i, len(r) : len(r) + max_new_tokens]
      stops = np.flatnonzero(new == tokenizer.eos_id)
      out.append(tokenizer.decode(new[: stops[0]] if len(stops) else new))
  return out


def evaluate(
  model: tf.keras.Model,
  tokenizer,
  held_out: Mapping[str, Sequence[tuple[str, str]]],
  *,
  separator: str,
  sequence_length: int,
  max_new_tokens: int,
) -> dict:
  """`{"overall": rouge, "clients": {client: rouge}}` of the greedy responses to `held_out`'s pairs."""
  clients, references, predictions, decoder = {}, [], [], greedy_decoder(model)
  for client, examples in held_out.items():
    own = greedy_responses(
      decoder,
      tokenizer,
      [p for p, _ in examples],
      separator,
      sequence_length=sequence_length,
      max_new_tokens=max_new_tokens,
    )
    clients[client] = rouge([r for _, r in examples], own)
    references += [r for _, r in examples]
    predictions += own
  return {"overall": rouge(references, predictions), "clients": clients}


def check_documents(*splits: Mapping[str, Sequence[str]]) -> None:
  """Raises (one line) for a pair whose prompt (the document) is empty: there is nothing to summarize."""
  for texts in splits:
    for client, examples in texts.items():
      for example in examples:
        if not pairs.split(example)[0].strip():
          raise errors.UserInputError(
            f"Client {client!r} has a pair with an empty document (prompt): drop it from the corpus, or "
            "leave --rouge_pairs unset."
          )
