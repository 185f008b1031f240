"""A `tff.learning` model whose state is only the weights that train (`--trainable` subsets)."""

import tensorflow as tf
import tensorflow_federated as tff


class TrainedSubsetModel(tff.learning.models.VariableModel):
  """A `tff.learning` model whose weights are only the variables that train.

  Everything else (forward pass, metrics, input spec) is the wrapped
  `from_keras_model` model's. The frozen variables still exist in the client
  graph, but TFF neither sets, sends nor aggregates them.
  """

  def __init__(self, model: tff.learning.models.VariableModel, trained: list[tf.Variable]):
    self._model = model
    self._trained = list(trained)

  @property
  def trainable_variables(self):
    return self._trained

  @property
  def non_trainable_variables(self):
    return []

  @property
  def local_variables(self):
    return self._model.local_variables

  @property
  def input_spec(self):
    return self._model.input_spec

  def forward_pass(self, batch_input, training=True):
    return self._model.forward_pass(batch_input, training=training)

  def predict_on_batch(self, batch_input, training=True):
    return self._model.predict_on_batch(batch_input, training=training)

  def report_local_unfinalized_metrics(self):
    return self._model.report_local_unfinalized_metrics()

  def metric_finalizers(self):
    return self._model.metric_finalizers()

  def reset_metrics(self):
    return self._model.reset_metrics()
