"""Bytes each client receives and sends in one round, from the process's types.

Download: the global model weights the server broadcasts (trainable and
non-trainable, as TFF's model distributor sends them), plus for Mime Lite the
server optimizer state. Upload: the trainable update under the aggregator's
encoding (float32, or `compression_bits` per coordinate for tensors above
TFF's quantization threshold, plus their two float32 range parameters), plus
the client weight, plus for Mime Lite the full-batch gradient. The payload is
counted; protocol overhead (secure aggregation's key exchange, framing) is not.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_gpt.algorithms import aggregators, registry
from tff_gpt.algorithms.optimizers import OPTIMIZERS


def _tensor_bytes(t: tff.types.TensorType) -> int:
  return int(np.prod(t.shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize


def _update_bytes(t: tff.types.TensorType, bits: int | None) -> int:
  n = int(np.prod(t.shape, dtype=np.int64))
  if bits is None or n <= aggregators.QUANTIZATION_THRESHOLD:
    return _tensor_bytes(t)
  return math.ceil(n * bits / 8) + 8


def _optimizer_state_bytes(config, trainable_types) -> int:
  optimizer = OPTIMIZERS[config.client_optimizer](config.client_learning_rate)
  state = optimizer.initialize([tf.TensorSpec(t.shape, t.dtype) for t in trainable_types])
  return sum(np.asarray(v).nbytes for v in tf.nest.flatten(state))


def weight_bytes(process: tff.learning.templates.LearningProcess) -> tuple[int, int]:
  """`(trainable, non_trainable)` bytes of the model weights in the process's state."""
  weights_type = process.get_model_weights.type_signature.result
  return (
    sum(_tensor_bytes(t) for t in weights_type.trainable),
    sum(_tensor_bytes(t) for t in weights_type.non_trainable),
  )


def bytes_per_client(config, process: tff.learning.templates.LearningProcess) -> dict:
  """`{"client_download_bytes": ..., "client_upload_bytes": ...}` for one client and round."""
  weights_type = process.get_model_weights.type_signature.result
  trainable, non_trainable = list(weights_type.trainable), list(weights_type.non_trainable)
  bits = None
  aggregator = aggregators.AGGREGATORS[config.aggregator]
  if aggregator.bits_per_value is not None:
    bits = aggregator.bits_per_value(config)
  download = sum(_tensor_bytes(t) for t in trainable + non_trainable)
  upload = sum(_update_bytes(t, bits) for t in trainable) + 4
  if registry.ALGORITHMS[config.algorithm].family == "mime_lite":
    download += _optimizer_state_bytes(config, trainable)
    upload += sum(_tensor_bytes(t) for t in trainable)
  return {"client_download_bytes": download, "client_upload_bytes": upload}


def round_bytes(per_client: dict, clients: int) -> int:
  """Bytes one round communicates: `clients` each moving `per_client` (`bytes_per_client`)."""
  return clients * sum(per_client.values())
