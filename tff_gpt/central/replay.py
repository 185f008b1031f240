"""A federated run's own batches trained centrally: the baseline federated training is measured against.

Federated learning papers report how far a federated model is from one
trained centrally on the union of the clients' data. The fair version of
that baseline trains on exactly the batches the federated run trains on: the
clients `training.run.Run.clients_for_round` samples, each one's dataset
of that round (`Run.client_datasets`: the same epochs, batch
size, cap and shuffle), one client after another, through one model and one
optimizer that persist over the whole run, from the run's initial weights.
The optimizer is the clients' own (`tff.learning.optimizers`, by
`--client_optimizer`), at `learning_rate`; the evaluation is the run's
federated evaluation on the same held-out clients, at the same rounds.

What differs from the federated run is only what federation does: a round's
clients are trained one after another on one model instead of from the
same global weights and averaged, so a round makes `clients_per_round`
times the sequential steps. A central run usually wants a smaller rate than
the clients' (`studies/central_replay.py` runs a grid).
"""

import time

import tensorflow as tf
import tensorflow_federated as tff
import tqdm

from tff_gpt import algorithms, errors
from tff_gpt.algorithms import optimizers
from tff_gpt.central import step as central_step
from tff_gpt.models import gpt2_lm, tff_model, trainable


def check(config) -> None:
  """Raises `UserInputError` for a run the central baseline cannot mirror."""
  if trainable.parse(config.trainable).kind in trainable.RANKED_KINDS:
    raise errors.UserInputError(
      f"The central baseline trains one model; --trainable={config.trainable} gives each client its own "
      "adapter rank. Use --trainable=lora:R."
    )


def trained_variables(model, config) -> list:
  """What the run trains, in the order of its TFF model's weights: every weight, or the `--trainable`
  subset (and a classifier head)."""
  if config.trainable == "all":
    return model.trainable_variables
  backbone = gpt2_lm.backbone_of(model)
  return trainable.trained_variables(backbone, config.trainable) + gpt2_lm.head_variables(model)


def train(run, evaluate, learning_rate: float, *, rounds: int | None = None, progress: bool = True) -> dict:
  """Trains a run's model centrally on its rounds' batches; evaluates like the federated run.

  Args:
    run: The federated run's `training.run.Run` (its task's data and initial
      weights, its clients and settings are used; its process is not run).
    evaluate: The run's `training.evaluation.Evaluation`.
    learning_rate: The central optimizer's rate. With a client learning-rate
      schedule, it is scaled by the schedule's factor of each round.
    rounds: How many of the run's rounds to go through (default: all).
    progress: Show a progress bar.

  Returns:
    `{"learning_rate", "rounds", "steps", "examples", "seconds", "evals":
    [{"round_num", "eval_loss", "eval_accuracy", ...}], "model_weights"}`,
    evaluated every `rounds_per_eval` rounds and after the last.
  """
  c, task = run.config, run.task
  check(c)
  rounds = c.total_rounds if rounds is None else rounds
  model = tff_model.keras_model_with_weights(task.model_config, task.initial_weights(), **task.model_settings)
  variables = trained_variables(model, c)
  optimizer = optimizers.build(c.client_optimizer, learning_rate, task.client_lr_multipliers())
  update = central_step.tff_update(optimizer, variables)
  state = update.state
  steps = examples = 0
  # One compiled step per batch, called from Python: twice as fast here as a `tf.function` looping over
  # the dataset (75 against 158 ms a step for the sweep's best GPT-2 in batches of 4).
  step = tf.function(central_step.train_step(model, variables, update, dense=True), reduce_retracing=True)

  evals = []
  start = time.perf_counter()
  for round_num in tqdm.trange(1, rounds + 1, unit="round", disable=not progress, dynamic_ncols=True):
    if "learning_rate" in state:  # The client schedule's factor of this round, if there is one.
      factor = algorithms.client_learning_rate(c, round_num) / c.client_learning_rate
      state["learning_rate"].assign(learning_rate * factor)
    for dataset in run.client_datasets(round_num):
      for x, y in dataset:
        step(x, y)
        steps += 1
        examples += int(y.shape[0])
    if round_num % c.rounds_per_eval == 0 or round_num == rounds:
      weights = _weights(model, variables, c)
      evals.append(dict(round_num=round_num, **evaluate(weights)))
      if progress:
        tqdm.tqdm.write(
          f"central lr {learning_rate:g} round {round_num}: eval loss {evals[-1]['eval_loss']:.4f}"
        )
  return dict(
    learning_rate=learning_rate,
    rounds=rounds,
    steps=steps,
    examples=examples,
    seconds=time.perf_counter() - start,
    evals=evals,
    model_weights=_weights(model, variables, c),
  )


def _weights(model, variables, config) -> tff.learning.models.ModelWeights:
  """The model's weights as the run's process holds them (a trained subset: that alone)."""
  if config.trainable == "all":
    return tff.learning.models.ModelWeights.from_model(model)
  return tff.learning.models.ModelWeights(trainable=[v.numpy() for v in variables], non_trainable=[])
