"""Per-group client learning rates (`--client_lr_multipliers`): groups, the scaled optimizer, a real round."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tests import helpers
from tff_gpt import algorithms, errors
from tff_gpt.algorithms import optimizers
from tff_gpt.models import gpt2_lm, parameter_groups, tff_model
from tff_gpt.models import trainable as trainable_lib
from tff_gpt.training import trainer

TINY = gpt2_lm.model_config("tiny", vocabulary_size=40, max_sequence_length=16)


def _expected_group(path: str) -> str:
  """The grouping written out by hand from keras-nlp's layer names."""
  last_layer = path.split("/")[-2]
  if last_layer.endswith("layer_norm"):
    return "layer_norm"
  if last_layer in ("token_embedding", "position_embedding"):
    return "embeddings"
  if last_layer in ("query", "key"):
    return "attention_qk"
  if last_layer in ("value", "attention_output"):
    return "attention_vo"
  if last_layer.startswith("feedforward_"):
    return "feedforward"
  raise AssertionError(path)


def test_every_gpt2_weight_is_in_exactly_the_group_its_layer_names():
  backbone = gpt2_lm.backbone_of(gpt2_lm.build_gpt2_lm(TINY))
  paths = list(trainable_lib.named_weights(backbone))
  assert len(paths) == len(backbone.trainable_weights)
  groups = [parameter_groups.group_of(p) for p in paths]
  assert groups == [_expected_group(p) for p in paths]
  layers = TINY["num_layers"]
  # Per block: q, k, v, o (kernel and bias each), two layer norms, two feed-forward layers.
  assert {g: groups.count(g) for g in parameter_groups.GROUPS} == {
    "embeddings": 2,
    "attention_qk": 4 * layers,
    "attention_vo": 4 * layers,
    "feedforward": 4 * layers,
    "layer_norm": 4 * layers + 2,
  }


def test_multipliers_follow_the_tff_models_trained_variables_in_every_mode():
  spec = "attention_qk=0.5,attention_vo=0.25"
  plain = tff_model.learning_rate_multipliers(TINY, spec)
  model = gpt2_lm.build_gpt2_lm(TINY)
  paths = {id(v): p for p, v in trainable_lib.named_weights(gpt2_lm.backbone_of(model)).items()}
  factor = {"attention_qk": 0.5, "attention_vo": 0.25}
  assert plain == [factor.get(_expected_group(paths[id(v)]), 1.0) for v in model.trainable_variables]
  # LoRA trains adapters on query and value: each takes its projection's group.
  lora = tff_model.learning_rate_multipliers(TINY, spec, trainable="lora:2")
  assert lora == [0.5, 0.5, 0.25, 0.25] * TINY["num_layers"]
  assert tff_model.learning_rate_multipliers(TINY, None) is None


@pytest.mark.parametrize(
  "spec, message",
  [
    ("attention=0.5", "attention=0.5"),
    ("attention_vo=0", "factor > 0"),
    ("attention_vo=-1", "factor > 0"),
    ("attention_vo", "group=factor"),
    ("attention_vo=0.5,attention_vo=0.25", "twice"),
  ],
)
def test_bad_multipliers_are_refused_naming_the_pair(spec, message):
  with pytest.raises(errors.UserInputError, match=message):
    parameter_groups.parse(spec)


def test_parse_reads_every_group():
  spec = ",".join(f"{g}={i + 1}.5" for i, g in enumerate(parameter_groups.GROUPS))
  assert parameter_groups.parse(spec) == {g: i + 1.5 for i, g in enumerate(parameter_groups.GROUPS)}
  assert parameter_groups.parse(" ") == parameter_groups.parse(None) == {}


