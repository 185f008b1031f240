"""Frozen weights on local disk, read where the client computation runs.

Keras non-trainable weights are still TFF model weights: TFF keeps them in
its state, broadcasts them every round and checkpoints them. With
`--trainable` other than "all", the frozen part is instead written once per
run to `checkpoints/<name>/frozen_weights/` (a TensorFlow checkpoint bundle,
from the preset or the run's seeded initial weights), and the model that
`model_fn` builds takes each frozen variable's *initial value* from that file
(`RestoreV2` inside the client graph, through a `tf.variable_creator_scope`).
TFF's model then reports only the trained subset as its weights, so only that
travels and is aggregated.

Variables are matched by creation order, counting floating-point variables
only (Keras names differ between eager and graph mode, and Keras 2 creates
int64 random-generator state differently in each).

TFF's C++ worker runs the initializer at every call and clears each session's
resource container after it (`session_provider.cc`), so no variable survives
from one client to the next: each client reads the bundle again, from the
page cache after the first (BENCHMARKS.md measures it). The path is baked
into the computation, so it must exist on every host that runs clients.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from tff_gpt import errors

_PREFIX = "weights"
_META = "frozen.json"


class FrozenWeightsError(errors.UserInputError):
  """The frozen-weights file is missing, damaged, or not the model's."""


def _key(index: int) -> str:
  return f"frozen/{index:05d}"


@dataclasses.dataclass(frozen=True)
class Layout:
  """Which variables are frozen: creation index -> (shape, dtype name)."""

  specs: dict

  def nbytes(self) -> int:
    """Bytes of the frozen values."""
    return sum(
      int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for shape, dtype in self.specs.values()
    )

  def tensors(self) -> dict:
    return {_key(i): [list(shape), dtype] for i, (shape, dtype) in sorted(self.specs.items())}


def _is_float(kwargs) -> bool:
  dtype = kwargs.get("dtype")
  if dtype is None and isinstance(kwargs.get("initial_value"), tf.Tensor | tf.Variable | np.ndarray):
    dtype = kwargs["initial_value"].dtype
  return dtype is None or tf.as_dtype(dtype).is_floating


class CreationLog:
  """Numbers the floating-point variables created in `scope()`, in order.

  Args:
    reader: When given, variables whose index it holds take their initial
      value from its file instead of their initializer.
  """

  def __init__(self, reader: "Reader | None" = None):
    self.reader = reader
    self.variables: list[tf.Variable] = []

  def _create(self, next_creator, **kwargs):
    if not _is_float(kwargs):
      return next_creator(**kwargs)
    index = len(self.variables)
    if self.reader is not None and index in self.reader.layout.specs:
      kwargs["initial_value"] = lambda: self.reader.read(index)
    variable = next_creator(**kwargs)
    if not tf.executing_eagerly():
      # Keras 2 builds functional models in graph mode by evaluating tensors in
      # its own session, which first runs every variable initializer it has
      # not marked: that would read the frozen file (and copy the whole model)
      # in this process at every trace. TFF initializes the variables itself.
      variable._keras_initialized = True
    self.variables.append(variable)
    return variable

  @contextlib.contextmanager
  def scope(self):
    with tf.variable_creator_scope(self._create):
      yield self

  def layout(self, trained: list[tf.Variable]) -> Layout:
    """The frozen variables: every logged one that is not in `trained`."""
    trained_ids = {id(v) for v in trained}
    return Layout(
      {
        i: (tuple(int(d) for d in v.shape), v.dtype.name)
        for i, v in enumerate(self.variables)
        if id(v) not in trained_ids
      }
    )

  def frozen_values(self, layout: Layout) -> dict[int, np.ndarray]:
    return {i: self.variables[i].numpy() for i in layout.specs}


class Reader:
  """Reads frozen variables from a bundle written by `write`."""

  def __init__(self, directory: str, layout: Layout):
    self.prefix = os.path.join(os.path.abspath(directory), _PREFIX)
    self.layout = layout

  def read(self, index: int) -> tf.Tensor:
    shape, dtype = self.layout.specs[index]
    value = tf.raw_ops.RestoreV2(
      prefix=self.prefix, tensor_names=[_key(index)], shape_and_slices=[""], dtypes=[tf.as_dtype(dtype)]
    )[0]
    return tf.ensure_shape(value, shape)


def _digest(directory: str) -> str:
  sha = hashlib.sha256()
  for name in sorted(os.listdir(directory)):
    if name.startswith(_PREFIX):
      with open(os.path.join(directory, name), "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
          sha.update(block)
  return sha.hexdigest()


def write(directory: str, values: dict[int, np.ndarray], *, about: dict) -> None:
  """Writes the frozen values as a bundle in `directory`, replacing it atomically.

  Args:
    values: creation index -> value.
    about: Facts stored beside them (model, trainable mode, source).
  """
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  stage = tempfile.mkdtemp(prefix=".frozen-", dir=parent)
  try:
    indices = sorted(values)
    tf.raw_ops.SaveV2(
      prefix=os.path.join(stage, _PREFIX),
      tensor_names=[_key(i) for i in indices],
      shape_and_slices=[""] * len(indices),
      tensors=[tf.convert_to_tensor(values[i]) for i in indices],
    )
    meta = dict(
      about,
      tensors={_key(i): [list(values[i].shape), values[i].dtype.name] for i in indices},
      sha256=_digest(stage),
    )
    with open(os.path.join(stage, _META), "w") as f:
      json.dump(meta, f, indent=1)
    if os.path.exists(directory):
      shutil.rmtree(directory)
    os.replace(stage, directory)
  finally:
    shutil.rmtree(stage, ignore_errors=True)


def check(directory: str, layout: Layout, *, verify_digest: bool = True) -> None:
  """Fails unless `directory` holds the frozen weights `layout` describes, intact.

  Raises:
    FrozenWeightsError: naming the file, what is wrong and the fix.
  """
  meta_path = os.path.join(directory, _META)
  fix = (
    "The run's checkpoints need the frozen weights they were trained with: restore that directory, "
    "or start over with a new --experiment_name."
  )
  if not os.path.exists(meta_path):
    raise FrozenWeightsError(f"Frozen weights {directory} are missing. {fix}")
  with open(meta_path) as f:
    meta = json.load(f)
  want = layout.tensors()
  if meta.get("tensors") != want:
    have = meta.get("tensors") or {}
    wrong = sorted(set(have) ^ set(want)) or [k for k in want if have[k] != want[k]]
    raise FrozenWeightsError(
      f"Frozen weights {directory} do not match the model ({len(have)} tensors stored, {len(want)} "
      f"expected; first difference: {wrong[0]!r}). They were written for another model or --trainable. {fix}"
    )
  try:
    stored = tf.train.load_checkpoint(os.path.join(directory, _PREFIX)).get_variable_to_shape_map()
  except (tf.errors.OpError, ValueError) as e:
    raise FrozenWeightsError(f"Frozen weights {directory} cannot be read ({e}). {fix}") from None
  if {k: list(v) for k, v in stored.items()} != {k: s for k, (s, _) in want.items()}:
    raise FrozenWeightsError(f"Frozen weights {directory} hold other tensors than frozen.json lists. {fix}")
  if verify_digest and _digest(directory) != meta.get("sha256"):
    raise FrozenWeightsError(f"Frozen weights {directory} changed since they were written (checksum). {fix}")
