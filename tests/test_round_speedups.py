"""What makes a round faster without changing it: `compile_for_cpu`, `runtime.largest_first`, no draws.

`runtime.compilation.compile_for_cpu` against TFF's own compiler on a real
training round of the tiny GPT-2: the same weights and metrics, and graphs
that differ where Grappler's CPU-only rewrites apply (keras-nlp's GELU
computes `x ** 3`). `largest_first` reorders a round's clients: the same
weighted mean. `tff_model.client_model_fn`: rounds and evaluations that draw
no initial values give the results of TFF's processes that do, and
`initialize()` still draws.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_federated.python.core.backends.native import compiler as native_compiler
from tensorflow_federated.python.core.impl.compiler import building_blocks, transformation_utils

from tests import helpers
from tff_gpt import algorithms, runtime
from tff_gpt.runtime import compilation
from tff_gpt.training import trainer

# Its module-scoped fixtures are built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
  helpers.ensure_tff_context()
  config = helpers.tiny_config(
    tmp_path_factory.mktemp("compilation"), client_optimizer="adam", client_learning_rate=0.01
  )
  return trainer.FederatedExperiment(config)


def graphs(comp):
  """Every TensorFlow graph of a compiled computation."""
  found = []

  def visit(block):
    if isinstance(block, building_blocks.CompiledComputation) and block.proto.WhichOneof("computation") == (
      "tensorflow"
    ):
      found.append(compilation.graph_def(block))
    return block, False

  transformation_utils.transform_postorder(comp.to_building_block(), visit)
  return found


def nodes(comp):
  return [node for graph in graphs(comp) for node in compilation.graph_nodes(graph)]


def test_the_gelu_power_becomes_multiplications_and_no_device_is_left(experiment):
  native = collections.Counter(
    n.op for n in nodes(native_compiler.desugar_and_transform_to_native(experiment.process.next))
  )
  ours_nodes = nodes(compilation.compile_for_cpu(experiment.process.next))
  ours = collections.Counter(n.op for n in ours_nodes)
  layers = experiment.task.model_config["num_layers"]
  # One x ** 3 per block's GELU: TFF's compilation keeps it as Pow, which Grappler rewrites only on a CPU.
  assert native["Pow"] - ours["Pow"] == layers
  assert ours["Mul"] > native["Mul"]
  assert {n.device for n in ours_nodes} == {""}, "the worker's session places the graphs, as with TFF's"


def round_datasets(experiment, round_num=1):
  config = experiment.config
  return [
    experiment.task.train_data.train_dataset(
      c, round_num=round_num, seed=config.seed, batch_size=config.client_batch_size
    )
    for c in experiment.context.clients_for_round(round_num)
  ]


def assert_same_round(a, b):
  np.testing.assert_allclose(
    a.metrics["client_work"]["train"]["loss"], b.metrics["client_work"]["train"]["loss"], rtol=1e-6
  )
  a_weights, b_weights = a.state.global_model_weights.trainable, b.state.global_model_weights.trainable
  assert len(a_weights) == len(b_weights) > 0
  for x, y in zip(a_weights, b_weights, strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)  # Float rounding of reordered ops.


def test_a_round_gives_the_same_weights_and_metrics_as_tffs_compilation(experiment):
  datasets = round_datasets(experiment)
  results = {}
  try:
    for optimize_for_cpu in (False, True):
      runtime.set_up(optimize_for_cpu=optimize_for_cpu)
      process = experiment.process
      results[optimize_for_cpu] = process.next(process.initialize(), datasets)
  finally:
    runtime.set_up()
  native, ours = results[False], results[True]
  labels = sum(int(np.sum(y.numpy() >= 0)) for ds in datasets for _, y in ds)  # IGNORE_LABEL is negative.
  assert native.metrics["client_work"]["train"]["num_tokens"] == labels
  assert_same_round(native, ours)
  start = experiment.process.initialize().global_model_weights.trainable
  trained = ours.state.global_model_weights.trainable
  assert max(np.abs(a - s).max() for a, s in zip(trained, start, strict=True)) > 1e-4, "the round trained"


def test_largest_clients_go_first_and_the_round_is_the_same(experiment):
  datasets = round_datasets(experiment)
  ordered = runtime.largest_first(datasets + [datasets[0].filter(lambda *_: True)])  # Unknown length: last.
  sizes = [int(d.cardinality()) for d in ordered]
  assert sizes[-1] == tf.data.UNKNOWN_CARDINALITY
  assert sizes[:-1] == sorted(sizes[:-1], reverse=True)
  assert sizes[:-1] != [int(d.cardinality()) for d in datasets], "the sample was reordered"
  state = experiment.process.initialize()
  assert_same_round(experiment.process.next(state, datasets), experiment.process.next(state, ordered[:-1]))


def graph_bytes(comp) -> int:
  return sum(graph.ByteSize() for graph in graphs(compilation.compile_for_cpu(comp)))


@pytest.mark.full
def test_rounds_and_evaluations_draw_no_initial_values_and_give_the_same_results(experiment):
  drawing = algorithms.build_process(experiment.config, experiment.task.model_fn)  # TFF's process as such.
  drawing_eval = algorithms.build_eval_process(experiment.task.model_fn)
  # Grappler folds the draws into constants: TFF's graphs carry a model's worth of random values.
  model_bytes = 4 * sum(w.size for w in drawing.initialize().global_model_weights.trainable)
  assert graph_bytes(drawing.next) - graph_bytes(experiment.process.next) > 0.9 * model_bytes
  assert graph_bytes(drawing_eval.next) - graph_bytes(experiment.evaluate.process.next) > 0.9 * model_bytes
  assert experiment.process.initialize.type_signature == drawing.initialize.type_signature

  # `initialize()` still draws as TFF's does: the same spread, kernel by kernel.
  initial = experiment.process.initialize().global_model_weights.trainable
  reference = drawing.initialize().global_model_weights.trainable
  kernels = [i for i, w in enumerate(reference) if w.ndim == 2 and np.std(w) > 0]
  assert kernels
  for i in kernels:
    np.testing.assert_allclose(np.std(initial[i]), np.std(reference[i]), rtol=0.3)

  state = drawing.initialize()
  datasets = round_datasets(experiment)
  assert_same_round(drawing.next(state, datasets), experiment.process.next(state, datasets))
  weights = drawing.get_model_weights(state)
  ours, theirs = (
    p.next(p.set_model_weights(p.initialize(), weights), datasets).metrics["client_work"]["eval"]
    for p in (experiment.evaluate.process, drawing_eval)
  )
  assert ours["current_round_metrics"]["loss"] == pytest.approx(
    theirs["current_round_metrics"]["loss"], rel=1e-6
  )
