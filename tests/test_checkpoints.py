"""Pretrained GPT-2 in and out, checked against transformers, PEFT and keras-hub (tests/reference_gpt2.py).

The references run in the Colab-like venv: they make tiny random checkpoints
in their own layouts, and load the project's exports with one call each.
"""

import json
import os
import pickle
import shutil
import zipfile

import keras_nlp
import numpy as np
import pytest

from tests import helpers
from tff_gpt.data import tokenizers
from tff_gpt.models import checkpoints, gpt2_lm, torch_bin
from tff_gpt.training import trainer

TEXT = "the cat at the hat"


def _reference(*args):
  return helpers.colab([os.path.join(helpers.REPO, "tests", "reference_gpt2.py"), *map(str, args)])


# Its module-scoped fixtures are built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
  """Checkpoints by transformers (safetensors, pytorch_model.bin) and keras-hub, with their outputs."""
  tmp = tmp_path_factory.mktemp("refs")
  vocab, merges = helpers.write_bpe_files(tmp / "bpe")
  size = len(json.load(open(vocab)))
  probe = helpers.token_batch(vocabulary_size=size, length=16)
  probe["padding_mask"][1, 12:] = 0  # Padding, as in training batches.
  probe_file = str(tmp / "probe.npz")
  np.savez(probe_file, **probe, text=TEXT)
  out = {"probe": probe, "probe_file": probe_file, "vocab": vocab, "merges": merges}
  for fmt in ("safetensors", "bin"):
    _reference("make-hf", tmp / f"hf_{fmt}", vocab, merges, probe_file, fmt)
    out[f"hf_{fmt}"] = (str(tmp / f"hf_{fmt}"), dict(np.load(probe_file + ".hf.npz")))
  _reference("make-keras-hub", tmp / "keras_hub", vocab, merges, probe_file)
  out["keras_hub"] = (str(tmp / "keras_hub"), dict(np.load(probe_file + ".keras_hub.npz")))
  return out


def _masked_max_diff(a, b, mask):
  return float(np.abs(np.asarray(a) - np.asarray(b))[mask.astype(bool)].max())


@pytest.mark.full
@pytest.mark.parametrize(
  ("source", "layout"),
  [
    ("hf_safetensors", checkpoints.HUGGING_FACE),
    ("hf_bin", checkpoints.HUGGING_FACE),
    ("keras_hub", checkpoints.KERAS_HUB),
  ],
)
def test_checkpoint_in_has_the_reference_logits_and_tokens(refs, tmp_path, source, layout):
  path, reference = refs[source]
  assert checkpoints.detect(path) == layout
  preset = checkpoints.resolve(path, str(tmp_path / "converted"))
  assert checkpoints.detect(preset) == checkpoints.KERAS_NLP
  model = gpt2_lm.lm_from_backbone(keras_nlp.models.GPT2Backbone.from_preset(preset))
  probe = refs["probe"]
  assert _masked_max_diff(model(probe), reference["logits"], probe["padding_mask"]) < 1e-5
  assert tokenizers.from_preset(preset).encode([TEXT])[0].tolist() == reference["ids"].tolist()


@pytest.mark.full
def test_conversion_is_cached_until_the_checkpoint_changes(refs, tmp_path):
  path = str(tmp_path / "hf")
  shutil.copytree(refs["hf_safetensors"][0], path)
  work = str(tmp_path / "converted")
  checkpoints.resolve(path, work)
  stamp = os.stat(os.path.join(work, checkpoints.WEIGHTS_FILE)).st_mtime_ns
  checkpoints.resolve(path, work)
  assert os.stat(os.path.join(work, checkpoints.WEIGHTS_FILE)).st_mtime_ns == stamp
  os.utime(os.path.join(path, "model.safetensors"))  # Touched: converted again.
  checkpoints.resolve(path, work)
  assert os.stat(os.path.join(work, checkpoints.WEIGHTS_FILE)).st_mtime_ns != stamp


def test_bin_reader_refuses_pickles_that_run_code(tmp_path):
  path = tmp_path / "pytorch_model.bin"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", pickle.dumps(os.system))
  with pytest.raises(checkpoints.CheckpointError, match="asks to load posix.system.*refusing"):
    torch_bin.read(str(path))


def _broken_copy(refs, tmp_path, source="hf_safetensors"):
  path = tmp_path / "broken"
  shutil.copytree(refs[source][0], path)
  return path


def _edit_json(path, inner=False, **changes):
  """Changes keys of a JSON file (of its "config" entry when `inner`, as in keras presets)."""
  values = json.loads(path.read_text())
  (values["config"] if inner else values).update(changes)
  path.write_text(json.dumps(values))


