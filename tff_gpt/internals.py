"""The one door to TFF's, Keras's and keras-nlp's private APIs, with why each is used.

Every module of tff_gpt that needs something outside those libraries'
public APIs imports it from here, so that a version change is checked in one
place (`tests/test_internals.py` fails, naming what moved, when a pin moves).
The pins are those of `requirements.txt`; `check_versions` compares them with
what is installed.

What, who uses it, and why:

- TFF's native and test compilers, `computation_impl`, the context stack
  (runtime.contexts, runtime.compilation): a context over the project's own
  worker, compiled with Grappler's CPU rewrites; secure sums lowered to plain
  sums in simulation, as TFF's test context does.
- TFF's execution contexts, executor stacks, remote executor, value
  serialization, placements, `executor_pb2` (runtime.contexts): a worker that
  is watched instead of silently restarted, and remote workers driven
  concurrently (`RemoteExecutor._compute` and its siblings run off the loop).
- TFF's gRPC stub and channel options (runtime.workers): health checks of a
  worker before round 1, with TFF's own channel options.
- TFF's Shakespeare and Stack Overflow baselines (data.tokenizers,
  models.char_lstm): TFF's own vocabularies and reference LSTM.
- `FileProgramStateManager._get_path_for_version` (training.outputs): naming,
  and setting aside, an unreadable checkpoint.
- Keras's `_UNSAFE_GRAPH_OP_LAYER_CREATION` (models.gpt2_lm): GPT-2 built in
  graph mode without a Keras session per op (BENCHMARKS.md, "Building an
  experiment").
- Keras's `Layer._flatten_layers`, `_trainable_weights`,
  `_non_trainable_weights` (models.trainable, models.seeded_dropout): a
  layer's own weights and sublayers as objects (names differ between eager
  and graph mode).
- keras-nlp's `preset_utils` (models.gpt2_lm, models.presets): preset
  directories read and written under Keras 2 (keras-nlp's `save_to_preset`
  needs Keras 3).
"""

import contextlib
import importlib.metadata

from tensorflow_federated.proto.v0 import executor_pb2
from tensorflow_federated.python.core.backends.native import compiler as native_compiler
from tensorflow_federated.python.core.backends.native import mergeable_comp_compiler
from tensorflow_federated.python.core.backends.test import compiler as test_compiler
from tensorflow_federated.python.core.environments.tensorflow_backend import (
  compiled_computation_transformations,
  tensorflow_tree_transformations,
)
from tensorflow_federated.python.core.environments.tensorflow_frontend import tensorflow_computation
from tensorflow_federated.python.core.impl.compiler import (
  building_blocks,
  transformation_utils,
  transformations,
)
from tensorflow_federated.python.core.impl.computation import computation_impl
from tensorflow_federated.python.core.impl.context_stack import context_stack_impl, set_default_context
from tensorflow_federated.python.core.impl.execution_contexts import (
  async_execution_context,
  mergeable_comp_execution_context,
  sync_execution_context,
)
from tensorflow_federated.python.core.impl.executor_stacks import executor_factory, python_executor_stacks
from tensorflow_federated.python.core.impl.executors import (
  remote_executor,
  remote_executor_grpc_stub,
  value_serialization,
)
from tensorflow_federated.python.core.impl.types import placements
from tensorflow_federated.python.simulation.baselines.shakespeare import char_prediction_models
from tensorflow_federated.python.simulation.baselines.shakespeare import (
  char_prediction_preprocessing as tff_shakespeare,
)
from tensorflow_federated.python.simulation.baselines.stackoverflow import (
  word_prediction_preprocessing as tff_stackoverflow,
)
from tensorflow_federated.python.tensorflow_libs import serialization_utils

__all__ = [
  "PINS",
  "async_execution_context",
  "building_blocks",
  "char_prediction_models",
  "check_versions",
  "checkpoint_path",
  "compiled_computation_transformations",
  "computation_impl",
  "context_stack_impl",
  "executor_pb2",
  "flatten_layers",
  "graph_op_layers_kept_in_graph",
  "grpc_channel_options",
  "mergeable_comp_compiler",
  "mergeable_comp_execution_context",
  "native_compiler",
  "own_weights",
  "placements",
  "python_executor_stacks",
  "remote_executor",
  "remote_executor_grpc_stub",
  "serialization_utils",
  "set_default_context",
  "sync_execution_context",
  "tensorflow_computation",
  "tensorflow_tree_transformations",
  "test_compiler",
  "tff_shakespeare",
  "tff_stackoverflow",
  "transformation_utils",
  "transformations",
  "value_serialization",
]

# What the private uses above were written and tested against (requirements.txt), as version prefixes.
PINS = {
  "tensorflow": "2.14.",
  "tensorflow-federated": "0.87.0",
  "keras": "2.14.",
  "keras-nlp": "0.12.1",
}


def check_versions() -> list[str]:
  """`"package: installed X, tested with Y"` for each installed package off its pin; empty when all match."""
  moved = []
  for package, pin in PINS.items():
    try:
      installed = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      installed = "none"
    if not installed.startswith(pin):
      moved.append(f"{package}: installed {installed}, tested with {pin.rstrip('.')}")
  return moved


def grpc_channel_options():
  """The gRPC channel options TFF's own remote contexts use."""
  return executor_factory._GRPC_CHANNEL_OPTIONS


def checkpoint_path(state_manager, version: int) -> str:
  """Where a `tff.program.FileProgramStateManager` keeps `version`."""
  return state_manager._get_path_for_version(version)


@contextlib.contextmanager
def graph_op_layers_kept_in_graph():
  """Keras 2's switch that keeps a functional model's op-layer constants as graph tensors while it is on."""
  from keras.src.engine import base_layer_utils  # Here: the worker's entry point needs no Keras.

  previous = base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION
  base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION = True
  try:
    yield
  finally:
    base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION = previous


def flatten_layers(layer, *, include_self: bool = True, recursive: bool = True) -> list:
  """A Keras layer's sublayers, as Keras itself walks them (`Layer._flatten_layers`)."""
  return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def __getattr__(name: str):
  """`preset_utils` (keras-nlp's) is imported when first asked for: the worker's entry point needs none."""
  if name == "preset_utils":
    from keras_nlp.src.utils import preset_utils

    return preset_utils
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def own_weights(layer, *, trainable: bool = True, non_trainable: bool = False) -> list:
  """The weights a Keras layer holds itself, not through its sublayers."""
  return (list(layer._trainable_weights) if trainable else []) + (
    list(layer._non_trainable_weights) if non_trainable else []
  )
