"""A run whose model diverged stops at that round, and says which rates to lower.

TFF's FedAvg drops a client update that is not finite (weight 0, and its
metrics reset), so one client that blows up leaves the global model as it
was. A model that diverged does not recover: once its weights are not
finite, or once they are so large that every client's update is (every
sampled client dropped: the round trained nothing), every later round trains
on nothing and every evaluation is NaN, so a run that went on would spend its
remaining rounds (and a comparison its report) on nothing. The trainer looks
after every round and evaluation (`diagnose`); a diverged run keeps its metrics rows and its
checkpoints up to the round before, writes `diverged.json` beside its metrics
(`write`, `read`), and stops with `DivergedError` (`stop`). A comparison
records such a grid point as diverged and goes on with the rest.
"""

import json
import math
import os

import numpy as np
import tensorflow as tf

from tff_gpt import algorithms, errors
from tff_gpt.training import outputs

FILE = "diverged.json"


class DivergedError(errors.RunFailure):
  """Raised when the global model's weights are no longer finite after a round."""

  def __init__(self, message: str, round_num: int):
    super().__init__(message)
    self.round_num = round_num


def is_finite(weights) -> bool:
  """Whether every value of every array in the nested structure `weights` is finite."""
  return all(np.isfinite(np.asarray(w)).all() for w in tf.nest.flatten(weights))


def diagnose(row: dict, model_weights=None) -> str | None:
  """How the round of metrics row `row` (that left `model_weights`, when given) diverged; None if it did not.

  Diverged: weights that are not finite; a round whose clients all had their
  updates dropped (FedAvg counts no training sequence); a train loss that is
  not finite (FedProx keeps a dropped client's metrics); an evaluation whose
  loss is not finite (weights so large that the logits overflow).
  """
  if model_weights is not None and not is_finite(model_weights):
    return "the global model's weights are no longer finite"
  trained = row.get("clients") != 0  # 0: every sampled client dropped out (`cohorts`), nothing trained.
  if trained and row["train_sequences"] == 0:
    return (
      "every sampled client's update was not finite, so TFF dropped them all and the round trained nothing"
    )
  if trained and not math.isfinite(row["train_loss"]):  # FedProx keeps a dropped client's metrics.
    return f"the round's train loss is {row['train_loss']} (a client's update was not finite)"
  if "eval_loss" in row and not math.isfinite(row["eval_loss"]):
    return f"the held-out loss is {row['eval_loss']} (the weights are so large that the logits overflow)"
  return None


def stop(run, round_num: int, why: str, recent: tuple, *, last_checkpoint: int):
  """Records that `run` (a `run.Run`) diverged in `round_num` (`write`); returns the `DivergedError` to raise.

  The message says `why`, the train loss of the `recent` metrics rows (the
  round before's, empty when there was none, and this round's) where their
  clients trained, the rates to lower with their values in this run (the
  server's too when it is not 1), and what is kept: every metrics row and the
  checkpoint of `last_checkpoint` (0: none). The record holds the run's
  settings (`Run.settings_summary`) and the seconds and bytes of the rounds
  run, as a summary has them.
  """
  config = run.config
  rates = {"--client_learning_rate": config.client_learning_rate}
  if algorithms.server_learning_rate(config) != 1.0:
    rates["--server_learning_rate"] = algorithms.server_learning_rate(config)
  lower = " or ".join(f"{flag} ({value:g} here)" for flag, value in rates.items())
  rounds = zip(range(round_num + 1 - len(recent), round_num + 1), recent, strict=True)
  losses = ", ".join(f"round {r} {m['train_loss']:.4g}" for r, m in rounds if m and m["train_sequences"])
  losses = f" (train loss {losses})" if losses else ""
  kept = (
    f" and round {last_checkpoint}'s checkpoint are kept"
    if last_checkpoint
    else " are kept (no checkpoint yet)"
  )
  error = DivergedError(
    f"Round {round_num} diverged: {why}{losses}. Lower {lower} and run again under a new --experiment_name; "
    f"the metrics of every round so far{kept}.",
    round_num,
  )
  spent = {  # The seconds of every round run, in this process or before a resume.
    "train_seconds": outputs.seconds_spent(outputs.read_metrics(run.dirs)),
    "bytes_communicated": run.bytes_communicated(round_num),
  }
  write(run.dirs.results, error, dict(run.settings_summary(), **spent))
  return error


def write(results_dir: str, error: DivergedError, about: dict) -> None:
  """Records in `results_dir` that the run diverged: the round, the message and `about` (its settings)."""
  outputs.write_json(
    os.path.join(results_dir, FILE), dict(about, diverged_round=error.round_num, message=str(error))
  )


def read(results_dir: str) -> dict | None:
  """What `write` recorded, or None when the run has not diverged."""
  path = os.path.join(results_dir, FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def clear(results_dir: str) -> None:
  """Forgets an earlier divergence (the run is going again)."""
  path = os.path.join(results_dir, FILE)
  if os.path.exists(path):
    os.remove(path)
