"""Federated algorithms and aggregators, each selected by name.

`build_process(config, model_fn)` turns `--algorithm`, `--aggregator`,
`--client_weighting` and `--client_lr_schedule` into one
`tff.learning.templates.LearningProcess`; `build_eval_process(model_fn)` is
TFF's federated evaluation.
"""

from tff_gpt.algorithms.aggregators import AGGREGATORS
from tff_gpt.algorithms.registry import (
  ALGORITHMS,
  SCHEDULES,
  UnsupportedCombinationError,
  build_eval_process,
  build_process,
  client_learning_rate,
  client_weighting,
  server_learning_rate,
)

__all__ = [
  "AGGREGATORS",
  "ALGORITHMS",
  "SCHEDULES",
  "UnsupportedCombinationError",
  "build_eval_process",
  "build_process",
  "client_learning_rate",
  "client_weighting",
  "server_learning_rate",
]
