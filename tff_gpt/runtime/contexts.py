"""TFF execution contexts over workers the project starts and watches, or workers given by address.

The same contexts as TFF's native backend, with the executor stack's worker
a `workers.LocalWorker` or `workers.RemoteWorker` instead of TFF's
self-restarting one:

- one worker: the `SyncExecutionContext` of
  `tff.backends.native.set_sync_local_cpp_execution_context` (or, for secure
  aggregation, `tff.backends.test.set_sync_test_cpp_execution_context`);
- several workers, or a round in parts (`round_parts`): TFF's
  `MergeableCompExecutionContext`
  (`tff.backends.native.create_mergeable_comp_execution_context`), which
  compiles each computation to mergeable form and runs a round's clients in
  parts (at least one per worker), then merges the parts' aggregates.
"""

import asyncio
import functools

from tff_gpt.internals import (
  async_execution_context,
  computation_impl,
  executor_pb2,
  mergeable_comp_compiler,
  mergeable_comp_execution_context,
  native_compiler,
  placements,
  python_executor_stacks,
  remote_executor,
  sync_execution_context,
  tensorflow_computation,
  test_compiler,
  value_serialization,
)
from tff_gpt.runtime import compilation


def _compile_secure_as_plain(comp):
  """Lowers secure sums to plain sums (TFF's test backend) so that they run in simulation."""
  comp = test_compiler.replace_secure_intrinsics_with_bodies(comp)
  return native_compiler.desugar_and_transform_to_native(comp)


def _compiler(*, secure_aggregation: bool, optimize_for_cpu: bool):
  if optimize_for_cpu:
    return functools.partial(compilation.compile_for_cpu, secure_aggregation=secure_aggregation)
  return _compile_secure_as_plain if secure_aggregation else native_compiler.desugar_and_transform_to_native


def _off_the_loop(method):
  """`method` (a coroutine of TFF's `RemoteExecutor` that makes a blocking gRPC call) run in a thread."""

  @functools.wraps(method)
  async def wrapper(self, *args, **kwargs):
    return await asyncio.to_thread(asyncio.run, method(self, *args, **kwargs))

  return wrapper


class ConcurrentRemoteExecutor(remote_executor.RemoteExecutor):
  """TFF's `RemoteExecutor`: gRPC calls off the event loop, and each computation sent once.

  TFF's `RemoteExecutor` makes blocking gRPC calls inside its coroutines, so
  with several workers on one event loop (the mergeable context) one
  worker's call kept the others from being asked at all: a round's parts ran
  one after the other (measured: the second worker's CPU stayed idle until
  the first had finished). Here each call runs in a thread; the requests and
  responses are TFF's own.

  TFF's execution context also sends the compiled computation with every
  call (2.2 MB for a round of the small GPT-2), which the worker parses
  again each round. The worker keeps a value until this executor disposes
  of it, so each computation's remote value is kept and reused for the
  executor's lifetime (a new worker gets a new executor).
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._computations = {}

  create_call = _off_the_loop(remote_executor.RemoteExecutor.create_call)
  create_struct = _off_the_loop(remote_executor.RemoteExecutor.create_struct)
  create_selection = _off_the_loop(remote_executor.RemoteExecutor.create_selection)
  _compute = _off_the_loop(remote_executor.RemoteExecutor._compute)
  _create_value = _off_the_loop(remote_executor.RemoteExecutor.create_value)

  async def create_value(self, value, type_spec=None):
    if not isinstance(value, computation_impl.ConcreteComputation):
      return await self._create_value(value, type_spec)
    # Keyed by identity (TFF's compiler caches compiled computations); the entry holds the computation,
    # so its id is never reused while cached.
    cached = self._computations.get(id(value))
    if cached is None:
      cached = (value, await asyncio.to_thread(self._create_kept_value, value, type_spec))
      self._computations[id(value)] = cached
    return cached[1]

  def _create_kept_value(self, value, type_spec) -> remote_executor.RemoteValue:
    """TFF's `create_value`, but the value is not disposed of at exit, when the worker may be gone.

    (The worker frees it with this executor; TFF's values are disposed of when collected, which a cached
    one is not before exit.)
    """
    self._check_has_executor_id()
    value_proto, type_spec = value_serialization.serialize_value(value, type_spec)
    response = self._stub.create_value(
      executor_pb2.CreateValueRequest(executor=self._executor_id, value=value_proto)
    )
    return remote_executor.RemoteValue(response.value_ref, type_spec, self, dispose_at_exit=False)


class WorkerExecutorFactory(python_executor_stacks.ResourceManagingExecutorFactory):
  """TFF's executor factory over one worker (anything with a `stub()`), whose executors can all be closed."""

  def __init__(self, worker):
    self._worker = worker
    self._cardinalities = []
    super().__init__(executor_stack_fn=self._stack)

  def _stack(self, cardinalities):
    self._cardinalities.append(dict(cardinalities))
    if cardinalities.get(placements.CLIENTS) is None:
      cardinalities[placements.CLIENTS] = 0
    executor = ConcurrentRemoteExecutor(self._worker.stub())
    executor.set_cardinalities(cardinalities)
    return executor

  def close_all(self) -> None:
    """Closes every executor made so far (their worker-side state is disposed of); the next call makes new."""
    for cardinalities in self._cardinalities:
      self.clean_up_executor(cardinalities)
    self._cardinalities.clear()


_TRANSFORMS = dict(
  transform_args=tensorflow_computation.transform_args,
  transform_result=tensorflow_computation.transform_result,
)


def worker_context(
  worker,
  *,
  secure_aggregation: bool = False,
  factory: WorkerExecutorFactory | None = None,
  optimize_for_cpu: bool = False,
):
  """A synchronous context that runs every computation on one worker (through `factory` when given).

  With `optimize_for_cpu` (a worker without accelerators), computations are compiled by
  `compilation.compile_for_cpu`; otherwise by TFF's native compiler.
  """
  return sync_execution_context.SyncExecutionContext(
    executor_fn=factory or WorkerExecutorFactory(worker),
    compiler_fn=_compiler(secure_aggregation=secure_aggregation, optimize_for_cpu=optimize_for_cpu),
    **_TRANSFORMS,
  )


def workers_context(
  workers, *, parts: int = 1, factories: list | None = None, optimize_for_cpu: bool = False
):
  """A synchronous context that splits each computation's clients across `workers`, `parts` parts each.

  TFF's `MergeableCompExecutionContext`: each part's clients run and are
  aggregated on a worker, then the parts' aggregates merge (summation order
  differs from one part, nothing else). With more parts than workers, a
  worker runs its parts one after another and holds one part's client
  results at a time, which bounds a large cohort's memory.
  """
  factories = factories or [WorkerExecutorFactory(worker) for worker in workers]
  async_contexts = [
    async_execution_context.AsyncExecutionContext(
      executor_fn=factory,
      compiler_fn=_compiler(secure_aggregation=False, optimize_for_cpu=optimize_for_cpu),
      **_TRANSFORMS,
    )
    for factory in factories
  ]
  return mergeable_comp_execution_context.MergeableCompExecutionContext(
    async_contexts=async_contexts,
    compiler_fn=mergeable_comp_compiler.compile_to_mergeable_comp_form,
    num_subrounds=len(workers) * parts,
    **_TRANSFORMS,
  )
