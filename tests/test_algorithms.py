"""Every registered algorithm and aggregator trains in real TFF rounds (a linear model; GPT-2 as needed)."""

import dataclasses

import dp_accounting
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from dp_accounting import rdp

from tests import helpers
from tff_gpt import algorithms, runtime
from tff_gpt.algorithms import aggregators, communication, privacy
from tff_gpt.models import tff_model
from tff_gpt.training import evaluation, outputs, rounds, trainer
from tff_gpt.training.run import Run


def _one_round(tmp_path, **overrides):
  experiment = trainer.FederatedExperiment(helpers.tiny_config(tmp_path, **overrides))
  start = experiment.context.initial_state()
  state, metrics = experiment.loop.train_round(start, 1)
  return experiment, start, state, metrics


def _moved(experiment, start, state) -> float:
  before = experiment.process.get_model_weights(start).trainable
  after = experiment.process.get_model_weights(state).trainable
  return max(float(np.max(np.abs(a - b))) for a, b in zip(after, before, strict=True))


# The registry on the smallest model, as TFF's own tests do: a linear regression whose one weight (3,000 x 8)
# is above TFF's 20,000-element quantization threshold, on three clients of different sizes.
FEATURES, OUTPUTS = 3000, 8


def _linear_model_fn():
  keras_model = tf.keras.Sequential([tf.keras.layers.Dense(OUTPUTS, input_shape=(FEATURES,))])
  spec = (tf.TensorSpec([None, FEATURES], tf.float32), tf.TensorSpec([None, OUTPUTS], tf.float32))
  return tff.learning.models.from_keras_model(
    keras_model, input_spec=spec, loss=tf.keras.losses.MeanSquaredError()
  )


def _linear_clients():
  rng = np.random.default_rng(0)
  truth = rng.normal(size=(FEATURES, OUTPUTS)).astype(np.float32)
  clients = []
  for n in (8, 16, 24):
    x = (rng.normal(size=(n, FEATURES)) / np.sqrt(FEATURES)).astype(np.float32)
    clients.append(tf.data.Dataset.from_tensor_slices((x, x @ truth)).batch(8))
  return clients


def _linear_rounds(tmp_path, rounds=3, **overrides) -> list[float]:
  """The training loss of each of `rounds` rounds of the configured process on the linear task."""
  config = helpers.tiny_config(tmp_path, **overrides)
  process = algorithms.build_process(config, _linear_model_fn)
  state, clients, losses = process.initialize(), _linear_clients(), []
  start = process.get_model_weights(state).trainable
  for _ in range(rounds):
    output = process.next(state, clients)
    state = output.state
    losses.append(float(output.metrics["client_work"]["train"]["loss"]))
  moved = max(
    float(np.max(np.abs(a - b)))
    for a, b in zip(process.get_model_weights(state).trainable, start, strict=False)
  )
  assert moved > 1e-6, "the global model did not change"
  return losses


@pytest.mark.parametrize("algorithm", list(algorithms.ALGORITHMS))
def test_every_algorithm_lowers_the_loss_of_a_linear_model(tmp_path, algorithm):
  losses = _linear_rounds(tmp_path, algorithm=algorithm)
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


@pytest.mark.parametrize("aggregator", list(algorithms.AGGREGATORS))
def test_every_aggregator_trains_a_linear_model(tmp_path, aggregator):
  spec = algorithms.AGGREGATORS[aggregator]
  overrides = dict(aggregator=aggregator)
  if not spec.weighted:
    overrides["client_weighting"] = "uniform"
  if spec.secure:
    runtime.set_up(secure_aggregation=True)
  try:
    losses = _linear_rounds(tmp_path, **overrides)
  finally:
    if spec.secure:
      runtime.set_up()
  assert np.all(np.isfinite(losses)), losses
  if not spec.differentially_private:  # Noise at the default multiplier may raise the loss of 3 rounds.
    assert losses[-1] < losses[0], losses


# One GPT-2 round for what the linear task cannot stand in for: FedSGD's gradient path (the other families
# train GPT-2 in test_trainable: FedProx, Mime Lite, FedAdam) and the secure sum's context.
@pytest.mark.parametrize(
  "overrides",
  [
    dict(algorithm="fedsgd"),
    dict(aggregator="secure", client_weighting="uniform"),
  ],
  ids=["fedsgd", "secure"],
)
def test_gpt2_trains_one_round(tmp_path, overrides):
  secure = overrides.get("aggregator") == "secure"
  if secure:
    runtime.set_up(secure_aggregation=True)
  try:
    experiment, start, state, metrics = _one_round(tmp_path, **overrides)
  finally:
    if secure:
      runtime.set_up()
  assert np.isfinite(metrics["train_loss"]) and metrics["train_tokens"] > 0 and metrics["clients"] == 3
  assert _moved(experiment, start, state) > 1e-6, "the global model did not change"


