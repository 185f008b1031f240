"""GPT-2 between Hugging Face's layout and keras-nlp's `GPT2Backbone`, in numpy.

A Hugging Face GPT-2 directory holds `config.json` (`model_type: gpt2`),
`model.safetensors` or `pytorch_model.bin`, and the tokenizer as `vocab.json`
plus `merges.txt` (or `tokenizer.json`). Weights here are keyed the way
`trainable.named_weights` keys a backbone's ("transformer_layer_0/
self_attention/query/kernel"); the mapping is the one keras-hub's own
converter uses (`keras_hub/src/utils/transformers/convert_gpt2.py`): Hugging
Face's `Conv1D` kernels are already `[in, out]`, and `c_attn` holds query, key
and value side by side.

`pytorch_model.bin` is read without PyTorch: it is a zip of a pickle whose
tensors point at raw storages, and `_TorchUnpickler` accepts only the few
classes such a file uses, so a file that asks for anything else is refused
rather than run.

LoRA adapters on query and value leave as one PEFT adapter on `c_attn` of
rank 2R: A stacks both down-projections, B places each up-projection in its
block of c_attn's output (key's block is zero), and `lora_alpha` is doubled so
that PEFT's scale `lora_alpha / r` equals ours.
"""

import json
import os
import pickle
import zipfile

import numpy as np

from tff_gpt import errors

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
PYTORCH_FILE = "pytorch_model.bin"
PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
END_OF_TEXT = "<|endoftext|>"
# Activations equal to keras-nlp's GPT-2 GELU (tanh approximation).
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


class CheckpointError(errors.UserInputError):
  """A pretrained checkpoint that cannot be used; the message names the file and the fix."""


def backbone_config(hf_config: dict, source: str = "config.json") -> dict:
  """The `GPT2Backbone` arguments of a Hugging Face GPT-2 config, refusing other models."""
  model_type = hf_config.get("model_type")
  if model_type != "gpt2":
    architectures = hf_config.get("architectures")
    raise CheckpointError(
      f"{source}: model_type {model_type!r} ({architectures}) is not GPT-2; "
      "pass a GPT-2 checkpoint (model_type 'gpt2', GPT2LMHeadModel)."
    )
  unsupported = {
    "activation_function": (hf_config.get("activation_function", "gelu_new") in _TANH_GELU, "gelu_new"),
    "scale_attn_by_inverse_layer_idx": (not hf_config.get("scale_attn_by_inverse_layer_idx", False), False),
    "scale_attn_weights": (hf_config.get("scale_attn_weights", True), True),
    "add_cross_attention": (not hf_config.get("add_cross_attention", False), False),
    "tie_word_embeddings": (hf_config.get("tie_word_embeddings", True), True),
    "layer_norm_epsilon": (abs(hf_config.get("layer_norm_epsilon", 1e-5) - 1e-5) < 1e-12, 1e-5),
  }
  for key, (ok, wanted) in unsupported.items():
    if not ok:
      raise CheckpointError(
        f"{source}: {key}={hf_config.get(key)!r}, but keras-nlp's GPT-2 has {key}={wanted!r}; "
        "this checkpoint cannot be loaded without changing its outputs."
      )
  try:
    hidden = int(hf_config["n_embd"])
    return {
      "vocabulary_size": int(hf_config["vocab_size"]),
      "num_layers": int(hf_config["n_layer"]),
      "num_heads": int(hf_config["n_head"]),
      "hidden_dim": hidden,
      "intermediate_dim": int(hf_config.get("n_inner") or 4 * hidden),
      "dropout": float(hf_config.get("resid_pdrop", 0.1)),
      "max_sequence_length": int(hf_config["n_positions"]),
    }
  except (KeyError, TypeError, ValueError) as e:
    raise CheckpointError(f"{source}: missing or bad GPT-2 field {e}; expected GPT2Config's fields.") from e


def hf_config(config: dict, *, eos_id: int | None) -> dict:
  """A Hugging Face `GPT2Config` dict for `GPT2Backbone` arguments `config`."""
  return {
    "architectures": ["GPT2LMHeadModel"],
    "model_type": "gpt2",
    "vocab_size": config["vocabulary_size"],
    "n_positions": config["max_sequence_length"],
    "n_embd": config["hidden_dim"],
    "n_layer": config["num_layers"],
    "n_head": config["num_heads"],
    "n_inner": config["intermediate_dim"],
    "activation_function": "gelu_new",
    "resid_pdrop": config.get("dropout", 0.0),
    "embd_pdrop": config.get("dropout", 0.0),
    "attn_pdrop": config.get("dropout", 0.0),
    "layer_norm_epsilon": 1e-5,
    "initializer_range": 0.02,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "tie_word_embeddings": True,
    "bos_token_id": eos_id,
    "eos_token_id": eos_id,
  }


