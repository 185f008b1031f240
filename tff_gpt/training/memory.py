"""Peak memory of a run, estimated before round 1, and the refusal of a run that cannot fit.

A run that outgrows the machine does not fail cleanly: the kernel kills TFF's
worker part-way through a round (GPT-2 124M, all weights, 10 clients: at
19.4 GB on a 24 GB machine). The estimate adds, in bytes:

- this process now (the model built, the data tokenized), measured;
- TFF's worker: `WORKER_BASE`, plus for each client it trains at once
  (`--max_concurrent_computation_calls`) two copies of all the weights
  (the broadcast value and the client's variables), `TRAINING_COPIES` copies
  of the trained ones (gradients, optimizer slots and the runtime's own
  copies) and the activations of one batch; plus `HELD_PER_CLIENT` copies of
  each sampled client's update, which the local runtime keeps until the mean
  (BENCHMARKS.md, "Scaling"; of one part's clients with `--round_parts`);
  plus `SERVER_COPIES` of the trained weights.

The coefficients are fitted to the measurements in BENCHMARKS.md: sections 4
(per-client growth of the small model) and 6 (GPT-2 124M: 21.2 GB for the
whole model at 2 clients a round, 4.5 GB for `lora:8` at 10). Every run
writes its estimate beside its measured peak in `summary.json`
(`memory_estimate_mb`, `memory_peak_mb`), so the fit can be checked on any
machine.
"""

import dataclasses

import psutil

from tff_gpt import errors
from tff_gpt.algorithms import communication


def process_tree_rss_mb() -> float:
  """Resident memory of this process and its children (the TFF worker), in MB."""
  me = psutil.Process()
  total = me.memory_info().rss
  for child in me.children(recursive=True):
    try:
      total += child.memory_info().rss
    except psutil.Error:
      pass
  return total / 2**20


MB = 2**20
WORKER_BASE = 300 * MB
TRAINING_COPIES = 22
HELD_PER_CLIENT = 2.5
SERVER_COPIES = 4
FLOAT_BYTES = 4


class MemoryEstimateError(errors.UserInputError):
  """Raised when a run's estimated peak memory exceeds what the machine has available."""


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A run's estimated peak resident memory (this process and TFF's worker), in MB."""

  process_mb: float
  worker_mb: float
  per_client_mb: float
  concurrent_clients: int

  @property
  def total_mb(self) -> float:
    return self.process_mb + self.worker_mb


def activation_bytes(model_config: dict, *, batch_size: int, sequence_length: int) -> int:
  """Activations kept for the backward pass of one batch (float32).

  GPT-2: per block, about 34 values per token and hidden unit plus 5 per
  attention score (Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models", in float32), and the logits
  with their softmax and gradient. The character LSTM is small enough to
  count only its logits.
  """
  tokens = batch_size * sequence_length
  logits = 3 * tokens * model_config["vocabulary_size"]
  if "num_layers" not in model_config:
    return FLOAT_BYTES * logits
  per_layer = (
    34 * tokens * model_config["hidden_dim"] + 5 * tokens * sequence_length * model_config["num_heads"]
  )
  return FLOAT_BYTES * (model_config["num_layers"] * per_layer + logits)


def estimate(
  *,
  process_bytes: int,
  weights_bytes: int,
  trained_bytes: int,
  activations_bytes: int,
  clients_per_round: int,
  max_concurrent_computation_calls: int,
  round_parts: int = 1,
) -> Estimate:
  """The estimate described in the module docstring (a round in `round_parts` parts holds one part's)."""
  held = -(-clients_per_round // round_parts)
  concurrent = clients_per_round
  if max_concurrent_computation_calls > 0:
    concurrent = min(concurrent, max_concurrent_computation_calls)
  per_client = 2 * weights_bytes + TRAINING_COPIES * trained_bytes + activations_bytes
  worker = (
    WORKER_BASE
    + concurrent * per_client
    + held * HELD_PER_CLIENT * trained_bytes
    + SERVER_COPIES * trained_bytes
  )
  return Estimate(
    process_mb=process_bytes / MB,
    worker_mb=worker / MB,
    per_client_mb=(per_client + HELD_PER_CLIENT * trained_bytes) / MB,
    concurrent_clients=concurrent,
  )


def of_run(run, *, process_bytes: int) -> Estimate:
  """The estimate for `run` (a `training.run.Run`), from what its task and process hold."""
  c, task, process = run.config, run.task, run.process
  trained, non_trainable = communication.weight_bytes(process)
  layout = getattr(task.model_fn, "frozen_layout", None)
  return estimate(
    process_bytes=process_bytes,
    weights_bytes=trained + non_trainable + (layout.nbytes() if layout is not None else 0),
    trained_bytes=trained,
    activations_bytes=activation_bytes(
      task.model_config, batch_size=c.client_batch_size, sequence_length=c.sequence_length
    ),
    clients_per_round=run.clients_per_round,
    max_concurrent_computation_calls=c.max_concurrent_computation_calls,
    round_parts=c.round_parts,
  )


def check(estimate_: Estimate, *, process_mb: float, available_mb: float | None = None) -> None:
  """Raises `MemoryEstimateError` when the run would need more than is available.

  Args:
    estimate_: The run's estimate.
    process_mb: What the run's processes hold now (already out of `available_mb`).
    available_mb: Memory available to new allocations; the machine's when None.
  """
  if available_mb is None:
    available_mb = psutil.virtual_memory().available / MB
  needed = estimate_.total_mb - process_mb
  if needed <= available_mb:
    return
  e = estimate_
  raise MemoryEstimateError(
    f"this run needs about {e.total_mb / 1024:.1f} GB at its peak (TFF's worker {e.worker_mb / 1024:.1f} GB: "
    f"{e.concurrent_clients} client(s) at once, {e.per_client_mb / 1024:.2f} GB each), but "
    f"{available_mb / 1024:.1f} GB is free. Use --max_concurrent_computation_calls=1, fewer "
    "--clients_per_round, a lighter --trainable (lora:8), or --ignore_memory_estimate."
  )
