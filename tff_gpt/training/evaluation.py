"""Federated evaluation of a global model on the clients' held-out text, with progress.

TFF's `build_fed_eval` evaluates every client given to one call. Here the
clients go in groups, one call each, so that a long evaluation (GPT-2 124M on
tens of clients: minutes) shows a bar with the time left; the groups' token
means are combined weighted by their tokens, which is the mean over all
clients' tokens up to float rounding.
"""

import functools
import math
import time

import tqdm

from tff_gpt import algorithms, label_scoring, response_scoring, runtime
from tff_gpt.data import pairs
from tff_gpt.models import metrics as metrics_lib
from tff_gpt.training import personalization

# About how many calls an evaluation is split into (fewer with few clients): enough for a bar that moves,
# few enough that a call's fixed cost stays small against the tiny model's.
GROUPS = 10
MIN_CLIENTS_PER_GROUP = 8


class Evaluation:
  """Evaluates model weights on a task's held-out data.

  Args:
    task: The run's `task.FederatedTask`.
    progress: Show a bar while an evaluation runs (it disappears when done).
  """

  def __init__(self, task, *, progress: bool = True):
    self.task = task
    self.progress = progress
    self.personalized_clients: list[dict] = []  # The last evaluation's per-client personalization rows.
    self.classified_clients: dict[str, dict] = {}  # The last evaluation's per-client classification scores.
    self.rouge_clients: dict[str, dict] = {}  # ... and ROUGE scores (--rouge_pairs).

  @functools.cached_property
  def personalization(self) -> personalization.Personalization | None:
    c = self.task.config
    if not c.personalization_clients:
      return None
    return personalization.Personalization(
      clients=c.personalization_clients,
      steps=c.personalization_steps,
      learning_rate=c.personalization_learning_rate,
      batch_size=c.client_batch_size,
    )

  @functools.cached_property
  def _personalization_computation(self):
    """TFF's personalization evaluation, built at the first evaluation that personalizes."""
    return personalization.build_computation(self.task.client_model_fn, self.personalization)

  @functools.cached_property
  def process(self):
    """TFF's `build_fed_eval` of the task's model, built at the first evaluation."""
    return algorithms.build_eval_process(self.task.model_fn, client_model_fn=self.task.client_model_fn)

  def __call__(self, model_weights, client_ids: list[str] | None = None) -> dict:
    """`eval_*` metrics of `model_weights` on `client_ids` (default: the task's test clients).

    With validation clients (`--validation_clients`) and no `client_ids`, also their `val_*` metrics.
    """
    if client_ids is None and self.task.validation_client_ids:
      validation = self._evaluate(model_weights, self.task.validation_client_ids)
      val = {f"val_{k.removeprefix('eval_')}": v for k, v in validation.items()}
      return dict(self(model_weights, self.task.eval_client_ids), **val)
    client_ids = self.task.eval_client_ids if client_ids is None else client_ids
    metrics = self._evaluate(model_weights, client_ids)
    if self.personalization is not None:
      summary, self.personalized_clients = personalization.evaluate(
        self.task, model_weights, self.personalization, self._personalization_computation
      )
      metrics.update({f"personalization_{k}": v for k, v in summary.items()})
    return metrics

  def _evaluate(self, model_weights, client_ids: list[str]) -> dict:
    """`eval_*` metrics of `model_weights` on `client_ids`, in groups."""
    state = self.process.set_model_weights(self.process.initialize(), model_weights)
    size = max(MIN_CLIENTS_PER_GROUP, math.ceil(len(client_ids) / GROUPS))
    groups = [client_ids[i : i + size] for i in range(0, len(client_ids), size)]
    start = time.perf_counter()
    rows = []
    bar = tqdm.tqdm(
      total=len(client_ids),
      unit="client",
      desc="evaluating",
      leave=False,
      delay=3,  # Only an evaluation that takes a while shows a bar.
      disable=not self.progress or len(groups) < 2,
      dynamic_ncols=True,
    )
    with bar:
      for group in groups:
        output = self.process.next(state, runtime.largest_first(self.task.eval_datasets(group)))
        rows.append(
          metrics_lib.as_row("eval", output.metrics["client_work"]["eval"]["current_round_metrics"])
        )
        bar.update(len(group))
    metrics = dict(combine(rows), eval_seconds=time.perf_counter() - start)
    # The same total loss per character of the held-out text: comparable across tokenizers.
    characters = self.task.characters(client_ids)
    metrics["eval_loss_per_char"] = metrics["eval_loss"] * metrics["eval_tokens"] / max(characters, 1)
    if self.task.config.classes:
      metrics.update(self._classify(model_weights, client_ids))
    if self.task.config.rouge_pairs:
      metrics.update(self._rouge(model_weights, client_ids))
    return metrics

  def _classify(self, model_weights, client_ids: list[str]) -> dict:
    """`eval_label_accuracy` and `eval_macro_f1` of the likeliest class (`label_scoring`); per client kept."""
    c, model = self.task.config, self.task.keras_model(model_weights)
    if c.classify_with == "head":
      result = label_scoring.evaluate_head(model, self.task.test_data, client_ids)
    else:
      held_out = {cid: [pairs.split(e) for e in self.task.test_data.texts[cid]] for cid in client_ids}
      result = label_scoring.evaluate(
        model,
        self.task.tokenizer,
        held_out,
        c.class_words(),
        separator=c.example_format().separator,
        sequence_length=c.sequence_length,
      )
    self.classified_clients = result["clients"]
    overall = result["overall"]
    return {"eval_label_accuracy": overall["accuracy"], "eval_macro_f1": overall["macro_f1"]}

  def _rouge(self, model_weights, client_ids: list[str]) -> dict:
    """`eval_rouge1`, `eval_rouge2`, `eval_rougeL` of greedy responses (`response_scoring`); per client
    kept."""
    c = self.task.config
    held_out = {
      cid: [pairs.split(e) for e in self.task.test_data.texts[cid][: c.rouge_pairs]] for cid in client_ids
    }
    result = response_scoring.evaluate(
      self.task.keras_model(model_weights),
      self.task.tokenizer,
      held_out,
      separator=c.example_format().separator,
      sequence_length=c.sequence_length,
      max_new_tokens=c.rouge_max_tokens,
    )
    self.rouge_clients = result["clients"]
    return {f"eval_{name}": result["overall"][name] for name in response_scoring.ROUGE_TYPES}


def combine(rows: list[dict]) -> dict:
  """One `eval_*` row from rows of disjoint client groups: token-weighted means, summed tokens."""
  rows = [r for r in rows if r["eval_tokens"] > 0] or rows[:1]
  if len(rows) == 1:
    return rows[0]
  tokens = sum(r["eval_tokens"] for r in rows)
  weight = [r["eval_tokens"] / max(tokens, 1) for r in rows]
  loss = sum(w * r["eval_loss"] for w, r in zip(weight, rows, strict=True))
  return {
    "eval_loss": loss,
    "eval_perplexity": math.exp(min(loss, 50.0)),
    "eval_accuracy": sum(w * r["eval_accuracy"] for w, r in zip(weight, rows, strict=True)),
    "eval_tokens": tokens,
  }
