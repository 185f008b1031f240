"""The central baseline trains on exactly the federated run's batches, with the clients' own optimizer.

`tests/test_benchmarks.py` runs it over several rounds and clients (every batch seen, and it learns).
"""

import numpy as np
import pytest

from tests import helpers
from tff_gpt import errors
from tff_gpt.central import replay
from tff_gpt.training import trainer


@pytest.mark.parametrize(
  "model, trainable",
  [("gpt2", "all"), ("gpt2", "lora:2"), pytest.param("char_lstm", "all", marks=pytest.mark.full)],
)  # The LSTM's embedding gradients are IndexedSlices; LoRA trains the adapters alone.
def test_one_client_for_one_round_gives_the_federated_rounds_weights(tmp_path, model, trainable):
  """With one client, FedAvg's round is that client's training: TFF's round is the reference."""
  rate = 0.01
  config = helpers.tiny_config(
    tmp_path,
    model=model,
    trainable=trainable,
    total_rounds=1,
    clients_per_round=1,
    client_optimizer="adam",
    client_learning_rate=rate,
  )
  experiment = trainer.FederatedExperiment(config)
  state, round_metrics = experiment.loop.train_round(experiment.context.initial_state(), 1)
  federated = experiment.process.get_model_weights(state)
  central = replay.train(experiment.context, experiment.evaluate, rate, progress=False)
  start = experiment.task.initial_weights()
  assert central["examples"] == round_metrics["train_sequences"] > 4
  assert central["steps"] == -(-central["examples"] // config.client_batch_size)
  moved = 0
  for got, want, before in zip(
    central["model_weights"].trainable, federated.trainable, start.trainable, strict=True
  ):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    moved += not np.allclose(got, before)
  assert moved > len(start.trainable) * 0.9  # The comparison is not of untouched weights.
  want_eval = experiment.evaluate(federated)["eval_loss"]
  assert central["evals"][0]["eval_loss"] == pytest.approx(want_eval, rel=1e-5)


def test_adapters_of_client_ranks_are_refused_with_the_flag_to_change(tmp_path):
  with pytest.raises(errors.UserInputError, match="its own adapter rank. Use --trainable=lora:R"):
    replay.check(helpers.tiny_config(tmp_path, trainable="hetlora:2"))