def _block_keys(i: int) -> dict[str, str]:
  """Our path suffix -> Hugging Face key, for the tensors that map one to one."""
  return {
    "self_attention_layer_norm/gamma": f"h.{i}.ln_1.weight",
    "self_attention_layer_norm/beta": f"h.{i}.ln_1.bias",
    "feedforward_layer_norm/gamma": f"h.{i}.ln_2.weight",
    "feedforward_layer_norm/beta": f"h.{i}.ln_2.bias",
    "feedforward_intermediate_dense/kernel": f"h.{i}.mlp.c_fc.weight",
    "feedforward_intermediate_dense/bias": f"h.{i}.mlp.c_fc.bias",
    "feedforward_output_dense/kernel": f"h.{i}.mlp.c_proj.weight",
    "feedforward_output_dense/bias": f"h.{i}.mlp.c_proj.bias",
    "self_attention/attention_output/bias": f"h.{i}.attn.c_proj.bias",
  }


_QKV = ("query", "key", "value")


def _expected_shapes(config: dict) -> dict[str, tuple]:
  h, n, inner = config["hidden_dim"], config["num_layers"], config["intermediate_dim"]
  shapes = {
    "wte.weight": (config["vocabulary_size"], h),
    "wpe.weight": (config["max_sequence_length"], h),
    "ln_f.weight": (h,),
    "ln_f.bias": (h,),
  }
  for i in range(n):
    shapes.update(
      {
        f"h.{i}.ln_1.weight": (h,),
        f"h.{i}.ln_1.bias": (h,),
        f"h.{i}.ln_2.weight": (h,),
        f"h.{i}.ln_2.bias": (h,),
        f"h.{i}.attn.c_attn.weight": (h, 3 * h),
        f"h.{i}.attn.c_attn.bias": (3 * h,),
        f"h.{i}.attn.c_proj.weight": (h, h),
        f"h.{i}.attn.c_proj.bias": (h,),
        f"h.{i}.mlp.c_fc.weight": (h, inner),
        f"h.{i}.mlp.c_fc.bias": (inner,),
        f"h.{i}.mlp.c_proj.weight": (inner, h),
        f"h.{i}.mlp.c_proj.bias": (h,),
      }
    )
  return shapes


def _canonical_state(state: dict[str, np.ndarray], config: dict, source: str) -> dict[str, np.ndarray]:
  """Strips the `transformer.` prefix and buffers, checks every tensor's presence and shape."""
  out = {}
  lm_head = None
  for key, value in state.items():
    key = key.removeprefix("transformer.")
    if key.endswith((".attn.bias", ".attn.masked_bias")):
      continue  # The causal-mask buffers older checkpoints carry.
    if key == "lm_head.weight":
      lm_head = value
      continue
    out[key] = value
  expected = _expected_shapes(config)
  missing = sorted(set(expected) - set(out))
  if missing:
    raise CheckpointError(f"{source} lacks GPT-2 tensors {missing[:4]}; is it a complete GPT2LMHeadModel?")
  unknown = sorted(set(out) - set(expected))
  if unknown:
    raise CheckpointError(f"{source} has tensors a GPT-2 of its config.json does not: {unknown[:4]}.")
  for key, shape in expected.items():
    if tuple(out[key].shape) != shape:
      raise CheckpointError(
        f"{source}: {key} has shape {tuple(out[key].shape)} but config.json implies {shape}; "
        "the weights and config.json do not belong together."
      )
  if lm_head is not None and not np.array_equal(lm_head, out["wte.weight"]):
    raise CheckpointError(
      f"{source}: lm_head.weight differs from wte.weight; keras-nlp's GPT-2 ties them, "
      "so an untied head cannot be loaded."
    )
  return out


