"""Pretrained GPT-2 in any of three layouts, in and out.

`--preset` takes a directory in any of:

- keras-nlp's Keras 2 layout (what `presets.save_preset` writes): used as is;
- keras-hub's Keras 3 layout (what `keras_hub.models.GPT2CausalLM.from_preset(
  "gpt2_base_en")` downloads and `save_to_preset` writes);
- Hugging Face's (`config.json` with `model_type: gpt2`, `model.safetensors`
  or `pytorch_model.bin`, `vocab.json` + `merges.txt`).

The two foreign layouts are converted once into a keras-nlp preset directory
(`resolve`), so the rest of the pipeline reads one layout. keras-hub's layout
is keras-nlp's with three differences, all handled here: `config.json` and
`tokenizer.json` name `keras_hub` classes, the weights file calls the
attention projections `query_dense` where Keras 2 has `_query_dense`, and the
tokenizer's config carries Keras 3 fields. Everything else (the
`model.weights.h5` tree, `assets/tokenizer/`) is the same, so weights move as
h5 datasets, path for path, checked against the tree Keras 2 itself writes.

Out: `write_keras_hub` and `huggingface_files.write_dir` write a trained backbone
where `keras_hub.models.GPT2CausalLM.from_preset(dir)` and
`transformers.GPT2LMHeadModel.from_pretrained(dir)` load it with one call.
"""

import datetime
import hashlib
import json
import os
import shutil
import tempfile

import h5py
import numpy as np

from tff_gpt.models import char_lstm, gpt2_lm, huggingface, huggingface_files, presets
from tff_gpt.models import trainable as trainable_lib
from tff_gpt.models.huggingface import CheckpointError

KERAS_NLP, KERAS_HUB, HUGGING_FACE, HUB_NAME = "keras_nlp", "keras_hub", "huggingface", "hub_name"
WEIGHTS_FILE = "model.weights.h5"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_ASSETS = os.path.join("assets", "tokenizer")
SOURCE_FILE = "source.json"
BACKBONE_KEYS = gpt2_lm.BACKBONE_KEYS
# Keras 3's MultiHeadAttention names its projections without the underscore.
_K3_NAMES = {f"/_{p}_dense/": f"/{p}_dense/" for p in ("query", "key", "value", "output")}
_HUB_MODULE = "keras_hub.src.models.gpt2"


def _to_keras3_path(path: str) -> str:
  for k2, k3 in _K3_NAMES.items():
    path = path.replace(k2, k3)
  return path


def _read_json(path: str, what: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise CheckpointError(f"{path} is missing; {what}.") from e
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise CheckpointError(f"{path} cannot be read as JSON ({e}); {what}.") from e


def detect(path: str) -> str:
  """Which layout `path` holds: KERAS_NLP, KERAS_HUB, HUGGING_FACE, or HUB_NAME for a preset name.

  Raises:
    CheckpointError: `path` does not exist, has no config.json, or is not GPT-2.
  """
  if not os.path.exists(path):
    if path.replace("_", "").isalnum() and path == path.lower():
      return HUB_NAME  # e.g. "gpt2_base_en": keras-nlp downloads it (needs network).
    raise CheckpointError(
      f"--preset {path!r} does not exist. Pass a keras-nlp or keras-hub preset directory, or a "
      "Hugging Face GPT-2 directory (config.json, model.safetensors, vocab.json, merges.txt)."
    )
  if not os.path.isdir(path):
    raise CheckpointError(f"--preset {path!r} is a file; pass the directory that holds config.json.")
  config = _read_json(
    os.path.join(path, CONFIG_FILE), "a preset or Hugging Face directory starts with its config.json"
  )
  if "model_type" in config:
    huggingface.backbone_config(config, os.path.join(path, CONFIG_FILE))  # Refuses other models.
    return HUGGING_FACE
  if config.get("class_name") != "GPT2Backbone":
    raise CheckpointError(
      f"{os.path.join(path, CONFIG_FILE)} describes {config.get('class_name')!r}, not GPT-2; "
      "pass a GPT2Backbone preset (keras_hub/keras_nlp GPT-2)."
    )
  hub = "keras_hub" in str(config.get("registered_name", "")) or "keras_hub" in str(config.get("module", ""))
  return KERAS_HUB if hub else KERAS_NLP


def backbone_config(path: str) -> dict:
  """The `GPT2Backbone` arguments of a checkpoint in any layout (reads config.json only)."""
  kind = detect(path)
  if kind == HUGGING_FACE:
    return huggingface_files.read_config(path)
  if kind == HUB_NAME:
    return gpt2_lm.preset_config(path)
  config = _read_json(os.path.join(path, CONFIG_FILE), "a preset starts with its config.json")["config"]
  missing = [k for k in BACKBONE_KEYS if k not in config]
  if missing:
    raise CheckpointError(f"{os.path.join(path, CONFIG_FILE)} lacks GPT2Backbone arguments {missing}.")
  return {k: config[k] for k in BACKBONE_KEYS}


def _keras_tokenizer(vocabulary: dict, merges: list[str], config: dict, source: str):
  import keras_nlp

  if len(vocabulary) != config["vocabulary_size"]:
    raise CheckpointError(
      f"{source}: the tokenizer has {len(vocabulary)} tokens but the model's vocabulary_size is "
      f"{config['vocabulary_size']}; use the tokenizer saved with these weights."
    )
  return keras_nlp.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)


