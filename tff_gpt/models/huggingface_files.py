"""Hugging Face GPT-2 directories and PEFT adapters on disk: read for `--preset`, written by the export.

A directory holds `config.json`, `model.safetensors` (or `pytorch_model.bin`,
read by `torch_bin`), and the tokenizer as `vocab.json` plus `merges.txt` (or
`tokenizer.json`). The layout mapping itself is `huggingface.py`.

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

from tff_gpt.models import torch_bin
from tff_gpt.models.huggingface import (
  CONFIG_FILE,
  END_OF_TEXT,
  PEFT_CONFIG_FILE,
  PEFT_WEIGHTS_FILE,
  PYTORCH_FILE,
  SAFETENSORS_FILE,
  CheckpointError,
  backbone_config,
  from_keras,
  hf_config,
)


def read_config(path: str) -> dict:
  source = os.path.join(path, CONFIG_FILE)
  try:
    with open(source) as f:
      return backbone_config(json.load(f), source)
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(
      f"{source} cannot be read as JSON ({e}); it should be GPT2Config's config.json."
    ) from e


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
      return torch_bin.read(pytorch_file)
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


def classifier_config(config: dict, *, classes: list[str], pad_id: int) -> dict:
  """`hf_config` of a sequence classifier: `GPT2ForSequenceClassification` over `classes`, pooling the
  last token that is not `pad_id`."""
  return {
    "architectures": ["GPT2ForSequenceClassification"],
    "id2label": {str(i): c for i, c in enumerate(classes)},
    "label2id": {c: i for i, c in enumerate(classes)},
    "pad_token_id": pad_id,
  }


def write_dir(
  out_dir: str,
  values: dict[str, np.ndarray],
  config: dict,
  *,
  vocabulary: dict | None,
  merges,
  head: dict | None = None,
) -> None:
  """Writes a directory `GPT2LMHeadModel.from_pretrained` (and, with BPE, `AutoTokenizer`) loads.

  With `head` (`{"kernel": [hidden, classes], "classes", "pad_id"}`), the directory is a
  `GPT2ForSequenceClassification` (`score.weight` is the kernel transposed).
  """
  from safetensors.numpy import save_file

  os.makedirs(out_dir, exist_ok=True)
  eos = vocabulary.get(END_OF_TEXT) if vocabulary else None
  hf = hf_config(config, eos_id=eos)
  tensors = from_keras(values, config)
  if head is not None:
    hf.update(classifier_config(config, classes=head["classes"], pad_id=head["pad_id"]))
    tensors["score.weight"] = np.ascontiguousarray(np.asarray(head["kernel"], np.float32).T)
  with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
    json.dump(hf, f, indent=2)
  save_file(tensors, os.path.join(out_dir, SAFETENSORS_FILE), metadata={"format": "pt"})
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
