"""The algorithm settings of a run: client training, the server's update, aggregation and privacy."""

import dataclasses

from tff_gpt.algorithms import registry
from tff_gpt.algorithms.aggregators import AGGREGATORS
from tff_gpt.algorithms.optimizers import OPTIMIZERS
from tff_gpt.settings import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, Check, check_declared, setting

CLIENT_WEIGHTINGS = ("num_examples", "uniform")


@dataclasses.dataclass
class ClientSettings:
  """What each sampled client does in a round."""

  clients_per_round: int = setting(
    10, "Clients sampled uniformly (from --seed) each round.", check=AT_LEAST_1
  )
  client_epochs_per_round: int = setting(1, "Local epochs over each client's sequences.", check=AT_LEAST_1)
  client_batch_size: int = setting(8, "Sequences per client batch.", check=AT_LEAST_1)
  max_elements_per_client: int | None = setting(
    64,
    "Cap on each client's sequences per round (after epochs); 0 = none.",
    check=Check(AT_LEAST_1.accepts, "must be >= 1, or None for no limit"),
  )
  client_optimizer: str = setting(
    "adam", "Client optimizer (Mime Lite's base optimizer).", choices=sorted(OPTIMIZERS)
  )
  client_learning_rate: float = setting(
    0.003, "Client learning rate (the first round's, with a schedule).", check=POSITIVE
  )
  client_lr_multipliers: str | None = setting(
    None,
    "GPT-2 only: group=factor pairs that scale the client learning rate of a group of weights (embeddings, "
    "attention_qk, attention_vo, feedforward, layer_norm), for example attention_vo=0.125,attention_qk=0.5; "
    "empty = one rate for all.",
  )
  client_lr_schedule: str = setting(
    "constant",
    "Client learning rate over rounds: constant, exp_decay (x decay_rate every decay_rounds) or inv_sqrt "
    "(/ sqrt(1 + round/decay_rounds)).",
    choices=registry.SCHEDULES,
  )
  client_lr_decay_rate: float = setting(
    0.5, "Factor of --client_lr_schedule=exp_decay per --client_lr_decay_rounds.", check=POSITIVE
  )
  client_lr_decay_rounds: int = setting(
    50, "Rounds over which the client learning rate decays.", check=AT_LEAST_1
  )
  client_lr_warmup_rounds: int = setting(
    0,
    "Rounds over which the client learning rate rises linearly to the schedule's (round r gets r/N of it); "
    "0 = no warmup.",
    check=Check(AT_LEAST_0.accepts, "must be >= 0 (0: no warmup)"),
  )

  def check_clients(self) -> None:
    check_declared(self, ClientSettings)


@dataclasses.dataclass
class ServerSettings:
  """The algorithm (`registry.ALGORITHMS`) and its server optimizer."""

  algorithm: str = setting(
    "fedavg",
    "; ".join(f"{k}: {v.description}" for k, v in registry.ALGORITHMS.items()) + ".",
    choices=registry.ALGORITHMS,
  )
  server_learning_rate: float | None = setting(
    None,
    "Server learning rate; unset = the algorithm's default "
    + ", ".join(f"{k} {v.server_learning_rate:g}" for k, v in registry.ALGORITHMS.items())
    + ".",
    check=Check(POSITIVE.accepts, "must be > 0 (or unset for the algorithm's default)"),
  )
  server_momentum: float = setting(0.9, "Server momentum of fedavgm.", check=FRACTION)
  server_beta_1: float = setting(0.9, "First-moment decay of fedadam and fedyogi.", check=FRACTION)
  server_beta_2: float = setting(0.99, "Second-moment decay of fedadam and fedyogi.", check=FRACTION)
  server_epsilon: float = setting(
    0.001, "Adaptivity tau of fedadam, fedyogi and fedadagrad (Reddi et al.).", check=POSITIVE
  )
  proximal_strength: float = setting(0.01, "FedProx proximal strength mu.", check=AT_LEAST_0)

  def check_server(self) -> None:
    check_declared(self, ServerSettings)


@dataclasses.dataclass
class AggregationSettings:
  """How client updates are combined (`aggregators.AGGREGATORS`), with the privacy and compression options."""

  aggregator: str = setting(
    "mean", "; ".join(f"{k}: {v.description}" for k, v in AGGREGATORS.items()) + ".", choices=AGGREGATORS
  )
  client_weighting: str | None = setting(
    None,
    "num_examples or uniform; unset = the algorithm's (uniform for fedavg_unweighted).",
    choices=CLIENT_WEIGHTINGS,
  )
  dp_noise_multiplier: float = setting(
    1.0, "DP aggregators: Gaussian noise stddev / clip norm.", check=AT_LEAST_0
  )
  dp_clip_norm: float = setting(
    1.0, "DP aggregators: L2 clip of each client update (initial clip for dp_adaptive).", check=POSITIVE
  )
  dp_target_unclipped_quantile: float = setting(
    0.5, "dp_adaptive: fraction of client updates left unclipped.", check=FRACTION
  )
  dp_delta: float = setting(
    1e-5,
    "DP aggregators: the delta of the reported (epsilon, delta).",
    resume=False,
    check=Check(lambda v: 0 < v < 1, "must be in (0, 1)"),
  )
  compression_bits: int = setting(
    8,
    "compression aggregator: bits per update coordinate.",
    check=Check(lambda v: 1 <= v <= 16, "must be in [1, 16]"),
  )

  def check_aggregation(self) -> None:
    check_declared(self, AggregationSettings)

  @property
  def differentially_private(self) -> bool:
    return AGGREGATORS[self.aggregator].differentially_private
