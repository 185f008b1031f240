"""GPT-2 between Hugging Face's layout and keras-nlp's `GPT2Backbone`, in numpy.

A Hugging Face GPT-2 directory holds `config.json` (`model_type: gpt2`),
`model.safetensors` or `pytorch_model.bin`, and the tokenizer as `vocab.json`
plus `merges.txt` (or `tokenizer.json`). Weights here are keyed the way
`trainable.named_weights` keys a backbone's ("transformer_layer_0/
self_attention/query/kernel"); the mapping is the one keras-hub's own
converter uses (`keras_hub/src/utils/transformers/convert_gpt2.py`): Hugging
Face's `Conv1D` kernels are already `[in, out]`, and `c_attn` holds query, key
and value side by side.

Reading and writing such directories (and PEFT adapters) is
`huggingface_files.py`; `pytorch_model.bin` without PyTorch is `torch_bin.py`.
"""

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