@pytest.mark.parametrize(
  ("overrides", "named"),
  [
    (dict(algorithm="fedavg", aggregator="dp_fixed"), ("fedavg", "dp_fixed")),
    (dict(algorithm="fedadam", aggregator="dp_adaptive"), ("fedadam", "dp_adaptive")),
    (dict(algorithm="fedsgd", client_weighting="uniform"), ("fedsgd", "uniform")),
    (dict(algorithm="fedsgd", aggregator="dp_fixed", client_weighting="uniform"), ("fedsgd", "dp_fixed")),
    (dict(algorithm="fedprox", client_lr_schedule="exp_decay"), ("fedprox", "exp_decay")),
    (dict(algorithm="fedavg_unweighted", client_weighting="num_examples"), ("fedavg_unweighted",)),
  ],
)
def test_unsupported_combinations_fail_at_start_naming_both(tmp_path, overrides, named):
  config = helpers.tiny_config(tmp_path, **overrides)
  with pytest.raises(algorithms.UnsupportedCombinationError) as error:
    config.validate()
  for name in named:
    assert name in str(error.value)


@pytest.mark.parametrize("schedule", ["exp_decay", "inv_sqrt"])
def test_client_learning_rate_schedules(tmp_path, schedule):
  config = helpers.tiny_config(
    tmp_path, client_lr_schedule=schedule, client_learning_rate=0.4, client_lr_decay_rounds=10
  )
  lrs = [algorithms.client_learning_rate(config, r) for r in (1, 11, 41)]
  assert lrs[0] == pytest.approx(0.4)
  expected = [0.4 * 0.5, 0.4 * 0.5**4] if schedule == "exp_decay" else [0.4 / 2**0.5, 0.4 / 5**0.5]
  np.testing.assert_allclose(lrs[1:], expected, rtol=1e-6)


@pytest.mark.parametrize("schedule", ["constant", "inv_sqrt"])
def test_warmup_rises_linearly_to_the_schedule(tmp_path, schedule):
  config = helpers.tiny_config(
    tmp_path,
    client_lr_schedule=schedule,
    client_learning_rate=0.4,
    client_lr_decay_rounds=10,
    client_lr_warmup_rounds=4,
  )
  plain = dataclasses.replace(config, client_lr_warmup_rounds=0)
  got = [algorithms.client_learning_rate(config, r) for r in range(1, 8)]
  want = [algorithms.client_learning_rate(plain, r) * min(1.0, r / 4) for r in range(1, 8)]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got[0] == pytest.approx(0.1) and got[3] == pytest.approx(algorithms.client_learning_rate(plain, 4))


def test_warmup_needs_weighted_fedavg_and_a_non_negative_length(tmp_path):
  with pytest.raises(algorithms.UnsupportedCombinationError, match="--client_lr_warmup_rounds=3.*fedprox"):
    helpers.tiny_config(tmp_path, algorithm="fedprox", client_lr_warmup_rounds=3).validate()
  with pytest.raises(ValueError, match="client_lr_warmup_rounds must be >= 0"):
    helpers.tiny_config(tmp_path, client_lr_warmup_rounds=-1).validate()


def test_warmup_process_trains_at_the_warmed_up_rate(tmp_path):
  """Round 1 of a 2-round warmup trains at half the rate; the metrics row says so."""
  config = helpers.tiny_config(tmp_path, client_learning_rate=0.5, client_lr_warmup_rounds=2)
  experiment = trainer.FederatedExperiment(config)
  _, metrics1 = experiment.loop.train_round(experiment.context.initial_state(), 1)
  assert metrics1["client_learning_rate"] == pytest.approx(0.25)


def test_scheduled_process_uses_the_schedule(tmp_path):
  """A schedule that is 0 after round 1 leaves the model unchanged in round 2."""
  config = helpers.tiny_config(
    tmp_path, client_lr_schedule="exp_decay", client_lr_decay_rate=1e-30, client_lr_decay_rounds=1
  )
  experiment = trainer.FederatedExperiment(config)
  state1, metrics1 = experiment.loop.train_round(experiment.context.initial_state(), 1)
  state2, metrics2 = experiment.loop.train_round(state1, 2)
  assert metrics1["client_learning_rate"] == pytest.approx(0.5)
  assert metrics2["client_learning_rate"] < 1e-20
  assert _moved(experiment, state1, state2) < 1e-6