def to_keras(state: dict[str, np.ndarray], config: dict, source: str = "checkpoint") -> dict[str, np.ndarray]:
  """Hugging Face GPT-2 tensors -> `GPT2Backbone` weights by path."""
  state = _canonical_state(state, config, source)
  h, heads = config["hidden_dim"], config["num_heads"]
  head_dim = h // heads
  out = {
    "token_embedding/embeddings": state["wte.weight"],
    "position_embedding/embeddings": state["wpe.weight"],
    "layer_norm/gamma": state["ln_f.weight"],
    "layer_norm/beta": state["ln_f.bias"],
  }
  for i in range(config["num_layers"]):
    block = f"transformer_layer_{i}"
    for ours, theirs in _block_keys(i).items():
      out[f"{block}/{ours}"] = state[theirs]
    kernel, bias = state[f"h.{i}.attn.c_attn.weight"], state[f"h.{i}.attn.c_attn.bias"]
    for j, name in enumerate(_QKV):
      out[f"{block}/self_attention/{name}/kernel"] = kernel[:, j * h : (j + 1) * h].reshape(
        h, heads, head_dim
      )
      out[f"{block}/self_attention/{name}/bias"] = bias[j * h : (j + 1) * h].reshape(heads, head_dim)
    out[f"{block}/self_attention/attention_output/kernel"] = state[f"h.{i}.attn.c_proj.weight"].reshape(
      heads, head_dim, h
    )
  return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def from_keras(values: dict[str, np.ndarray], config: dict) -> dict[str, np.ndarray]:
  """`GPT2Backbone` weights by path -> Hugging Face GPT-2 tensors (`transformer.` keys, tied head)."""
  h = config["hidden_dim"]
  state = {
    "wte.weight": values["token_embedding/embeddings"],
    "wpe.weight": values["position_embedding/embeddings"],
    "ln_f.weight": values["layer_norm/gamma"],
    "ln_f.bias": values["layer_norm/beta"],
  }
  for i in range(config["num_layers"]):
    block = f"transformer_layer_{i}"
    for ours, theirs in _block_keys(i).items():
      state[theirs] = values[f"{block}/{ours}"]
    attention = f"{block}/self_attention"
    state[f"h.{i}.attn.c_attn.weight"] = np.concatenate(
      [values[f"{attention}/{name}/kernel"].reshape(h, h) for name in _QKV], axis=1
    )
    state[f"h.{i}.attn.c_attn.bias"] = np.concatenate(
      [values[f"{attention}/{name}/bias"].reshape(h) for name in _QKV]
    )
    state[f"h.{i}.attn.c_proj.weight"] = values[f"{attention}/attention_output/kernel"].reshape(h, h)
  return {f"transformer.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


# --- reading and writing directories -----------------------------------------------------------


def is_hf_dir(path: str) -> bool:
  config = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(config):
    return False
  try:
    with open(config) as f:
      return "model_type" in json.load(f)
  except (OSError, ValueError):
    return False


def read_config(path: str) -> dict:
  source = os.path.join(path, CONFIG_FILE)
  try:
    with open(source) as f:
      return backbone_config(json.load(f), source)
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(
      f"{source} cannot be read as JSON ({e}); it should be GPT2Config's config.json."
    ) from e


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


def read_pytorch_bin(path: str) -> dict[str, np.ndarray]:
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


def read_weights(path: str) -> dict[str, np.ndarray]:
  """The tensors of a Hugging Face directory: `model.safetensors`, else `pytorch_model.bin`."""
  safetensors_file = os.path.join(path, SAFETENSORS_FILE)
  if os.path.isfile(safetensors_file):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
      return load_file(safetensors_file)
    except (SafetensorError, OSError, ValueError) as e:
      raise CheckpointError(
        f"{safetensors_file} cannot be read ({e}); the file is damaged or incomplete."
      ) from e
  pytorch_file = os.path.join(path, PYTORCH_FILE)
  if os.path.isfile(pytorch_file):
    try:
      return read_pytorch_bin(pytorch_file)
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
      if isinstance(e, CheckpointError):
        raise
      raise CheckpointError(f"{pytorch_file} cannot be read ({e}); the file is damaged or incomplete.") from e
  sharded = [f for f in os.listdir(path) if f.endswith(".index.json")]
  hint = " Sharded checkpoints are not supported: save with a larger max_shard_size." if sharded else ""
  raise CheckpointError(f"{path} has neither {SAFETENSORS_FILE} nor {PYTORCH_FILE}.{hint}")


def read_tokenizer(path: str) -> tuple[dict, list[str]]:
  """GPT-2's BPE `(vocabulary, merges)` from `vocab.json` + `merges.txt`, else `tokenizer.json`."""
  vocab_file, merges_file = os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt")
  fast_file = os.path.join(path, "tokenizer.json")
  try:
    if os.path.isfile(vocab_file) and os.path.isfile(merges_file):
      with open(vocab_file, encoding="utf-8") as f:
        vocabulary = json.load(f)
      with open(merges_file, encoding="utf-8") as f:
        merges = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
    elif os.path.isfile(fast_file):
      with open(fast_file, encoding="utf-8") as f:
        model = json.load(f)["model"]
      vocabulary = model["vocab"]
      merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    else:
      raise CheckpointError(
        f"{path} has no tokenizer: expected vocab.json and merges.txt (or tokenizer.json) beside "
        "config.json; copy them from the checkpoint's tokenizer."
      )
  except (OSError, ValueError, KeyError, TypeError) as e:
    if isinstance(e, CheckpointError):
      raise
    raise CheckpointError(f"{path}: the tokenizer files do not parse as GPT-2's BPE ({e}).") from e
  if END_OF_TEXT not in vocabulary:
    raise CheckpointError(f"{path}: the vocabulary lacks GPT-2's {END_OF_TEXT!r} token.")
  return vocabulary, merges


def write_dir(
  out_dir: str, values: dict[str, np.ndarray], config: dict, *, vocabulary: dict | None, merges
) -> None:
  """Writes a directory `GPT2LMHeadModel.from_pretrained` (and, with BPE, `AutoTokenizer`) loads."""
  from safetensors.numpy import save_file

  os.makedirs(out_dir, exist_ok=True)
  eos = vocabulary.get(END_OF_TEXT) if vocabulary else None
  with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
    json.dump(hf_config(config, eos_id=eos), f, indent=2)
  save_file(from_keras(values, config), os.path.join(out_dir, SAFETENSORS_FILE), metadata={"format": "pt"})
  if vocabulary is None:
    return
  with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(vocabulary, f, ensure_ascii=False)
  with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
  with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
    json.dump(
      {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": END_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "add_prefix_space": False,
        "model_max_length": config["max_sequence_length"],
      },
      f,
      indent=2,
    )


def write_peft(
  out_dir: str, adapters: dict[str, np.ndarray], config: dict, *, rank: int, alpha: float, base: str
) -> None:
  """Writes query/value LoRA adapters (keyed like `named_weights`) as one PEFT LoRA on `c_attn`.

  Args:
    adapters: "transformer_layer_{i}/self_attention/{query,value}/lora_{a,b}" ->
      A `[hidden, rank]`, B `[rank, hidden]`.
    rank, alpha: Our rank and alpha (scale `alpha / rank`).
    base: `base_model_name_or_path` to record (the base model's directory).
  """
  from safetensors.numpy import save_file

  h = config["hidden_dim"]
  targets = sorted({key.split("/")[-2] for key in adapters})
  if not set(targets) <= {"query", "value"}:
    raise ValueError(f"PEFT export supports adapters on query and value only, not {targets}.")
  tensors = {}
  for i in range(config["num_layers"]):
    a = np.zeros((2 * rank, h), np.float32)  # PEFT's lora_A.weight: [r, in].
    b = np.zeros((3 * h, 2 * rank), np.float32)  # PEFT's lora_B.weight: [out, r].
    for slot, (name, block) in enumerate((("query", 0), ("value", 2))):
      prefix = f"transformer_layer_{i}/self_attention/{name}"
      if f"{prefix}/lora_a" not in adapters:
        continue
      a[slot * rank : (slot + 1) * rank] = adapters[f"{prefix}/lora_a"].T
      b[block * h : (block + 1) * h, slot * rank : (slot + 1) * rank] = adapters[f"{prefix}/lora_b"].T
    module = f"base_model.model.transformer.h.{i}.attn.c_attn"
    tensors[f"{module}.lora_A.weight"] = a
    tensors[f"{module}.lora_B.weight"] = b
  os.makedirs(out_dir, exist_ok=True)
  save_file(tensors, os.path.join(out_dir, PEFT_WEIGHTS_FILE), metadata={"format": "pt"})
  peft_config = {
    "peft_type": "LORA",
    "task_type": "CAUSAL_LM",
    "base_model_name_or_path": base,
    "r": 2 * rank,
    "lora_alpha": 2 * alpha,
    "target_modules": ["c_attn"],
    "fan_in_fan_out": True,
    "lora_dropout": 0.0,
    "bias": "none",
    "inference_mode": True,
  }
  with open(os.path.join(out_dir, PEFT_CONFIG_FILE), "w") as f:
    json.dump(peft_config, f, indent=2)
