"""The `--algorithm` registry: name -> how TFF builds its learning process.

FedAvg and its server-optimizer variants (FedAvgM, FedAdam, FedYogi,
FedAdagrad) follow Reddi et al. 2021, "Adaptive Federated Optimization":
clients run the client optimizer locally, the server treats the mean update as
a pseudo-gradient for the server optimizer. FedProx (Li et al. 2020) adds a
proximal term to the client loss; FedSGD sends each client's mean gradient;
Mime Lite (Karimireddy et al. 2021) applies a server-held optimizer state on
clients. Each builder is TFF's own (`tff.learning.algorithms`).
"""

import dataclasses
from collections.abc import Callable

import tensorflow as tf
import tensorflow_federated as tff

from tff_gpt import errors
from tff_gpt.algorithms import lora_gap as lora_gap_lib
from tff_gpt.algorithms import optimizers
from tff_gpt.algorithms.aggregators import AGGREGATORS

# How clients iterate over their batches. TFF's default, DATASET_REDUCE, runs
# the client loop as `tf.data.Dataset.reduce`; DATASET_ITERATOR's Python-style
# loop measured several times faster per batch (BENCHMARKS.md) with the same
# result.
LOOP_IMPLEMENTATION = tff.learning.LoopImplementation.DATASET_ITERATOR


class UnsupportedCombinationError(errors.UserInputError):
  """Raised at start-up for a combination of settings that TFF cannot build."""


def _sgd(config, lr):
  return tff.learning.optimizers.build_sgdm(learning_rate=lr)


def _sgdm(config, lr):
  return tff.learning.optimizers.build_sgdm(learning_rate=lr, momentum=config.server_momentum)


def _adam(config, lr):
  return tff.learning.optimizers.build_adam(
    learning_rate=lr, beta_1=config.server_beta_1, beta_2=config.server_beta_2, epsilon=config.server_epsilon
  )


def _yogi(config, lr):
  return tff.learning.optimizers.build_yogi(
    learning_rate=lr, beta_1=config.server_beta_1, beta_2=config.server_beta_2, epsilon=config.server_epsilon
  )


def _adagrad(config, lr):
  return tff.learning.optimizers.build_adagrad(learning_rate=lr, epsilon=config.server_epsilon)


@dataclasses.dataclass(frozen=True)
class Algorithm:
  """One `--algorithm` choice.

  Attributes:
    description: One line for help texts and reports.
    family: Which TFF builder: "fed_avg", "fed_prox", "fed_sgd" or "mime_lite".
    server_optimizer: `(config, learning_rate) -> tff.learning.optimizers.Optimizer`.
    server_learning_rate: Used when `--server_learning_rate` is not given.
    weighting: Client weighting used when `--client_weighting` is not given.
  """

  description: str
  family: str
  server_optimizer: Callable = _sgd
  server_learning_rate: float = 1.0
  weighting: str = "num_examples"


ALGORITHMS = {
  "fedavg": Algorithm("FedAvg, weighted by client examples (McMahan et al. 2017)", "fed_avg"),
  "fedavg_unweighted": Algorithm("FedAvg, every client weighted equally", "fed_avg", weighting="uniform"),
  "fedavgm": Algorithm("FedAvg with server momentum (Hsu et al. 2019)", "fed_avg", _sgdm),
  "fedadam": Algorithm("FedAdam (Reddi et al. 2021)", "fed_avg", _adam, 0.01),
  "fedyogi": Algorithm("FedYogi (Reddi et al. 2021)", "fed_avg", _yogi, 0.01),
  "fedadagrad": Algorithm("FedAdagrad (Reddi et al. 2021)", "fed_avg", _adagrad, 0.1),
  "fedprox": Algorithm("FedProx: proximal term on clients (Li et al. 2020)", "fed_prox"),
  "fedsgd": Algorithm("FedSGD: one server step on the mean client gradient", "fed_sgd", _sgd, 0.5),
  "mime_lite": Algorithm(
    "Mime Lite: server optimizer state used on clients (Karimireddy et al.)", "mime_lite"
  ),
}

# --client_lr_schedule: (config) -> round_num -> learning rate. TFF numbers
# rounds from 0 inside the process; our round r is TFF's r - 1.
SCHEDULES = {
  "constant": lambda c: (lambda r: c.client_learning_rate),
  "exp_decay": lambda c: tf.keras.optimizers.schedules.ExponentialDecay(
    c.client_learning_rate, decay_steps=c.client_lr_decay_rounds, decay_rate=c.client_lr_decay_rate
  ),
  "inv_sqrt": lambda c: (
    lambda r: c.client_learning_rate * tf.math.rsqrt(1.0 + tf.cast(r, tf.float32) / c.client_lr_decay_rounds)
  ),
}