def test_dp_run_reports_the_epsilon_dp_accounting_computes(tmp_path):
  config = helpers.tiny_config(
    tmp_path, algorithm="fedavg_unweighted", aggregator="dp_fixed", dp_noise_multiplier=1.3, dp_delta=1e-4
  )
  experiment = trainer.FederatedExperiment(config)
  summary = experiment.run()
  num_clients = len(experiment.task.train_data.client_ids)

  def direct(rounds, noise=1.3):
    accountant = rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(3 / num_clients, dp_accounting.GaussianDpEvent(noise))
    accountant.compose(event, rounds)
    return accountant.get_epsilon(1e-4)

  assert summary["dp_epsilon"] == pytest.approx(direct(2), rel=1e-9)
  assert summary["dp_delta"] == 1e-4
  rows = outputs.read_metrics(experiment.dirs)
  assert [float(r["dp_epsilon"]) for r in rows] == pytest.approx([direct(1), direct(2)], rel=1e-9)
  assert direct(1) < direct(2)
  # More noise, same rounds and sampling rate: less privacy spent.
  epsilons = [
    privacy.epsilon(noise_multiplier=z, sampling_rate=3 / num_clients, rounds=2, delta=1e-4)
    for z in (0.7, 1.3, 2.6)
  ]
  assert epsilons[0] > epsilons[1] > epsilons[2]
  assert epsilons[1] == pytest.approx(summary["dp_epsilon"], rel=1e-9)


def test_quantized_bytes_follow_tffs_threshold():
  big, small = tff.types.TensorType(np.float32, [300, 100]), tff.types.TensorType(np.float32, [10, 10])
  assert communication._update_bytes(big, 8) == 30000 + 8
  assert communication._update_bytes(big, 2) == 7500 + 8
  assert communication._update_bytes(big, None) == 120000
  assert communication._update_bytes(small, 8) == 400  # Below TFF's threshold: sent as float32.


def test_a_client_moves_the_whole_model_each_way_and_rows_carry_the_rates(tmp_path):
  """FedAvgM: every weight down, every weight and the client's weight up, float32 each (the other parts of
  a row and of the summary: tests/test_run_parts.py)."""
  config = helpers.tiny_config(tmp_path, algorithm="fedavgm")
  config.validate()
  run = Run.build(config)
  params = tff_model.build_keras_model(run.task.model_config).count_params()
  assert run.bytes_per_client == {"client_download_bytes": 4 * params, "client_upload_bytes": 4 * params + 4}
  loop = rounds.RoundLoop(run, evaluation.Evaluation(run.task, progress=False), progress=False)
  _, row = loop.train_round(run.initial_state(), 1)
  assert row["client_learning_rate"] == 0.5 and row["bytes_communicated"] == 3 * (8 * params + 4)
  assert (
    run.settings_summary()["algorithm"] == "fedavgm" and run.settings_summary()["server_learning_rate"] == 1.0
  )


@pytest.mark.parametrize("aggregator", ["dp_fixed", "dp_adaptive"])
def test_dp_aggregators_add_gaussian_noise_of_the_stated_scale(aggregator):
  """On all-zero updates the aggregate is the noise alone: per coordinate, std z * C / n for dp_fixed
  (`gaussian_fixed`: N(0, (zC)^2) on the sum of n clipped updates, then / n); dp_adaptive gives the
  update the share of z left after the clipped count's noise sigma_b, z_v = (z^-2 - (2 sigma_b)^-2)^-1/2
  (`gaussian_adaptive`), with sigma_b = max(0.05 n, z) as `aggregators._dp_adaptive` sets it."""
  coordinates, n, z, clip = 20_000, 5, 1.3, 0.7
  config = dataclasses.make_dataclass("C", [])()
  config.dp_noise_multiplier, config.clients_per_round, config.dp_clip_norm = z, n, clip
  config.dp_target_unclipped_quantile = 0.5
  process = (
    aggregators.AGGREGATORS[aggregator]
    .build(config, False)
    .create(tff.types.TensorType(np.float32, [coordinates]))
  )
  noise = np.asarray(process.next(process.initialize(), [np.zeros(coordinates, np.float32)] * n).result)
  if aggregator == "dp_adaptive":
    sigma_b = max(0.05 * n, z)
    z = (z**-2 - (2 * sigma_b) ** -2) ** -0.5
  assert abs(noise.mean()) < 4 * z * clip / n / np.sqrt(coordinates)
  assert noise.std() == pytest.approx(z * clip / n, rel=0.03)  # 6 standard errors of a std of 20,000 draws.