def _preset_tokenizer(path: str, config: dict):
  assets = os.path.join(path, TOKENIZER_ASSETS)
  if not os.path.exists(os.path.join(path, TOKENIZER_FILE)):
    return None
  vocabulary = _read_json(os.path.join(assets, "vocabulary.json"), "the preset's tokenizer needs it")
  try:
    with open(os.path.join(assets, "merges.txt"), encoding="utf-8") as f:
      merges = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
  except OSError as e:
    raise CheckpointError(
      f"{assets}/merges.txt cannot be read ({e}); the preset's tokenizer needs it."
    ) from e
  return _keras_tokenizer(vocabulary, merges, config, assets)


def _copy_h5_weights(source_file: str, target_file: str) -> None:
  """Fills the tree Keras 2 wrote at `target_file` from `source_file`, path for path, checking shapes."""
  try:
    source = h5py.File(source_file, "r")
  except (OSError, ValueError) as e:
    raise CheckpointError(
      f"{source_file} cannot be read as HDF5 ({e}); the file is damaged or incomplete."
    ) from e
  with source, h5py.File(target_file, "r+") as target:
    wanted = {}
    target.visititems(lambda name, obj: wanted.update({name: obj}) if isinstance(obj, h5py.Dataset) else None)
    found = {}
    source.visititems(lambda name, obj: found.update({name: obj}) if isinstance(obj, h5py.Dataset) else None)
    for name, dataset in wanted.items():
      theirs = found.pop(_to_keras3_path(name), None) or found.pop(name, None)
      if theirs is None:
        raise CheckpointError(
          f"{source_file} lacks weight {_to_keras3_path(name)!r}; is it a complete preset?"
        )
      if theirs.shape != dataset.shape:
        raise CheckpointError(
          f"{source_file}: {_to_keras3_path(name)} has shape {theirs.shape} but config.json implies "
          f"{dataset.shape}; the weights and config.json do not belong together."
        )
      dataset[...] = theirs[...]
    if found:
      raise CheckpointError(
        f"{source_file} has weights a GPT-2 of its config.json does not: {sorted(found)[:4]}."
      )


def convert(source: str, out_dir: str) -> str:
  """Writes the checkpoint at `source` (any layout) as a keras-nlp preset directory `out_dir`.

  Every tensor's presence and shape, and the tokenizer's size, are checked
  before anything is written; `out_dir` is replaced atomically.
  """
  kind = detect(source)
  if kind == HUB_NAME:
    raise CheckpointError(f"{source!r} is a hub name; download it first (needs network).")
  config = backbone_config(source)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  stage = tempfile.mkdtemp(prefix=".preset-", dir=parent)
  try:
    if kind == HUGGING_FACE:
      values = huggingface.to_keras(huggingface_files.read_weights(source), config, source)
      tokenizer = _keras_tokenizer(*huggingface_files.read_tokenizer(source), config, source)
      backbone = gpt2_lm.new_backbone(config)
      for key, variable in trainable_lib.named_weights(backbone).items():
        variable.assign(values[key])
      presets.save_preset(backbone, tokenizer, stage)
    else:
      weights = os.path.join(source, WEIGHTS_FILE)
      if not os.path.isfile(weights):
        raise CheckpointError(f"{weights} is missing; a preset keeps its weights there.")
      tokenizer = _preset_tokenizer(source, config)
      presets.save_preset(gpt2_lm.new_backbone(config), tokenizer, stage)
      _copy_h5_weights(weights, os.path.join(stage, WEIGHTS_FILE))
    with open(os.path.join(stage, SOURCE_FILE), "w") as f:
      json.dump({"source": os.path.abspath(source), "layout": kind, "fingerprint": fingerprint(source)}, f)
  except BaseException:
    shutil.rmtree(stage, ignore_errors=True)
    raise
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.replace(stage, out_dir)
  return out_dir


