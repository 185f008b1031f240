"""The round loop: sample clients, train a round, evaluate, record, checkpoint, resume.

It has the shape of `tff.learning.programs.train_model` and uses the same
`tff.program` managers (a `FileProgramStateManager` for checkpoints, CSV and
TensorBoard release managers for metrics) and starts, as `train_model` can
(`initial_train_state`), from seeded or pretrained weights. It is the
project's own because a run here needs what `train_model` does not do:

- the last round is always evaluated and checkpointed, and evaluation runs
  in line on the round's weights (`train_model`'s evaluation manager runs it
  beside training, on TFF's own context);
- a round whose weights or loss are no longer finite stops the run, names the
  rate to lower and keeps every metric and checkpoint (`divergence`);
- the local TFF worker is replaced at a checkpoint every
  `runtime.REPLACE_WORKER_ROUNDS` rounds, which bounds its memory growth;
- every metrics row carries throughput, bytes communicated, the process tree's
  memory and, with DP, the epsilon spent;
- Ctrl-C waits until a checkpoint or a metrics row is written (`OutputLoop`).
"""

import asyncio
import math
import time

import numpy as np
import tensorflow_federated as tff
import tqdm

from tff_gpt import algorithms, runtime
from tff_gpt.algorithms import lora_gap
from tff_gpt.models import metrics as metrics_lib
from tff_gpt.training import divergence, evaluation, memory, outputs, restore, write_failures

# The train figures of a round no client reported to (`divergence.diagnose` lets it pass).
_EMPTY_ROUND = dict(train_loss=math.nan, train_perplexity=math.nan, train_accuracy=math.nan, train_tokens=0)


async def _release(managers, value, key):
  await asyncio.gather(*[m.release(value, key=key) for m in managers])