def client_learning_rate_fn(config):
  """`--client_lr_schedule` with `--client_lr_warmup_rounds` of linear warmup: TFF's round -> rate."""
  schedule = SCHEDULES[config.client_lr_schedule](config)
  warmup = config.client_lr_warmup_rounds
  if not warmup:
    return schedule
  return lambda r: schedule(r) * tf.minimum(1.0, tf.cast(r + 1, tf.float32) / warmup)


def is_scheduled(config) -> bool:
  """Whether the client learning rate changes over rounds."""
  return config.client_lr_schedule != "constant" or config.client_lr_warmup_rounds > 0


def server_learning_rate(config) -> float:
  """`--server_learning_rate`, or the algorithm's default when it is not given."""
  if config.server_learning_rate is not None:
    return config.server_learning_rate
  return ALGORITHMS[config.algorithm].server_learning_rate


def client_weighting(config) -> str:
  """`--client_weighting`, or the algorithm's default when it is not given."""
  return config.client_weighting or ALGORITHMS[config.algorithm].weighting


def client_learning_rate(config, round_num: int) -> float:
  """The client learning rate of round `round_num` (1-based)."""
  return float(client_learning_rate_fn(config)(round_num - 1))


def check_combination(config) -> None:
  """Raises `UnsupportedCombinationError` naming both settings when TFF cannot build them."""
  algorithm, aggregator = ALGORITHMS[config.algorithm], AGGREGATORS[config.aggregator]
  weighting = client_weighting(config)
  if algorithm.weighting == "uniform" and weighting != "uniform":
    raise UnsupportedCombinationError(
      f"--algorithm={config.algorithm} weights clients equally; drop --client_weighting={weighting}."
    )
  if weighting == "num_examples" and not aggregator.weighted:
    raise UnsupportedCombinationError(
      f"--aggregator={config.aggregator} averages clients with equal weights (it bounds each client's "
      f"contribution), but --algorithm={config.algorithm} weights them by examples. Add "
      "--client_weighting=uniform, or use --algorithm=fedavg_unweighted."
    )
  if config.client_lr_multipliers and algorithm.family == "fed_sgd":
    raise UnsupportedCombinationError(
      f"--client_lr_multipliers scales the client optimizer's steps, and --algorithm={config.algorithm} "
      "has no client optimizer (clients send gradients). Drop --client_lr_multipliers or use fedavg."
    )
  if weighting == "uniform" and algorithm.family == "fed_sgd":
    raise UnsupportedCombinationError(
      f"--algorithm={config.algorithm} (tff.learning.algorithms.build_fed_sgd) has no unweighted "
      f"form, so it cannot run with --client_weighting=uniform or --aggregator={config.aggregator}."
    )
  plain_mean = algorithm.family in ("fed_avg", "fed_prox") and algorithm.server_optimizer is _sgd
  if str(config.trainable).startswith("flexlora:") and not (
    plain_mean and server_learning_rate(config) == 1.0 and config.aggregator == "mean"
  ):
    raise UnsupportedCombinationError(
      f"--trainable={config.trainable} sets the server's factors to the SVD of the clients' mean product "
      "each round, which replaces the server's step: it runs with plain averaging only (--algorithm=fedavg, "
      "fedavg_unweighted or fedprox, --server_learning_rate=1, --aggregator=mean), not with "
      f"--algorithm={config.algorithm} --aggregator={config.aggregator}. Use hetlora:R for the others."
    )
  if is_scheduled(config) and (algorithm.family != "fed_avg" or weighting != "num_examples"):
    which = (
      f"--client_lr_schedule={config.client_lr_schedule}"
      if config.client_lr_schedule != "constant"
      else f"--client_lr_warmup_rounds={config.client_lr_warmup_rounds}"
    )
    raise UnsupportedCombinationError(
      f"{which} is built only into weighted FedAvg "
      "(build_weighted_fed_avg_with_optimizer_schedule), so it cannot run with "
      f"--algorithm={config.algorithm} and --client_weighting={weighting}. Use fedavg, fedavgm, "
      "fedadam, fedyogi or fedadagrad with example weighting, or --client_lr_schedule=constant."
    )


