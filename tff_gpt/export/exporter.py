"""Writes the global model in a form Colab can load: no TFF, no Keras 2 needed.

`export_model` writes config.json, the tokenizer's assets, heldout.jsonl
(optional), a TF SavedModel from (token_ids, padding_mask) to logits, and
`tff_gpt_export.py` (`portable.py`), the notebook's loader, which reads the
weights from keras_hub/. Each format is there because someone loads it
(EXPORT_README.md, copied in as README.md, says who):

  keras_hub/    keras_hub.models.GPT2CausalLM.from_preset("export/keras_hub")
  huggingface/  transformers.GPT2LMHeadModel.from_pretrained("export/huggingface")
                (a classifier: GPT2ForSequenceClassification, labels named)
  peft/         with LoRA: the adapters in PEFT's layout, and peft/base/ the
                model they adapt (PeftModel.from_pretrained(base, "export/peft"));
                not for a classifier, whose huggingface/ holds the adapters folded in
  classifier_head.npy  a classifier's head kernel [hidden, classes] (config.json's
                "classifier" names the classes); keras_hub/ holds its backbone

With the character or word tokenizer, keras_hub/ and huggingface/ hold the
model only: neither library has those tokenizers (use tokenizer.json).
"""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from tff_gpt.data import pairs, tokenizers
from tff_gpt.export import portable
from tff_gpt.models import (
  adapters,
  checkpoints,
  gpt2_lm,
  huggingface_files,
  presets,
  registry,
  tff_model,
  trainable,
)

EXPORT_DIR = "export"
FORMAT = "tff_gpt.export/1"
TRAINED_SUBSET_FILE = "trained_subset.npz"
KERAS_HUB_DIR, HUGGING_FACE_DIR, PEFT_DIR = "keras_hub", "huggingface", "peft"
HEAD_FILE = "classifier_head.npy"


def _write_ecosystems(
  stage: str, model: tf.keras.Model, model_config: dict, tokenizer, lora: dict | None, head: dict | None
):
  """keras_hub/, huggingface/ and (with LoRA, no head) peft/ beside the portable export."""
  backbone = gpt2_lm.backbone_of(model)
  keras_tokenizer = getattr(tokenizer, "keras_tokenizer", None)
  bpe = {"vocabulary": None, "merges": None}
  if keras_tokenizer is not None:
    bpe = {"vocabulary": keras_tokenizer.vocabulary, "merges": list(keras_tokenizer.merges)}
  checkpoints.write_keras_hub(backbone, keras_tokenizer, os.path.join(stage, KERAS_HUB_DIR))
  values = {key: w.numpy() for key, w in trainable.named_weights(backbone).items()}
  huggingface_files.write_dir(os.path.join(stage, HUGGING_FACE_DIR), values, model_config, **bpe, head=head)
  if lora and head is None:
    peft_dir = os.path.join(stage, PEFT_DIR)
    huggingface_files.write_dir(os.path.join(peft_dir, "base"), lora["base"], model_config, **bpe)
    huggingface_files.write_peft(
      peft_dir, lora["adapters"], model_config, rank=lora["rank"], alpha=lora["alpha"], base="base"
    )


def _write_subset(stage: str, trained_subset: dict, trainable_info: dict | None) -> dict:
  """The trained subset alone as trained_subset.npz; what config.json says of it."""
  np.savez(os.path.join(stage, TRAINED_SUBSET_FILE), **trained_subset)
  parameters = int(sum(v.size for v in trained_subset.values()))
  return {"file": TRAINED_SUBSET_FILE, "parameters": parameters, **(trainable_info or {})}


def _write_head(stage: str, model: tf.keras.Model, config: dict, classes, pad_id: int) -> dict | None:
  """A classifier's head as classifier_head.npy, named in `config`; returns what huggingface/ needs."""
  kernels = gpt2_lm.head_variables(model)
  if not kernels:
    return None
  kernel = kernels[0].numpy()
  if not classes or len(classes) != kernel.shape[1]:
    raise ValueError(f"A classifier of {kernel.shape[1]} classes exports with their names, not {classes}.")
  np.save(os.path.join(stage, HEAD_FILE), kernel)
  config["classifier"] = {"classes": list(classes), "head": HEAD_FILE, "reads": "the last non-padding token"}
  return {"kernel": kernel, "classes": list(classes), "pad_id": int(pad_id)}


def _write_tokenizer(tokenizer, out_dir: str) -> dict:
  if isinstance(tokenizer, tokenizers.CharTokenizer | tokenizers.WordTokenizer):
    spec = {
      "vocabulary": tokenizer.vocabulary,
      "pad_id": tokenizer.pad_id,
      "oov_id": tokenizer.oov_id,
      "bos_id": tokenizer.bos_id,
      "eos_id": tokenizer.eos_id,
    }
    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
      json.dump(spec, f)
    return {"name": tokenizer.name, "vocabulary_size": tokenizer.vocabulary_size}
  keras_tokenizer = tokenizer.keras_tokenizer
  with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(keras_tokenizer.vocabulary, f, ensure_ascii=False)
  with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(keras_tokenizer.merges) + "\n")
  return {"name": "bpe", "vocabulary_size": tokenizer.vocabulary_size}


def _save_logits_model(model: tf.keras.Model, path: str) -> None:
  spec = tf.TensorSpec([None, None], tf.int32)

  class LogitsModule(tf.Module):
    def __init__(self):
      super().__init__()
      self.model = model

    @tf.function(input_signature=[spec, spec])
    def logits(self, token_ids, padding_mask):
      return {"logits": self.model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)}

  module = LogitsModule()
  with presets.saving_quietly():
    tf.saved_model.save(module, path, signatures={"serving_default": module.logits})