def test_scaled_steps_are_tffs_optimizer_at_each_weights_own_rate():
  """Reference: TFF's Adam run separately on each weight at lr x its factor (Adam's state is per weight)."""
  rate, factors = 0.01, [1.0, 0.25, 3.0]
  rng = np.random.default_rng(0)
  weights = [tf.constant(rng.normal(size=s), tf.float32) for s in ((3, 4), (5,), (2, 2))]
  specs = [tf.TensorSpec(w.shape, w.dtype) for w in weights]
  scaled = optimizers.build("adam", rate, factors)
  assert isinstance(scaled, optimizers.ScaledSteps)
  state = scaled.initialize(specs)
  references = [tff.learning.optimizers.build_adam(learning_rate=rate * f) for f in factors]
  reference_states = [r.initialize(s) for r, s in zip(references, specs, strict=True)]
  got, want = list(weights), list(weights)
  for _ in range(4):
    gradients = [tf.constant(rng.normal(size=w.shape), tf.float32) for w in weights]
    state, got = scaled.next(state, got, gradients)
    for i, (reference, g) in enumerate(zip(references, gradients, strict=True)):
      reference_states[i], want[i] = reference.next(reference_states[i], want[i], g)
  for g, w, start in zip(got, want, weights, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    assert not np.allclose(g, start)
  assert scaled.get_hparams(state)["learning_rate"] == pytest.approx(rate)  # Schedules set the base rate.
  assert optimizers.build("adam", rate, [1.0, 1.0]).__class__ is not optimizers.ScaledSteps
  with pytest.raises(ValueError, match="3 learning-rate multipliers for 2 weights"):
    scaled.next(scaled.initialize(specs[:2]), weights[:2], gradients[:2])


def _one_step_round(tmp_path, name, **overrides):
  """One round of one client taking one Adam step; returns the trained weights' moves and the experiment."""
  config = helpers.tiny_config(
    tmp_path,
    experiment_name=name,
    total_rounds=1,
    clients_per_round=1,
    max_elements_per_client=4,
    client_optimizer="adam",
    client_learning_rate=0.01,
    **overrides,
  )
  experiment = trainer.FederatedExperiment(config)
  start = experiment.task.initial_weights()
  state, metrics = experiment.loop.train_round(experiment.context.initial_state(), 1)
  assert metrics["train_sequences"] == 4  # One batch, one step.
  after = experiment.process.get_model_weights(state)
  return [a - b for a, b in zip(after.trainable, start.trainable, strict=True)], experiment


# TFF builds a scheduled client rate (here a warmup) with another builder, which calls the optimizer's
# builder every round.
@pytest.mark.parametrize(
  "schedule",
  [{}, pytest.param({"client_lr_warmup_rounds": 2}, marks=pytest.mark.full)],  # Warmup: the full tier.
  ids=["constant", "warmup"],
)
def test_a_federated_round_moves_each_group_by_its_factor(tmp_path, schedule):
  """One client, one step from the same weights: the same gradient, so each move is the plain one x factor."""
  plain, _ = _one_step_round(tmp_path, "plain", **schedule)
  moves, experiment = _one_step_round(
    tmp_path, "scaled", client_lr_multipliers="attention_vo=0.25,embeddings=2", **schedule
  )
  model = experiment.task.keras_model(experiment.task.initial_weights())
  paths = {id(v): p for p, v in trainable_lib.named_weights(gpt2_lm.backbone_of(model)).items()}
  factors = {"attention_vo": 0.25, "embeddings": 2.0}
  checked = set()
  for variable, p, s in zip(model.trainable_variables, plain, moves, strict=True):
    group = _expected_group(paths[id(variable)])
    np.testing.assert_allclose(s, factors.get(group, 1.0) * p, rtol=1e-4, atol=1e-8)
    checked.add(group) if np.abs(p).max() > 1e-4 else None
  assert checked >= {"attention_vo", "embeddings", "feedforward"}  # Moves that were not all zero.


def test_multipliers_are_refused_where_they_cannot_apply(tmp_path):
  with pytest.raises(errors.UserInputError, match="--client_lr_multipliers names GPT-2"):
    helpers.tiny_config(tmp_path, model="char_lstm", client_lr_multipliers="attention_vo=0.5").validate()
  with pytest.raises(algorithms.UnsupportedCombinationError, match="no client optimizer"):
    helpers.tiny_config(tmp_path, algorithm="fedsgd", client_lr_multipliers="attention_vo=0.5").validate()
  with pytest.raises(errors.UserInputError, match="attention_v=0.5"):
    helpers.tiny_config(tmp_path, client_lr_multipliers="attention_v=0.5").validate()
