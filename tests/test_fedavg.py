"""The seed's formula: one round of weighted FedAvg is the example-weighted mean.

With plain client SGD and server SGD at learning rate 1.0, the global weights
after one round equal sum_k n_k / n * theta_k, where theta_k is what client k
reaches training alone in Keras from the same start and n_k its number of
training sequences.
"""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tests import helpers
from tff_gpt.models import gpt2_lm, metrics, tff_model
from tff_gpt.training import trainer


def test_one_round_equals_example_weighted_mean_of_keras_training(tmp_path):
  config = helpers.tiny_config(
    tmp_path,
    clients_per_round=3,
    client_optimizer="sgd",
    client_learning_rate=0.3,
    server_learning_rate=1.0,
    max_elements_per_client=None,
    client_batch_size=3,
  )
  experiment = trainer.FederatedExperiment(config)
  clients = experiment.context.clients_for_round(1)
  assert len(clients) == 3
  start = tff_model.initial_weights(experiment.task.model_config, seed=config.seed)
  datasets = [
    experiment.task.train_data.train_dataset(
      c, round_num=1, seed=config.seed, batch_size=config.client_batch_size
    )
    for c in clients
  ]

  local_weights, sizes = [], []
  for dataset in datasets:
    model = gpt2_lm.build_gpt2_lm(experiment.task.model_config)
    start.assign_weights_to(model)
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.3), loss=metrics.lm_loss())
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    local_weights.append([w.numpy() for w in model.trainable_weights])
    sizes.append(sum(int(y.shape[0]) for _, y in dataset))
  assert len(set(sizes)) > 1, "clients of different sizes make the weighting visible"
  expected = [
    sum(n * w[i] for n, w in zip(sizes, local_weights, strict=True)) / sum(sizes)
    for i in range(len(local_weights[0]))
  ]
  unweighted = [np.mean([w[i] for w in local_weights], axis=0) for i in range(len(expected))]

  state = experiment.process.set_model_weights(experiment.process.initialize(), start)
  state = experiment.process.next(state, datasets).state
  got = experiment.process.get_model_weights(state).trainable

  assert len(got) == len(expected)
  for g, e in zip(got, expected, strict=True):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
  # The check can fail: the unweighted mean is measurably different.
  assert max(np.abs(g - u).max() for g, u in zip(got, unweighted, strict=True)) > 1e-4
  assert isinstance(state, tff.learning.templates.LearningAlgorithmState)