def _write_config_and_heldout(stage: str, config: dict, heldout: dict[str, list[str]] | None) -> None:
  with open(os.path.join(stage, "config.json"), "w") as f:
    json.dump(config, f, indent=1, sort_keys=True)
  if heldout:
    with open(os.path.join(stage, "heldout.jsonl"), "w", encoding="utf-8") as f:
      for client, texts in heldout.items():
        for text in texts:
          row = {"client_id": client, "text": text}
          if "examples" in config:  # Prompt and response pairs.
            prompt, response = pairs.split(text)
            row = {"client_id": client, "prompt": prompt, "response": response}
          f.write(json.dumps(row, ensure_ascii=False) + "\n")


def export_model(
  out_dir: str,
  *,
  model_config: dict,
  model: tf.keras.Model,
  tokenizer,
  sequence_length: int,
  heldout: dict[str, list[str]] | None = None,
  run_info: dict | None = None,
  trained_subset: dict[str, np.ndarray] | None = None,
  trainable_info: dict | None = None,
  lora: dict | None = None,
  examples: dict | None = None,
  classes: list[str] | None = None,
) -> str:
  """Writes a portable export of a GPT-2 model to `out_dir` (replaced atomically); returns `out_dir`.

  Args:
    model_config: `GPT2Backbone` arguments.
    model: The whole plain GPT-2 LM (adapters already folded in, see
      `tff_model.merged_model`).
    tokenizer: The run's `CharTokenizer`, `WordTokenizer` or `BPETokenizer`.
    sequence_length: The training sequence length (the evaluation windows).
    heldout: Optional `{client_id: [text, ...]}` written as heldout.jsonl.
    run_info: Extra facts stored in config.json (run name, round, ...).
    trained_subset: The weights that trained, by path, when only a subset
      did (e.g. LoRA adapters); written alone as trained_subset.npz.
    trainable_info: How they trained (`--trainable`, LoRA alpha and
      targets), stored in config.json beside the file's name.
    lora: With LoRA adapters, `{"base": weights by path without adapters,
      "adapters": lora_a/lora_b by path, "rank", "alpha"}`, written as peft/.
    examples: Runs on pairs: `{"kind", "separator"}` (heldout.jsonl: prompt, response).
    classes: A classifier's class words (a model with a head needs them): written with its head.
  """
  if not registry.kind_of(model_config).is_gpt2:
    raise ValueError(f"Only GPT-2 models export to keras_hub, not {model_config['architecture']!r}.")
  os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
  stage = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(os.path.abspath(out_dir)))
  config = {
    "format": FORMAT,
    "architecture": "gpt2",
    "backbone": model_config,
    "tokenizer": _write_tokenizer(tokenizer, stage),
    "sequence_length": sequence_length,
    "run": run_info or {},
    **({"examples": examples} if examples else {}),
  }
  if trained_subset:
    config["trained_subset"] = _write_subset(stage, trained_subset, trainable_info)
  head = _write_head(stage, model, config, classes, tokenizer.pad_id)
  _write_config_and_heldout(stage, config, heldout)
  _save_logits_model(model, os.path.join(stage, "saved_model"))
  _write_ecosystems(stage, model, model_config, tokenizer, lora, head)
  shutil.copy(portable.__file__, os.path.join(stage, "tff_gpt_export.py"))
  shutil.copy(os.path.join(os.path.dirname(__file__), "EXPORT_README.md"), os.path.join(stage, "README.md"))
  shutil.rmtree(out_dir, ignore_errors=True)
  os.replace(stage, out_dir)
  return out_dir


def export_run(task, model_weights, round_num: int, out_dir: str | None = None) -> str:
  """Exports the model of a run's `training.task.FederatedTask` into `results/<name>/export` (or `out_dir`).

  The export holds the whole model, adapters folded in; with a trained
  subset, trained_subset.npz also holds that subset alone.
  """
  c = task.config
  heldout = {cid: task.test_data.texts[cid] for cid in task.eval_client_ids}
  model = task.keras_model(model_weights, merged=False)
  subset = lora = None
  mode = trainable.parse(c.trainable)
  if mode.is_subset:
    backbone = gpt2_lm.backbone_of(model)
    subset = trainable.trained_values(backbone, trainable.trained_variables(backbone, c.trainable))
  trainable_info = {"trainable": c.trainable}
  if mode.is_lora:
    trainable_info.update(lora_alpha=c.lora_alpha, lora_targets=list(adapters.TARGETS))
    named = trainable.named_weights(backbone)
    is_adapter = lambda key: key.endswith(("/lora_a", "/lora_b"))  # noqa: E731 (FFA-LoRA: A is frozen)
    lora = {
      "base": {k: w.numpy() for k, w in named.items() if not is_adapter(k)},
      "adapters": {k: w.numpy() for k, w in named.items() if is_adapter(k)},
      "rank": mode.value,
      "alpha": c.lora_alpha,
    }
  return export_model(
    out_dir or os.path.join(task.dirs.results, EXPORT_DIR),
    model_config=task.model_config,
    model=tff_model.merged_model(model, task.model_config),
    tokenizer=task.tokenizer,
    sequence_length=c.sequence_length,
    heldout=heldout,
    run_info={"experiment_name": c.experiment_name, "round": round_num},
    trained_subset=subset,
    trainable_info=trainable_info,
    lora=lora,
    examples=None
    if c.examples == "text"
    else {"kind": c.examples, "separator": c.example_format().separator},
    classes=c.class_words() if c.classify_with == "head" else None,
  )
