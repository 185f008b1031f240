"""`pytorch_model.bin` (torch's zip format) read into numpy arrays without PyTorch.

Such a file is a zip of a pickle whose tensors point at raw storages;
`_TorchUnpickler` accepts only the few classes a state dict uses, so a file
that asks for anything else is refused rather than run.
"""

import pickle
import zipfile

import numpy as np

from tff_gpt.models.huggingface import CheckpointError


class _Storage:
  def __init__(self, dtype):
    self.dtype = dtype


_STORAGES = {
  "FloatStorage": np.float32,
  "DoubleStorage": np.float64,
  "HalfStorage": np.float16,
  "LongStorage": np.int64,
  "IntStorage": np.int32,
  "BoolStorage": np.bool_,
  "ByteStorage": np.uint8,
}


def _rebuild_tensor(storage, offset, size, stride, *_):
  itemsize = storage.dtype.itemsize
  if not size:
    return storage[offset : offset + 1].reshape(()).copy()
  return np.lib.stride_tricks.as_strided(
    storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
  ).copy()


class _TorchUnpickler(pickle.Unpickler):
  """Unpickles a `torch.save`d state dict into numpy arrays, refusing any other class."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, source: str):
    super().__init__(file)
    self._archive, self._prefix, self._source = archive, prefix, source

  def find_class(self, module, name):
    if module == "collections" and name == "OrderedDict":
      import collections

      return collections.OrderedDict
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return lambda tensor, *_: tensor
    if module == "torch" and name in _STORAGES:
      return _Storage(np.dtype(_STORAGES[name]))
    raise CheckpointError(
      f"{self._source} asks to load {module}.{name}, which a GPT-2 state dict does not need; "
      "refusing it. Convert the checkpoint to model.safetensors."
    )

  def persistent_load(self, saved_id):
    _, storage_type, key, _location, _numel = saved_id
    raw = self._archive.read(f"{self._prefix}/data/{key}")
    return np.frombuffer(raw, dtype=storage_type.dtype)


def read(path: str) -> dict[str, np.ndarray]:
  """The tensors of a `pytorch_model.bin` (torch's zip format) as numpy arrays, without PyTorch."""
  if not zipfile.is_zipfile(path):
    raise CheckpointError(
      f"{path} is not in PyTorch's zip format (saved before PyTorch 1.6?); "
      "re-save it with `save_pretrained` (model.safetensors)."
    )
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if not pickles:
      raise CheckpointError(f"{path} has no data.pkl; it is not a torch.save file.")
    prefix = pickles[0][: -len("/data.pkl")]
    with archive.open(pickles[0]) as f:
      state = _TorchUnpickler(f, archive, prefix, path).load()
  if not isinstance(state, dict):
    raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict.")
  return dict(state)