class RoundLoop:
  """Runs the rounds of a `run.Run`, resuming after the last readable checkpoint.

  Args:
    context: The run (`run.Run`: config, task, process, directories, clients and bytes per round).
    evaluate: The run's `evaluation.Evaluation` (called at every evaluation round).
    progress: Show a progress bar and a line at each evaluation.
  """

  def __init__(self, context, evaluate: evaluation.Evaluation, *, progress: bool = True):
    self.context, self.evaluate, self.progress = context, evaluate, progress
    self._frozen_a = None  # ffa_lora's shared A, read once for the exactness gap.

  def train_round(self, state, round_num: int):
    """Runs round `round_num`; returns the new state and the round's metrics row."""
    r = self.context
    cohort = r.cohort(round_num)
    if not cohort.reporters:  # Every sampled client dropped: the round trains nothing.
      return state, self._round_row(round_num, cohort, _EMPTY_ROUND, 0, 0.0)
    client_datasets = runtime.largest_first(r.client_datasets(round_num))
    start = time.perf_counter()
    result = r.process.next(state, client_datasets)
    seconds = time.perf_counter() - start
    train = result.metrics["client_work"]["train"]
    metrics = self._round_row(
      round_num, cohort, metrics_lib.as_row("train", train), int(np.asarray(train["num_examples"])), seconds
    )
    new_state = result.state
    measured = result.metrics.get("aggregator", {})
    if "lora_mean_delta" in measured:
      new_state, metrics["lora_gap"] = self._lora_aggregate(state, result.state, measured)
    return new_state, metrics

  def _round_row(self, round_num: int, cohort, trained: dict, sequences: int, seconds: float) -> dict:
    """A round's metrics row: what its clients trained, throughput, bytes, epsilon and who reported."""
    r, metrics = self.context, dict(trained)
    metrics.update(
      clients=len(cohort.reporters),
      train_sequences=sequences,
      round_seconds=seconds,
      tokens_per_second=metrics["train_tokens"] / seconds if seconds else 0.0,
      client_learning_rate=algorithms.client_learning_rate(r.config, round_num),
      **r.bytes_per_client,
      round_bytes=r.round_bytes,
      bytes_communicated=r.bytes_communicated(round_num),
    )
    if r.config.client_dropout or r.sampled_per_round > r.clients_per_round:
      metrics.update(sampled_clients=cohort.sampled, dropped_clients=len(cohort.dropped))
    if cohort.simulated_seconds is not None:
      metrics.update(simulated_seconds=cohort.simulated_seconds, simulated_time=r.simulated_time(round_num))
    if r.config.differentially_private:
      metrics["dp_epsilon"] = r.dp_epsilon(round_num)
    return metrics

  def _lora_aggregate(self, state, new_state, measured):
    """`(state, exactness gap)` of a LoRA round; with flexlora the server's factors become the truncated
    SVD of the clients' mean product (`lora_gap.svd_factors`)."""
    task, process = self.context.task, self.context.process
    kind = task.lora_kind
    if kind == "ffa_lora" and self._frozen_a is None:
      self._frozen_a = task.frozen_lora_a(process.get_model_weights(new_state))
    before = state.global_model_weights.trainable
    means = lora_gap.mean_products(kind, before, measured, self._frozen_a)
    after = new_state.global_model_weights.trainable
    if kind == "flexlora":
      after = lora_gap.svd_factors(means, task.lora_rank)
      weights = tff.learning.models.ModelWeights(trainable=after, non_trainable=[])
      new_state = process.set_model_weights(new_state, weights)
    return new_state, lora_gap.gap(kind, after, means, self._frozen_a)

  def run(self) -> tuple:
    """Trains to `--total_rounds` from the last readable checkpoint (or the initial state).

    Returns:
      `(final state, the last round's metrics row)`; the row is empty when
      every round had run before.
    """
    managers = outputs.create_managers(self.context.dirs)
    loop = outputs.OutputLoop()
    try:
      state, version = self._start()
      return self._rounds(state, version, managers, loop)
    finally:
      loop.close()

  def _start(self) -> tuple:
    r = self.context
    state, version = restore.latest_state(r.task, r.process, set_aside=True)
    if version == 0:
      state = r.initial_state()
    elif self.progress:
      tqdm.tqdm.write(f"Resuming {r.config.experiment_name} after round {version} ({r.dirs.checkpoints}).")
    return state, version

  def _rounds(self, state, version: int, managers, loop) -> tuple:
    r, c = self.context, self.context.config
    state_manager, metrics_managers, clients_manager = managers
    replaced = saved = version  # Last worker replacement (runtime.REPLACE_WORKER_ROUNDS), last checkpoint.
    metrics = {}
    bar = tqdm.tqdm(
      total=c.total_rounds,
      initial=min(version, c.total_rounds),
      unit="round",
      disable=not self.progress,
      dynamic_ncols=True,
    )
    with bar:
      for round_num in range(version + 1, c.total_rounds + 1):
        last, (state, metrics) = metrics, self.train_round(state, round_num)
        diverged = divergence.diagnose(metrics, state.global_model_weights)
        if (round_num % c.rounds_per_eval == 0 or round_num == c.total_rounds) and not diverged:
          metrics.update(self.evaluate(r.process.get_model_weights(state)))
          diverged = divergence.diagnose(metrics)
        metrics["memory_mb"] = memory.process_tree_rss_mb()
        self._record(round_num, metrics, (metrics_managers, clients_manager), loop, saved)
        if diverged:
          raise divergence.stop(r, round_num, diverged, (last, metrics), last_checkpoint=saved)
        if round_num % c.rounds_per_checkpoint == 0 or round_num == c.total_rounds:
          with write_failures.guard(
            f"round {round_num}'s checkpoint", r.dirs.checkpoints, resume_after=saved
          ):
            loop.run(state_manager.save(state, round_num))
          saved = round_num
          if round_num - replaced >= runtime.REPLACE_WORKER_ROUNDS and runtime.replace_local_worker():
            replaced = round_num
        self._show(bar, round_num, metrics)
    return state, metrics

  def _record(self, round_num: int, metrics: dict, managers, loop, saved: int) -> None:
    """Releases the round's metrics row and its clients to the CSV and TensorBoard managers."""
    metrics_managers, clients_manager = managers
    clients = self.context.cohort(round_num).row()
    with write_failures.guard(f"round {round_num}'s metrics", self.context.dirs.results, resume_after=saved):
      loop.run(_release(metrics_managers, metrics, round_num))
      loop.run(clients_manager.release(clients, key=round_num))

  def _show(self, bar, round_num: int, metrics: dict) -> None:
    bar.update(1)
    bar.set_postfix(
      loss=f"{metrics['train_loss']:.3f}",
      acc=f"{metrics['train_accuracy']:.3f}",
      s_per_round=f"{metrics['round_seconds']:.2f}",
      tok_per_s=f"{metrics['tokens_per_second']:.0f}",
    )
    if "eval_loss" in metrics and self.progress:
      tqdm.tqdm.write(
        f"round {round_num:>4}: train loss {metrics['train_loss']:.3f} acc "
        f"{metrics['train_accuracy']:.3f} | eval loss {metrics['eval_loss']:.3f} ppl "
        f"{metrics['eval_perplexity']:.2f} acc {metrics['eval_accuracy']:.3f} | "
        f"{metrics['round_seconds']:.2f} s/round, {metrics['tokens_per_second']:.0f} tok/s, "
        f"{metrics['memory_mb']:.0f} MB"
      )
