"""The portable export, rebuilt in a Colab-like Keras 3 environment, and the notebook run headless.

The Colab-like environment is `.venv-colab` (requirements-colab.txt: current
TensorFlow, Keras 3, keras-hub, no TFF), which ./test.sh installs.
"""

import json
import os

import numpy as np
import pytest
import safetensors.numpy

from tests import helpers
from tff_gpt.data import preprocessing, tokenizers
from tff_gpt.export import portable
from tff_gpt.models import tff_model
from tff_gpt.training import trainer

# Its module-scoped fixtures are built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = pytest.mark.xdist_group(__name__)
HF_WEIGHTS = os.path.join("huggingface", "model.safetensors")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("export")
  helpers.ensure_tff_context()
  experiment = trainer.FederatedExperiment(helpers.tiny_config(tmp_path, export=True, total_rounds=2))
  summary = experiment.run()
  return experiment, summary


def test_export_files(run):
  experiment, summary = run
  export_dir = summary["export"]
  assert export_dir == os.path.join(experiment.dirs.results, "export")
  for name in (
    "config.json",
    "tokenizer.json",
    "heldout.jsonl",
    "tff_gpt_export.py",
    "keras_hub/config.json",
  ):
    assert os.path.isfile(os.path.join(export_dir, name)), name
  readme = open(os.path.join(export_dir, "README.md")).read()
  for entry in sorted(os.listdir(export_dir)):  # Each file or folder the export holds says who loads it.
    assert (
      entry == "README.md"
      or f"`{entry.removesuffix('.json') if entry == 'tokenizer.json' else entry}" in readme
    ), entry
  assert os.path.isfile(os.path.join(export_dir, "saved_model", "saved_model.pb"))
  assert not os.path.exists(os.path.join(export_dir, "weights.npz"))  # The notebook reads keras_hub/.
  config = portable.read_config(export_dir)
  assert config["backbone"] == experiment.task.model_config and config["run"]["round"] == 2
  assert set(portable.read_heldout(export_dir)) == set(experiment.task.eval_client_ids)


def test_portable_packing_and_tokenizer_equal_training(run):
  experiment, summary = run
  tokenizer = portable.Tokenizer(summary["export"])
  ours = tokenizers.CharTokenizer()
  text = "To be, or not to be: that is the question. ~é"
  np.testing.assert_array_equal(tokenizer.encode([text])[0], ours.encode([text])[0])
  assert tokenizer.decode(ours.encode(["the cat"])[0]) == "the cat"
  ids = ours.encode(["abc abc", "the cat sat", "x"])
  special = dict(bos_id=ours.bos_id, eos_id=ours.eos_id, pad_id=ours.pad_id)
  for length in (2, 5, 16):
    a = portable.pack_sequences(ids, sequence_length=length, **special)
    b = preprocessing.pack_sequences(ids, sequence_length=length, **special)
    for key in b:
      np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.full
def test_keras3_model_has_the_trained_models_logits(run, tmp_path):
  experiment, summary = run
  model = tff_model.keras_model_with_weights(experiment.task.model_config, summary["model_weights"])
  probe = experiment.task.test_data.sequences(experiment.task.eval_client_ids[0])
  inputs = {k: probe[k][:4] for k in ("token_ids", "padding_mask")}
  diffs = helpers.keras3_logit_diffs(summary["export"], inputs, model(inputs).numpy(), tmp_path)
  assert diffs["keras_hub"] < 1e-4, diffs
  assert diffs["saved_model"] < 1e-4, diffs


@pytest.mark.full
def test_notebook_runs_headless_with_figures(run, tmp_path):
  experiment, summary = run
  text = helpers.run_notebook(experiment.dirs.results, tmp_path)
  assert "max |keras_hub - SavedModel| logits" in text and "perplexity" in text and "TopKSampler" in text
  diffs = helpers.one_call_diffs(text)  # keras-hub's and transformers' own loaders, one call each.
  assert set(diffs) == {"keras_hub", "huggingface"} and max(diffs.values()) < 1e-4, diffs


def test_export_model_script_exports_the_latest_checkpoint(run, tmp_path):
  from absl.testing import flagsaver

  from experiments import export_model

  experiment, _ = run
  out = str(tmp_path / "again")
  config = experiment.config
  with flagsaver.flagsaver(
    root_output_dir=config.root_output_dir, experiment_name=config.experiment_name, export_dir=out
  ):
    assert export_model.export_latest() == out
  assert portable.read_config(out)["run"]["round"] == 2
  original = safetensors.numpy.load_file(os.path.join(experiment.dirs.results, "export", HF_WEIGHTS))
  again = safetensors.numpy.load_file(os.path.join(out, HF_WEIGHTS))
  assert sorted(original) == sorted(again)
  for key in original:
    np.testing.assert_array_equal(original[key], again[key])


@pytest.mark.full
def test_bpe_export_tokenizes_and_predicts_the_same_in_keras3(tmp_path, bpe_files):
  vocab_file, merges_file = bpe_files
  config = helpers.tiny_config(
    tmp_path, export=True, total_rounds=1, tokenizer="bpe", vocab_file=vocab_file, merges_file=merges_file
  )
  experiment = trainer.FederatedExperiment(config)
  summary = experiment.run()
  assert os.path.isfile(os.path.join(summary["export"], "merges.txt"))
  text = "the cat sat on the mat"
  ours = experiment.task.tokenizer.encode([text])[0]
  model = tff_model.keras_model_with_weights(experiment.task.model_config, summary["model_weights"])
  probe = experiment.task.test_data.sequences(experiment.task.eval_client_ids[0])
  inputs = {k: probe[k][:2] for k in ("token_ids", "padding_mask")}
  np.savez(tmp_path / "probe.npz", **inputs, logits=model(inputs).numpy(), ids=ours)
  script = """
import json, sys
import numpy as np
export_dir, probe_path, text = sys.argv[1:]
sys.path.insert(0, export_dir)
import tff_gpt_export as tx
probe = np.load(probe_path)
tokenizer = tx.Tokenizer(export_dir)
ids = tokenizer.encode([text])[0]
backbone = tx.load_backbone(export_dir)
hub = np.asarray(tx.logits(backbone, probe["token_ids"], probe["padding_mask"]))
print(json.dumps({"same_ids": ids.tolist() == probe["ids"].tolist(), "decoded": tokenizer.decode(ids),
                  "diff": float(np.max(np.abs(hub - probe["logits"])))}))
"""
  result = helpers.colab(["-c", script, summary["export"], str(tmp_path / "probe.npz"), text])
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["same_ids"] and out["decoded"] == text, out
  assert out["diff"] < 1e-4, out