def build_process(
  config, model_fn, *, client_model_fn=None, client_lr_multipliers=None, lora_gap: str | None = None
) -> tff.learning.templates.LearningProcess:
  """The learning process of `config`'s algorithm, aggregator and schedule.

  Args:
    config: The experiment's settings.
    model_fn: Builds the `tff.learning` model.
    client_model_fn: When given, every computation but `initialize()` builds
      the model with it: one that skips work whose result the server's weights
      overwrite, such as drawing initial values (`tff_model.client_model_fn`).
      `initialize()` still draws its weights with `model_fn`.
    client_lr_multipliers: One factor per trained weight, in the model's
      order, that scales the client optimizer's steps (`optimizers.ScaledSteps`,
      `--client_lr_multipliers`); None: the optimizer as it is.
    lora_gap: "lora" or "ffa_lora": the aggregator also measures what the
      round's LoRA exactness gap needs (`lora_gap.py`).

  Raises:
    UnsupportedCombinationError: The settings name a combination TFF cannot
      build; the message names both settings and a fix.
  """
  if client_model_fn is not None:
    process = build_process(
      config, client_model_fn, client_lr_multipliers=client_lr_multipliers, lora_gap=lora_gap
    )
    return initialized_with(process, model_fn)
  check_combination(config)
  algorithm = ALGORITHMS[config.algorithm]
  weighted = client_weighting(config) == "num_examples"
  aggregator = AGGREGATORS[config.aggregator].build(config, weighted)
  if lora_gap and algorithm.family != "fed_sgd":  # FedSGD aggregates gradients, not the clients' factors.
    aggregator = lora_gap_lib.measured(aggregator, lora_gap, weighted)
  server_optimizer = algorithm.server_optimizer(config, server_learning_rate(config))

  def client_optimizer_fn(learning_rate):
    return optimizers.build(config.client_optimizer, learning_rate, client_lr_multipliers)

  common = dict(model_aggregator=aggregator, loop_implementation=LOOP_IMPLEMENTATION)
  if is_scheduled(config):
    return tff.learning.algorithms.build_weighted_fed_avg_with_optimizer_schedule(
      model_fn,
      client_learning_rate_fn=client_learning_rate_fn(config),
      client_optimizer_fn=client_optimizer_fn,
      server_optimizer_fn=server_optimizer,
      **common,
    )
  client_optimizer = client_optimizer_fn(config.client_learning_rate)
  return _build(algorithm, weighted, model_fn, config, client_optimizer, server_optimizer, common)


def _build(algorithm, weighted: bool, model_fn, config, client_optimizer, server_optimizer, common: dict):
  """TFF's builder of `algorithm`'s family, weighted or not."""
  algorithms = tff.learning.algorithms
  if algorithm.family == "fed_avg":
    build = algorithms.build_weighted_fed_avg if weighted else algorithms.build_unweighted_fed_avg
    return build(
      model_fn, client_optimizer_fn=client_optimizer, server_optimizer_fn=server_optimizer, **common
    )
  if algorithm.family == "fed_prox":
    build = algorithms.build_weighted_fed_prox if weighted else algorithms.build_unweighted_fed_prox
    return build(
      model_fn,
      proximal_strength=config.proximal_strength,
      client_optimizer_fn=client_optimizer,
      server_optimizer_fn=server_optimizer,
      **common,
    )
  if algorithm.family == "fed_sgd":
    return algorithms.build_fed_sgd(model_fn, server_optimizer_fn=server_optimizer, **common)
  if algorithm.family == "mime_lite":
    build = algorithms.build_weighted_mime_lite if weighted else algorithms.build_unweighted_mime_lite
    return build(model_fn, base_optimizer=client_optimizer, server_optimizer=server_optimizer, **common)
  raise ValueError(f"Unknown algorithm family {algorithm.family!r}.")


def build_eval_process(model_fn, *, client_model_fn=None) -> tff.learning.templates.LearningProcess:
  """TFF's federated evaluation (`build_fed_eval`) of `model_fn`; `client_model_fn` as in `build_process`."""
  if client_model_fn is not None:
    return initialized_with(build_eval_process(client_model_fn), model_fn)
  return tff.learning.algorithms.build_fed_eval(model_fn, loop_implementation=LOOP_IMPLEMENTATION)


def initialized_with(process, model_fn) -> tff.learning.templates.LearningProcess:
  """`process`, with an `initialize()` whose model weights are a fresh `model_fn()` model's.

  The rest of the initial state (server optimizer, aggregator, ...) is
  `process.initialize()`'s: it depends on the weights' types, not their values.
  """

  @tff.tensorflow.computation
  def drawn_weights():
    return tff.learning.models.ModelWeights.from_model(model_fn())

  @tff.federated_computation
  def initialize():
    state = process.initialize()
    weights = tff.federated_eval(drawn_weights, tff.SERVER)
    return tff.federated_map(process.set_model_weights, tff.federated_zip((state, weights)))

  return tff.learning.templates.LearningProcess(
    initialize,
    process.next,
    process.get_model_weights,
    process.set_model_weights,
    get_hparams_fn=process.get_hparams,
    set_hparams_fn=process.set_hparams,
  )
