"""Model-update aggregators, composable with any algorithm that takes one.

Each entry builds a `tff.aggregators` factory for a weighted (by client
examples) or an unweighted (uniform) mean. Differential privacy bounds each
client's contribution, so the DP aggregators exist only unweighted.
"""

import dataclasses
from collections.abc import Callable

import tensorflow_federated as tff

# TFF's default for `quantize_above_threshold`: smaller tensors are sent as
# float32, since their quantization parameters would cost more than they save.
QUANTIZATION_THRESHOLD = 20000


@dataclasses.dataclass(frozen=True)
class Aggregator:
  """One `--aggregator` choice.

  Attributes:
    description: One line for help texts and reports.
    build: `(config, weighted) -> tff.aggregators factory`.
    weighted: Whether it can average weighted by client examples.
    differentially_private: Whether runs report (epsilon, delta).
    secure: Whether it needs TFF's test execution context, which lowers
      secure sums to plain sums in simulation.
    bits_per_value: Bits each client sends per update coordinate, given the
      config (quantized tensors); `None` for float32.
  """

  description: str
  build: Callable
  weighted: bool = True
  differentially_private: bool = False
  secure: bool = False
  bits_per_value: Callable | None = None


def _mean(config, weighted):
  return tff.aggregators.MeanFactory() if weighted else tff.aggregators.UnweightedMeanFactory()


def _robust(config, weighted):
  return tff.learning.robust_aggregator(zeroing=True, clipping=True, weighted=weighted)


def _dp_fixed(config, weighted):
  return tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
    noise_multiplier=config.dp_noise_multiplier,
    clients_per_round=config.clients_per_round,
    clip=config.dp_clip_norm,
  )


def _dp_adaptive(config, weighted):
  # Part of the noise goes to the private count of clipped clients. TFF's
  # default stddev for it, 0.05 x clients_per_round, leaves no noise for the
  # update when clients_per_round <= 20 x noise_multiplier; at least the
  # noise multiplier keeps the update's share at >= 87% of the total.
  return tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
    noise_multiplier=config.dp_noise_multiplier,
    clients_per_round=config.clients_per_round,
    initial_l2_norm_clip=config.dp_clip_norm,
    target_unclipped_quantile=config.dp_target_unclipped_quantile,
    clipped_count_stddev=max(0.05 * config.clients_per_round, config.dp_noise_multiplier),
  )


def _compression(config, weighted):
  quantized_sum = tff.aggregators.EncodedSumFactory.quantize_above_threshold(
    quantization_bits=config.compression_bits, threshold=QUANTIZATION_THRESHOLD
  )
  if weighted:
    return tff.aggregators.MeanFactory(value_sum_factory=quantized_sum)
  return tff.aggregators.UnweightedMeanFactory(value_sum_factory=quantized_sum)


def _secure(config, weighted):
  return tff.learning.secure_aggregator(zeroing=True, clipping=True, weighted=weighted)


AGGREGATORS = {
  "mean": Aggregator("mean of client updates", _mean),
  "robust": Aggregator(
    "mean with adaptive zeroing and L2 clipping (tff.learning.robust_aggregator)", _robust
  ),
  "dp_fixed": Aggregator(
    "DP-FedAvg: fixed L2 clipping and Gaussian noise (McMahan et al. 2018)",
    _dp_fixed,
    weighted=False,
    differentially_private=True,
  ),
  "dp_adaptive": Aggregator(
    "DP-FedAvg with adaptive clipping to a quantile (Andrew et al. 2021)",
    _dp_adaptive,
    weighted=False,
    differentially_private=True,
  ),
  "compression": Aggregator(
    "uniform quantization of client updates to --compression_bits (Suresh et al. 2017)",
    _compression,
    bits_per_value=lambda config: config.compression_bits,
  ),
  "secure": Aggregator(
    "secure aggregation with adaptive zeroing and clipping (tff.learning.secure_aggregator)",
    _secure,
    secure=True,
  ),
}
