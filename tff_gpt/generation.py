"""Text generation from a trained model with KerasNLP's samplers."""

import keras_nlp
import numpy as np
import tensorflow as tf

from tff_gpt import errors
from tff_gpt.models import gpt2_lm

SAMPLERS = ("greedy", "top_k", "top_p")


def build_sampler(name: str, *, k: int = 10, p: float = 0.9, seed: int | None = None):
  """A `keras_nlp.samplers.Sampler` by name: greedy, top_k or top_p."""
  if name == "greedy":
    return keras_nlp.samplers.GreedySampler()
  if name == "top_k":
    return keras_nlp.samplers.TopKSampler(k=k, seed=seed)
  if name == "top_p":
    return keras_nlp.samplers.TopPSampler(p=p, seed=seed)
  raise ValueError(f"Unknown sampler {name!r}; expected one of {list(SAMPLERS)}.")


def generate(
  model: tf.keras.Model,
  tokenizer,
  prompt: str,
  *,
  max_length: int | None = None,
  sampler: str = "top_k",
  k: int = 10,
  p: float = 0.9,
  seed: int | None = 0,
) -> str:
  """Continues `prompt` with the model's `GPT2CausalLM`.

  Args:
    model: A model from `gpt2_lm.build_gpt2_lm` holding trained weights.
    tokenizer: The run's tokenizer (`tff_gpt.data.tokenizers`).
    prompt: Text to continue; a beginning-of-text token is put before it.
    max_length: Total tokens, prompt included; the model's
      `max_sequence_length` when `None`, and never more.
    sampler, k, p, seed: See `build_sampler`.

  Returns:
    The prompt and its continuation, up to the first end-of-text token.
  """
  prompt_ids = np.concatenate([[tokenizer.bos_id], *tokenizer.encode([prompt])]).astype(np.int32)
  ids = _complete(model, tokenizer, prompt_ids, max_length=max_length, sampler=sampler, k=k, p=p, seed=seed)
  return tokenizer.decode(np.concatenate([prompt_ids[1:], ids]))


def reply(
  model: tf.keras.Model,
  tokenizer,
  prompt: str,
  separator: str,
  *,
  max_new_tokens: int | None = None,
  sampler: str = "top_k",
  k: int = 10,
  p: float = 0.9,
  seed: int | None = 0,
) -> str:
  """The model's response to `prompt` in a run on prompt and response pairs (`--examples=pairs`).

  The input is tokenized as in training, `[BOS] prompt separator`, the prompt
  cut from its start when it leaves fewer than `max_new_tokens` (a quarter of
  the model's positions when None) for the reply; the reply ends at the end token.
  """
  limit = gpt2_lm.backbone_of(model).max_sequence_length
  room = max_new_tokens or max(1, limit // 4)
  prompt_ids, separator_ids = (np.asarray(ids, np.int32) for ids in tokenizer.encode([prompt, separator]))
  keep = max(0, limit - room - 1 - len(separator_ids))
  prompt_ids = prompt_ids[max(0, len(prompt_ids) - keep) :] if keep else prompt_ids[:0]
  ids = np.concatenate([[tokenizer.bos_id], prompt_ids, separator_ids]).astype(np.int32)
  return tokenizer.decode(
    _complete(model, tokenizer, ids, max_length=None, sampler=sampler, k=k, p=p, seed=seed)
  )


def _complete(model, tokenizer, prompt_ids, *, max_length, sampler, k, p, seed) -> np.ndarray:
  """The ids sampled after `prompt_ids` (BOS included), up to the first end token."""
  if gpt2_lm.head_variables(model):
    raise errors.UserInputError(
      "This run trained a classifier head (--classify_with=head): it scores classes and writes no text; "
      "generate with a run of the language model."
    )
  backbone = gpt2_lm.backbone_of(model)
  limit = backbone.max_sequence_length
  max_length = min(max_length or limit, limit)
  if len(prompt_ids) >= max_length:
    raise errors.UserInputError(
      f"The prompt has {len(prompt_ids)} tokens; max_length {max_length} leaves no room."
    )
  # keras-nlp's sampler stops once every position outside the prompt holds a stop token, and those
  # positions start as this fill: with GPT-2's BPE the pad token is the end token, so fill with another.
  fill = (
    tokenizer.pad_id
    if tokenizer.pad_id != tokenizer.eos_id
    else (tokenizer.eos_id + 1) % tokenizer.vocabulary_size
  )
  token_ids = np.full((1, max_length), fill, dtype=np.int32)
  padding_mask = np.zeros((1, max_length), dtype=np.int32)
  token_ids[0, : len(prompt_ids)] = prompt_ids
  padding_mask[0, : len(prompt_ids)] = 1
  if seed is not None:
    tf.keras.utils.set_random_seed(seed)
  causal_lm = keras_nlp.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
  causal_lm.compile(sampler=build_sampler(sampler, k=k, p=p, seed=seed))
  output = causal_lm.generate(
    {"token_ids": token_ids, "padding_mask": padding_mask.astype(bool)},
    stop_token_ids=[tokenizer.eos_id],
  )
  ids = np.asarray(output["token_ids"])[0, len(prompt_ids) :]
  mask = np.asarray(output["padding_mask"])[0, len(prompt_ids) :].astype(bool)
  ids = ids[mask]
  stops = np.flatnonzero(ids == tokenizer.eos_id)
  return ids[: stops[0]] if len(stops) else ids
