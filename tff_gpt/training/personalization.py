"""Personalization evaluation: each client adapts the global model to its own text, then is evaluated.

TFF's `build_personalization_eval_computation` broadcasts the global weights;
each of K evaluation clients evaluates them on its held-out split (the
baseline), fine-tunes a copy of what the run trains (the whole model, or the
`--trainable` subset) for E steps of plain SGD on batches of its own training
split, and evaluates the result on the same held-out split. What comes back is
per client (TFF collects at most K clients' metrics); the report gives the
distribution of the gains, `personalization.csv` the rows.
"""

import collections
import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_gpt.data import preprocessing
from tff_gpt.data.preprocessing import IGNORE_LABEL

STRATEGY = "fine_tuned"


@dataclasses.dataclass(frozen=True)
class Personalization:
  """How clients personalize: `steps` SGD steps at `learning_rate` on batches of `batch_size`."""

  clients: int
  steps: int
  learning_rate: float
  batch_size: int


def _loss_sums(model, test_data, batch_size: int):
  """`(loss sum, correct, tokens)` of the model's next-token predictions on unbatched `test_data`."""
  totals = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
  for x, y in test_data.batch(batch_size):
    logits = model.predict_on_batch(x, training=False)
    keep = tf.cast(tf.not_equal(y, IGNORE_LABEL), tf.float32)
    labels = tf.maximum(y, 0)
    losses = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    totals = (
      totals[0] + tf.reduce_sum(losses * keep),
      totals[1] + tf.reduce_sum(correct * keep),
      totals[2] + tf.reduce_sum(keep),
    )
  return collections.OrderedDict(loss_sum=totals[0], correct=totals[1], tokens=totals[2])


def build_computation(model_fn, p: Personalization):
  """TFF's personalization evaluation of `model_fn` with the strategy `p` (and the unchanged baseline)."""

  def build_fine_tune():
    @tf.function
    def fine_tune(model, train_data, test_data):
      for x, y in train_data.repeat().batch(p.batch_size).take(p.steps):
        with tf.GradientTape() as tape:
          loss = model.forward_pass((x, y), training=True).loss
        grads = tape.gradient(loss, model.trainable_variables)
        for variable, grad in zip(model.trainable_variables, grads, strict=True):
          variable.assign_sub(p.learning_rate * grad)
      return _loss_sums(model, test_data, p.batch_size)

    return fine_tune

  @tf.function
  def baseline(model, test_data):
    return _loss_sums(model, test_data, p.batch_size)

  return tff.learning.algorithms.build_personalization_eval_computation(
    model_fn, collections.OrderedDict([(STRATEGY, build_fine_tune)]), baseline, max_num_clients=p.clients
  )


def client_inputs(task, client_ids: list[str]) -> list:
  """Each client's unbatched train and held-out sequences, as the computation takes them."""

  def unbatched(sequences, rank):
    x = collections.OrderedDict(token_ids=sequences["token_ids"], padding_mask=sequences["padding_mask"])
    if rank is not None:  # hetlora, flexlora: the client personalizes and is evaluated at its own rank.
      x[preprocessing.RANK_FEATURE] = np.full(len(sequences["labels"]), rank, np.int32)
    return tf.data.Dataset.from_tensor_slices((x, sequences["labels"]))

  return [
    collections.OrderedDict(
      train_data=unbatched(task.train_data.sequences(cid), task.client_rank(cid)),
      test_data=unbatched(task.test_data.sequences(cid), task.client_rank(cid)),
    )
    for cid in client_ids
  ]


def clients_of(task, k: int) -> list[str]:
  """The first `k` evaluation clients that also have training text."""
  train = set(task.train_data.client_ids)
  return [cid for cid in task.eval_client_ids if cid in train][:k]


def rows(result, client_ids: list[str], expected_tokens: list[int]) -> list[dict]:
  """Per-client rows from the computation's result, clients with held-out tokens only.

  TFF collects the clients' metrics by reservoir sampling, which keeps every
  client (at most K were given) in the order given; the rows name their
  clients when the collected token counts confirm that order, else "".
  """
  base, tuned = result["baseline_metrics"], result[STRATEGY]
  collected = [int(t) for t in base["tokens"]]
  ids = client_ids if collected == expected_tokens else [""] * len(collected)
  out = []
  for i, client_id in enumerate(ids):
    tokens = float(base["tokens"][i])
    if tokens == 0:
      continue
    global_loss, personal_loss = float(base["loss_sum"][i]) / tokens, float(tuned["loss_sum"][i]) / tokens
    out.append(
      dict(
        client_id=client_id,
        tokens=int(tokens),
        global_loss=global_loss,
        personalized_loss=personal_loss,
        gain=global_loss - personal_loss,
        global_accuracy=float(base["correct"][i]) / tokens,
        personalized_accuracy=float(tuned["correct"][i]) / tokens,
      )
    )
  return out


def summarize(per_client: list[dict]) -> dict:
  """The distribution of per-client gains (global minus personalized held-out loss, nats per token)."""
  gains = np.array([r["gain"] for r in per_client])
  return {
    "clients": len(per_client),
    "global_loss_mean": float(np.mean([r["global_loss"] for r in per_client])),
    "personalized_loss_mean": float(np.mean([r["personalized_loss"] for r in per_client])),
    "gain_median": float(np.median(gains)),
    "gain_p10": float(np.percentile(gains, 10)),
    "gain_p90": float(np.percentile(gains, 90)),
    "fraction_improved": float(np.mean(gains > 0)),
  }


def evaluate(task, model_weights, p: Personalization, computation=None) -> tuple[dict, list[dict]]:
  """`(summary, per-client rows)` of personalizing `model_weights` on the task's evaluation clients.

  `computation`: `build_computation(task.client_model_fn, p)`, built once by a caller that evaluates often.
  """
  client_ids = clients_of(task, p.clients)
  computation = computation or build_computation(task.client_model_fn, p)
  result = computation(model_weights, client_inputs(task, client_ids))
  expected = [int(np.sum(task.test_data.sequences(cid)["labels"] != IGNORE_LABEL)) for cid in client_ids]
  per_client = rows(result, client_ids, expected)
  return summarize(per_client), per_client