@pytest.mark.full
@pytest.mark.parametrize(
  ("source", "damage", "message"),
  [
    (
      "hf_safetensors",
      lambda p: os.remove(p / "model.safetensors"),
      "has neither model.safetensors nor pytorch_model.bin",
    ),
    (
      "hf_safetensors",
      lambda p: os.remove(p / "vocab.json"),
      "has no tokenizer: expected vocab.json and merges.txt",
    ),
    ("hf_safetensors", lambda p: (p / "config.json").write_text("{not json"), "cannot be read as JSON"),
    (
      "hf_safetensors",
      lambda p: _edit_json(p / "config.json", model_type="llama"),
      "model_type 'llama'.*is not GPT-2",
    ),
    (
      "hf_safetensors",
      lambda p: _edit_json(p / "config.json", n_embd=32),
      r"has shape \(262, 16\) but config.json",
    ),
    (
      "hf_safetensors",
      lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:2000]),
      "cannot be read .*damaged or incomplete",
    ),
    (
      "hf_safetensors",
      lambda p: _edit_json(p / "vocab.json", **{"extra token": 999}),
      "the tokenizer has 263 tokens but the model's vocabulary_size is 262",
    ),
    (
      "hf_safetensors",
      lambda p: _edit_json(p / "config.json", activation_function="relu"),
      "activation_function='relu'",
    ),
    (
      "keras_hub",
      lambda p: _edit_json(p / "config.json", inner=True, hidden_dim=32),
      "has shape .* but config.json implies",
    ),
    ("keras_hub", lambda p: os.remove(p / "model.weights.h5"), "model.weights.h5 is missing"),
    (
      "keras_hub",
      lambda p: _edit_json(p / "config.json", class_name="BertBackbone"),
      "describes 'BertBackbone', not GPT-2",
    ),
  ],
)
def test_bad_checkpoints_are_refused_with_the_problem_and_fix(refs, tmp_path, source, damage, message):
  path = _broken_copy(refs, tmp_path, source)
  damage(path)
  with pytest.raises(checkpoints.CheckpointError, match=message):
    checkpoints.resolve(str(path), str(tmp_path / "converted"))


def _run_config(tmp_path, preset, **overrides):
  return helpers.tiny_config(tmp_path, preset=preset, tokenizer="bpe", **overrides)


@pytest.mark.full
def test_bad_preset_stops_a_run_before_round_one(refs, tmp_path):
  with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
    trainer.FederatedExperiment(_run_config(tmp_path, str(tmp_path / "nowhere")))
  with pytest.raises(ValueError, match="--sequence_length 64 exceeds the checkpoint's 32 positions"):
    trainer.FederatedExperiment(_run_config(tmp_path, refs["hf_bin"][0], sequence_length=64))


@pytest.fixture(scope="module")
def lora_from_hf(refs, tmp_path_factory):
  """A LoRA run with heterogeneous client ranks (2, 4 and 8 of the server's 8) that starts from the
  transformers checkpoint and exports: the export is a rank-8 LoRA model like any other."""
  tmp_path = tmp_path_factory.mktemp("lora_hf")
  helpers.ensure_tff_context()
  config = _run_config(
    tmp_path,
    refs["hf_safetensors"][0],
    trainable="hetlora:8",
    lora_client_ranks="2,4,8",
    lora_alpha=4.0,
    export=True,
    client_learning_rate=0.5,
  )
  experiment = trainer.FederatedExperiment(config)
  return experiment, experiment.run()


@pytest.mark.full
def test_export_loads_in_keras_hub_transformers_and_peft_with_one_call(refs, lora_from_hf):
  experiment, summary = lora_from_hf
  export_dir = summary["export"]
  probe = refs["probe"]
  ours = experiment.task.keras_model(summary["model_weights"])(probe).numpy()
  _reference("load", export_dir, refs["probe_file"])
  loaded = np.load(refs["probe_file"] + ".load.npz")
  for name in ("keras_hub", "huggingface", "peft"):
    assert _masked_max_diff(loaded[name], ours, probe["padding_mask"]) < 1e-5, name
  # PEFT's base is the pretrained checkpoint, untouched by training; the adapters moved the model.
  pretrained = refs["hf_safetensors"][1]["logits"]
  assert _masked_max_diff(loaded["peft_base"], pretrained, probe["padding_mask"]) < 1e-5
  assert _masked_max_diff(loaded["peft"], pretrained, probe["padding_mask"]) > 1e-3
  ids = experiment.task.tokenizer.encode([TEXT])[0].tolist()
  assert loaded["hf_ids"].tolist() == ids and loaded["keras_hub_ids"].tolist() == ids
  adapter = json.load(open(os.path.join(export_dir, "peft", "adapter_config.json")))
  # The server's rank, query and value stacked in GPT-2's c_attn: r 2 x 8, alpha 2 x 4 (the same scale).
  assert (adapter["r"], adapter["lora_alpha"], adapter["target_modules"]) == (16, 8.0, ["c_attn"])
  ranks = {experiment.task.client_rank(c) for c in experiment.task.train_data.client_ids}
  assert ranks == {2, 4, 8}


@pytest.mark.full
def test_a_run_restarts_from_its_own_keras_hub_export(lora_from_hf, tmp_path):
  """Trained weights out, and back in as the next run's --preset."""
  experiment, summary = lora_from_hf
  preset = os.path.join(summary["export"], "keras_hub")
  again = trainer.FederatedExperiment(_run_config(tmp_path, preset, trainable="bitfit", export=False))
  state = again.context.initial_state()
  model = again.task.keras_model(again.process.get_model_weights(state))
  probe = helpers.token_batch(vocabulary_size=again.task.tokenizer.vocabulary_size)
  want = experiment.task.keras_model(summary["model_weights"])(probe).numpy()
  np.testing.assert_allclose(model(probe).numpy(), want, atol=1e-5)
