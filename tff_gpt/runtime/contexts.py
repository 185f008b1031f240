"""TFF execution contexts over workers the project starts and watches.

The same `SyncExecutionContext`, compiler and argument transforms as TFF's
`tff.backends.native.set_sync_local_cpp_execution_context` (or, for secure
aggregation, `tff.backends.test.set_sync_test_cpp_execution_context`), with
the executor stack's worker a `workers.LocalWorker` instead of TFF's
self-restarting one.
"""

from tensorflow_federated.python.core.backends.native import compiler as native_compiler
from tensorflow_federated.python.core.backends.test import compiler as test_compiler
from tensorflow_federated.python.core.environments.tensorflow_frontend import tensorflow_computation
from tensorflow_federated.python.core.impl.execution_contexts import sync_execution_context
from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
from tensorflow_federated.python.core.impl.executors import remote_executor
from tensorflow_federated.python.core.impl.types import placements

from tff_gpt.runtime import workers


def _compile_secure_as_plain(comp):
  """Lowers secure sums to plain sums (TFF's test backend) so that they run in simulation."""
  return native_compiler.desugar_and_transform_to_native(
    test_compiler.replace_secure_intrinsics_with_bodies(comp)
  )


def local_context(worker: workers.LocalWorker, *, secure_aggregation: bool = False):
  """A synchronous context that runs every computation on `worker`."""

  def stack_fn(cardinalities):
    if cardinalities.get(placements.CLIENTS) is None:
      cardinalities[placements.CLIENTS] = 0
    executor = remote_executor.RemoteExecutor(worker.stub())
    executor.set_cardinalities(cardinalities)
    return executor

  return sync_execution_context.SyncExecutionContext(
    executor_fn=python_executor_stacks.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn),
    compiler_fn=_compile_secure_as_plain
    if secure_aggregation
    else native_compiler.desugar_and_transform_to_native,
    transform_args=tensorflow_computation.transform_args,
    transform_result=tensorflow_computation.transform_result,
  )
