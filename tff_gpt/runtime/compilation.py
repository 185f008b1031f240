"""Compiling computations for a CPU worker: TFF's native compilation, with Grappler told the device.

TFF compiles each computation once, ahead of time, with Grappler
(`tff.backends.native`'s `desugar_and_transform_to_native`), and its worker
then runs the graphs with Grappler turned off. TFF leaves the graphs'
devices unassigned until the worker's session places them, and Grappler
skips every CPU-only rewrite for a node without a device: `Pow(x, 3)` stays a
general power instead of `x * x * x`, which for keras-nlp's GPT-2 (the
approximate GELU, forward and backward) took 10% of the worker's time in a
training round (`perf`, docs/round_speedups.md). TensorFlow places a
`tf.function`'s ops before its Grappler pass, which is why central training
never paid it.

`compile_for_cpu` is TFF's pipeline, step for step, except that each
TensorFlow graph is placed on the CPU while Grappler optimizes it, then has
those devices removed again, so that the worker's session places it as
before. Use it only for a worker without accelerators.
"""

import tensorflow as tf

from tff_gpt.internals import (
  building_blocks,
  compiled_computation_transformations,
  computation_impl,
  context_stack_impl,
  native_compiler,
  serialization_utils,
  tensorflow_tree_transformations,
  test_compiler,
  transformation_utils,
  transformations,
)

CPU = "/device:CPU:0"


def grappler_config() -> tf.compat.v1.ConfigProto:
  """The Grappler options of TFF's native compilation (`desugar_and_transform_to_native`)."""
  config = tf.compat.v1.ConfigProto()
  rewrite = config.graph_options.rewrite_options
  for option in (
    "memory_optimization",
    "constant_folding",
    "arithmetic_optimization",
    "loop_optimization",
    "function_optimization",
  ):
    setattr(rewrite, option, rewrite.AGGRESSIVE)
  return config


def graph_def(comp: building_blocks.CompiledComputation) -> tf.compat.v1.GraphDef:
  """The TensorFlow graph of a compiled computation."""
  return serialization_utils.unpack_graph_def(comp.proto.tensorflow.graph_def)


def graph_nodes(graph: tf.compat.v1.GraphDef):
  """Every node of `graph`, its function library's included."""
  yield from graph.node
  for function in graph.library.function:
    yield from function.node_def


def _with_devices(
  comp: building_blocks.CompiledComputation, place: bool
) -> building_blocks.CompiledComputation:
  """`comp` with every node placed on the CPU (`place`), or with every CPU placement removed."""
  graph = graph_def(comp)
  for node in graph_nodes(graph):
    if place and not node.device:
      node.device = CPU
    elif not place and tf.DeviceSpec.from_string(node.device).device_type == "CPU":
      node.device = ""
  proto = type(comp.proto)()
  proto.CopyFrom(comp.proto)
  proto.tensorflow.graph_def.CopyFrom(serialization_utils.pack_graph_def(graph))
  return building_blocks.CompiledComputation(proto, type_signature=comp.type_signature)


def _optimize_on_cpu(comp):
  is_tensorflow = isinstance(comp, building_blocks.CompiledComputation) and (
    comp.proto.WhichOneof("computation") == "tensorflow"
  )
  if not is_tensorflow:
    return comp, False
  optimized = compiled_computation_transformations.optimize_tensorflow_comp(
    _with_devices(comp, place=True), grappler_config()
  )
  return _with_devices(optimized, place=False), True


def compile_for_cpu(comp: computation_impl.ConcreteComputation, *, secure_aggregation: bool = False):
  """TFF's native compilation of `comp`, with Grappler optimizing every graph as placed on the CPU.

  With `secure_aggregation`, secure sums are first lowered to plain sums as
  TFF's test backend does (simulation only). A computation that TFF's own
  pipeline would not compile either is passed to it unchanged.
  """
  if secure_aggregation:
    comp = test_compiler.replace_secure_intrinsics_with_bodies(comp)
  try:
    building_block, _ = tensorflow_tree_transformations.replace_intrinsics_with_bodies(
      comp.to_building_block()
    )
    building_block = transformations.to_call_dominant(building_block)
    building_block, _ = transformation_utils.transform_postorder(building_block, _optimize_on_cpu)
  except ValueError:  # TFF's own `transform_to_native_form` gives up the same way.
    return native_compiler.desugar_and_transform_to_native(comp)
  building_block, _ = compiled_computation_transformations.transform_tf_call_ops_to_disable_grappler(
    building_block
  )
  building_block, _ = compiled_computation_transformations.transform_tf_add_ids(building_block)
  return computation_impl.ConcreteComputation(
    computation_proto=building_block.proto, context_stack=context_stack_impl.context_stack
  )
