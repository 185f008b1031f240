"""The (epsilon, delta) a differentially private run spends, from `dp_accounting`.

Each round samples `clients_per_round` of `num_clients` clients and adds
Gaussian noise with standard deviation `noise_multiplier` times the clip norm
to their sum. The accountant treats the sampling as Poisson with rate
`clients_per_round / num_clients` (the usual approximation for a fixed-size
uniform sample) and composes the rounds with Renyi DP.
"""

import dp_accounting
from dp_accounting import rdp


def dp_event(noise_multiplier: float, sampling_rate: float, rounds: int) -> dp_accounting.DpEvent:
  """The `DpEvent` of `rounds` rounds of the Gaussian mechanism on sampled clients."""
  return dp_accounting.SelfComposedDpEvent(
    dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)),
    rounds,
  )


def epsilon(*, noise_multiplier: float, sampling_rate: float, rounds: int, delta: float) -> float:
  """Epsilon spent after `rounds` rounds at `delta` (client-level privacy)."""
  if not 0 < sampling_rate <= 1:
    raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate}.")
  if rounds == 0:
    return 0.0
  accountant = rdp.RdpAccountant()
  accountant.compose(dp_event(noise_multiplier, sampling_rate, rounds))
  return float(accountant.get_epsilon(delta))
