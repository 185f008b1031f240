"""GPT-2 as the reference libraries see it; run in the Colab-like venv (tests/helpers.colab).

transformers (PyTorch), PEFT and keras-hub make and read checkpoints here, so
the project's conversions are checked against code nobody here wrote.

  make-hf OUT VOCAB MERGES PROBE [bin]   random GPT2LMHeadModel -> OUT (safetensors,
                                         or pytorch_model.bin), prints logits and ids
  make-keras-hub OUT VOCAB MERGES PROBE  random keras_hub GPT2CausalLM -> save_to_preset(OUT)
  load EXPORT PROBE                      one-call loads of an export's keras_hub/,
                                         huggingface/ and peft/; prints logits and ids
  load-classifier EXPORT PROBE           a classifier's export: huggingface/ as
                                         GPT2ForSequenceClassification, and tff_gpt_export's head

PROBE is an .npz with token_ids, padding_mask and `text`; results are written
to PROBE with a ".<name>.npz" suffix.
"""

import json
import os
import shutil
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402


def _probe(path):
  probe = np.load(path)
  return probe["token_ids"], probe["padding_mask"], str(probe["text"])


def _perturb_torch(model, seed):
  import torch

  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for parameter in model.parameters():  # Every tensor distinct, so a swapped mapping shows.
      parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))


def _hf_logits(model, token_ids, padding_mask):
  import torch

  with torch.no_grad():
    out = model(
      input_ids=torch.tensor(token_ids, dtype=torch.long), attention_mask=torch.tensor(padding_mask)
    )
  return out.logits.numpy()


def make_hf(out, vocab, merges, probe, fmt="safetensors"):
  import torch
  import transformers

  with open(vocab) as f:
    size = len(json.load(f))
  config = transformers.GPT2Config(
    vocab_size=size,
    n_positions=32,
    n_embd=16,
    n_layer=2,
    n_head=2,
    n_inner=32,
    bos_token_id=size - 1,
    eos_token_id=size - 1,
  )
  torch.manual_seed(0)
  model = transformers.GPT2LMHeadModel(config).eval()
  _perturb_torch(model, 1)
  model.tie_weights()
  model.save_pretrained(out)
  if fmt == "bin":
    torch.save(model.state_dict(), os.path.join(out, "pytorch_model.bin"))
    os.remove(os.path.join(out, "model.safetensors"))
  shutil.copy(vocab, os.path.join(out, "vocab.json"))
  shutil.copy(merges, os.path.join(out, "merges.txt"))
  token_ids, padding_mask, text = _probe(probe)
  ids = transformers.AutoTokenizer.from_pretrained(out)(text)["input_ids"]
  np.savez(probe + ".hf.npz", logits=_hf_logits(model, token_ids, padding_mask), ids=np.array(ids))


def make_keras_hub(out, vocab, merges, probe):
  import keras
  import keras_hub

  with open(vocab) as f:
    vocabulary = json.load(f)
  with open(merges) as f:
    merge_list = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
  keras.utils.set_random_seed(0)
  tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merge_list)
  backbone = keras_hub.models.GPT2Backbone(
    vocabulary_size=len(vocabulary),
    num_layers=2,
    num_heads=2,
    hidden_dim=16,
    intermediate_dim=32,
    max_sequence_length=32,
  )
  rng = np.random.default_rng(1)
  for w in backbone.weights:
    w.assign(w.numpy() + 0.2 * rng.standard_normal(w.shape).astype(np.float32))
  preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer=tokenizer, sequence_length=16)
  keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor).save_to_preset(out)
  token_ids, padding_mask, text = _probe(probe)
  logits = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)(
    {"token_ids": token_ids, "padding_mask": padding_mask}
  )
  np.savez(probe + ".keras_hub.npz", logits=np.asarray(logits), ids=np.asarray(tokenizer(text)))


def load(export, probe):
  # PyTorch's side first: with PyPI's CUDA torch on Python 3.12, importing peft's triton after TensorFlow
  # has loaded its libraries crashes the interpreter (segmentation fault in triton's extension).
  # isort: off
  import peft
  import transformers
  import keras_hub
  # isort: on

  token_ids, padding_mask, text = _probe(probe)
  out = {}
  lm = keras_hub.models.GPT2CausalLM.from_preset(os.path.join(export, "keras_hub"), preprocessor=None)
  out["keras_hub"] = np.asarray(lm({"token_ids": token_ids, "padding_mask": padding_mask}))
  hf_dir = os.path.join(export, "huggingface")
  out["huggingface"] = _hf_logits(
    transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval(), token_ids, padding_mask
  )
  if os.path.exists(os.path.join(hf_dir, "vocab.json")):
    out["hf_ids"] = np.array(transformers.AutoTokenizer.from_pretrained(hf_dir)(text)["input_ids"])
    out["keras_hub_ids"] = np.asarray(
      keras_hub.models.GPT2Tokenizer.from_preset(os.path.join(export, "keras_hub"))(text)
    )
  peft_dir = os.path.join(export, "peft")
  if os.path.exists(peft_dir):
    base = transformers.GPT2LMHeadModel.from_pretrained(os.path.join(peft_dir, "base"))
    out["peft_base"] = _hf_logits(base.eval(), token_ids, padding_mask)
    out["peft"] = _hf_logits(peft.PeftModel.from_pretrained(base, peft_dir).eval(), token_ids, padding_mask)
  np.savez(probe + ".load.npz", **out)


def load_classifier(export, probe):
  import transformers  # isort: skip (PyTorch's side first, as in `load`)

  token_ids, padding_mask, _ = _probe(probe)
  model = transformers.GPT2ForSequenceClassification.from_pretrained(os.path.join(export, "huggingface"))
  out = {"huggingface": _hf_logits(model.eval(), token_ids, padding_mask)}
  out["labels"] = np.array([model.config.id2label[i] for i in range(model.config.num_labels)])
  sys.path.insert(0, export)
  import tff_gpt_export

  kernel, _ = tff_gpt_export.load_head(export)
  backbone = tff_gpt_export.load_backbone(export)
  out["portable"] = tff_gpt_export.class_logits(backbone, kernel, token_ids, padding_mask)
  np.savez(probe + ".load.npz", **out)


if __name__ == "__main__":
  command, *args = sys.argv[1:]
  {"make-hf": make_hf, "make-keras-hub": make_keras_hub, "load": load, "load-classifier": load_classifier}[
    command
  ](*args)