def fingerprint(path: str) -> str:
  """Names, sizes and modification times of a directory's files: changes when the checkpoint does."""
  digest = hashlib.sha256()
  for root, _, files in sorted(os.walk(path)):
    for name in sorted(files):
      stat = os.stat(os.path.join(root, name))
      digest.update(
        f"{os.path.relpath(os.path.join(root, name), path)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
      )
  return digest.hexdigest()


def resolve(source: str, work_dir: str) -> str:
  """A keras-nlp preset directory for `source`: itself, or its conversion cached in `work_dir`.

  A keras-nlp preset is checked (files present, weights matching config.json)
  and used in place. keras-hub and Hugging Face checkpoints are converted into
  `work_dir` once and reconverted only when `source`'s files change.
  """
  if char_lstm.is_preset(source):  # The LSTM's own pretrained weights (`char_lstm.save_preset`).
    return source
  kind = detect(source)
  if kind == HUB_NAME:
    return source
  if kind == KERAS_NLP:
    config = backbone_config(source)
    weights = os.path.join(source, WEIGHTS_FILE)
    if not os.path.isfile(weights):
      raise CheckpointError(f"{weights} is missing; a preset keeps its weights there.")
    if _preset_tokenizer(source, config) is None:
      raise CheckpointError(
        f"{source} has no {TOKENIZER_FILE}; a preset for --preset must carry its tokenizer."
      )
    return source
  marker = os.path.join(work_dir, SOURCE_FILE)
  if os.path.exists(marker):
    with open(marker) as f:
      cached = json.load(f)
    if cached.get("source") == os.path.abspath(source) and cached.get("fingerprint") == fingerprint(source):
      return work_dir
  convert(source, work_dir)
  if not os.path.exists(os.path.join(work_dir, TOKENIZER_FILE)):
    raise CheckpointError(f"{source} has no tokenizer; a checkpoint for --preset must carry its tokenizer.")
  return work_dir


def write_keras_hub(backbone, tokenizer, out_dir: str) -> None:
  """Writes a keras-nlp backbone (and `GPT2Tokenizer`, or None) in keras-hub's Keras 3 preset layout."""
  presets.save_preset(backbone, tokenizer, out_dir)
  with h5py.File(os.path.join(out_dir, WEIGHTS_FILE), "r+") as f:
    names = []
    f.visit(names.append)
    for name in names:  # Only the projections' own groups are renamed; their parents stay.
      renamed = _to_keras3_path(f"/{name}/").strip("/")
      if renamed != name and renamed.rsplit("/", 1)[0] == name.rsplit("/", 1)[0]:
        f.move(name, renamed)
  config = {
    "module": f"{_HUB_MODULE}.gpt2_backbone",
    "class_name": "GPT2Backbone",
    "config": {
      "name": "gpt2_backbone",
      "trainable": True,
      **{k: backbone.get_config()[k] for k in BACKBONE_KEYS},
    },
    "registered_name": "keras_hub>GPT2Backbone",
  }
  with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
    json.dump(config, f, indent=2)
  metadata = {
    "keras_version": "3",
    "parameter_count": int(sum(np.prod(w.shape) for w in backbone.weights)),
    "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    "tasks": ["CausalLM"],
    "saved_by": "tff_gpt",
  }
  with open(os.path.join(out_dir, "metadata.json"), "w") as f:
    json.dump(metadata, f, indent=2)
  if tokenizer is not None:
    tokenizer_config = {
      "module": f"{_HUB_MODULE}.gpt2_tokenizer",
      "class_name": "GPT2Tokenizer",
      "config": {
        "name": "gpt2_tokenizer",
        "trainable": True,
        "dtype": "int32",
        "config_file": TOKENIZER_FILE,
        "sequence_length": None,
        "add_prefix_space": False,
        "unsplittable_tokens": [huggingface.END_OF_TEXT],
      },
      "registered_name": "keras_hub>GPT2Tokenizer",
    }
    with open(os.path.join(out_dir, TOKENIZER_FILE), "w") as f:
      json.dump(tokenizer_config, f, indent=2)
