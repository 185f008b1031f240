"""GPT-2's weights in groups, for per-group client learning rates (`--client_lr_multipliers`).

  embeddings    token and position embeddings (the tied LM head included)
  attention_qk  every block's attention query and key projections
  attention_vo  every block's attention value and output projections
  feedforward   every block's two feed-forward layers
  layer_norm    every layer norm, the final one included

A group's kernels, biases and LoRA adapters go together. Groups are found by
layer path (`trainable.named_weights`), never by variable name, which differs
between eager and graph mode.

Why: at width 128 the client rate GPT-2 tolerates is set by the attention
value/output projections. With Adam at 0.0045 and one optimizer state for
the whole run, GPT-2 stays on the bigram plateau (held-out loss 2.50 after
50 rounds of batches); the same rate with the value/output projections at a
quarter of it reaches 1.97, and the other groups make no such difference
(BENCHMARKS.md, "GPT-2 against the LSTM: the sweep", the sixth pass).
"""

import math
import re

from tff_gpt import errors
from tff_gpt.models import trainable as trainable_lib

GROUPS = ("embeddings", "attention_qk", "attention_vo", "feedforward", "layer_norm")

_PATTERNS = (
  ("layer_norm", re.compile(r"layer_norm/")),
  ("embeddings", re.compile(r"^(token|position)_embedding/")),
  ("attention_qk", re.compile(r"/self_attention/(query|key)/")),
  ("attention_vo", re.compile(r"/self_attention/(value|attention_output)/")),
  ("feedforward", re.compile(r"/feedforward_(intermediate|output)_dense/")),
)


def group_of(path: str) -> str:
  """The group of a weight's layer path, e.g. "transformer_layer_0/self_attention/value/kernel"."""
  for group, pattern in _PATTERNS:
    if pattern.search(path):
      return group
  raise ValueError(f"No parameter group for GPT-2 weight {path!r}.")


def parse(spec: str | None) -> dict[str, float]:
  """Parses `--client_lr_multipliers`: "group=factor,..." (groups in `GROUPS`); "" or None for none.

  Raises:
    UserInputError: naming the bad pair and what is accepted.
  """
  multipliers = {}
  for pair in filter(None, (p.strip() for p in str(spec or "").split(","))):
    group, _, value = pair.partition("=")
    try:
      factor = float(value)
    except ValueError:
      factor = 0.0
    if group not in GROUPS or not (factor > 0 and math.isfinite(factor)):
      raise errors.UserInputError(
        f"--client_lr_multipliers: {pair!r} is not group=factor with a group in {', '.join(GROUPS)} "
        "and a factor > 0; for example attention_vo=0.25,attention_qk=0.5."
      )
    if group in multipliers:
      raise errors.UserInputError(f"--client_lr_multipliers names {group} twice.")
    multipliers[group] = factor
  return multipliers


def multipliers_for(backbone, trained, spec: dict[str, float] | str | None) -> list[float]:
  """One learning-rate factor per variable of `trained` (in its order): its group's, 1 if not named."""
  spec = spec if isinstance(spec, dict) else parse(spec)
  path_of = {id(v): path for path, v in trainable_lib.named_weights(backbone).items()}
  return [spec.get(group_of(path_of[id(v)]), 1.0) for v in trained]
