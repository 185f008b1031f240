"""experiments/pretrain.py: central pretraining on some clients, then federated fine-tuning on the rest."""

import json
import os

import keras_nlp
import numpy as np
import pytest
from absl.testing import flagsaver

from experiments import pretrain
from tests import helpers
from tff_gpt import errors
from tff_gpt.central import pretraining
from tff_gpt.data import client_data, client_groups, datasets
from tff_gpt.models import char_lstm, checkpoints, gpt2_lm, trainable
from tff_gpt.training import trainer

# Its module-scoped fixtures are built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("pretrain")
  helpers.ensure_tff_context()
  corpus = helpers.write_jsonl_corpus(tmp_path / "corpus.jsonl")
  values = dict(
    dataset="jsonl",
    dataset_path=corpus,
    cache_dir=str(tmp_path / "cache"),
    groups=["alice", "bob"],
    rest_jsonl=str(tmp_path / "rest.jsonl"),
    preset_dir=str(tmp_path / "preset"),
    bpe_vocab_size=280,
    model_size="tiny",
    sequence_length=16,
    batch_size=4,
    learning_rate=1e-2,
    warmup_fraction=0.0,
    epochs=12,
  )
  with flagsaver.flagsaver(**values):
    info = pretrain.pretrain()
  return tmp_path, values, info


def test_pretraining_writes_a_preset_that_learned(pretrained):
  _, values, info = pretrained
  preset = values["preset_dir"]
  assert checkpoints.detect(preset) == checkpoints.KERAS_NLP
  assert not os.path.exists(preset + ".work")  # Epoch backups and the learned BPE are cleaned up.
  assert info["train_clients"] == 2 and len(info["epochs"]) == 12
  losses = [e["train_loss"] for e in info["epochs"]]
  assert losses[-1] < losses[0] - 0.5, losses
  assert json.load(open(os.path.join(preset, "pretrain.json")))["steps"] == info["steps"]


def test_the_other_clients_keep_their_split(pretrained):
  tmp_path, values, _ = pretrained
  original = datasets.load_corpus("jsonl", path=values["dataset_path"], cache_dir=values["cache_dir"])
  rest = datasets.load_corpus("jsonl", path=values["rest_jsonl"], cache_dir=values["cache_dir"])
  assert sorted(rest.texts("train")) == ["carol", "dave"]
  for split in ("train", "test"):
    for cid in ("carol", "dave"):
      assert rest.texts(split)[cid] == original.texts(split)[cid]


def test_federated_fine_tuning_starts_from_the_pretrained_weights(pretrained, tmp_path):
  _, values, _ = pretrained
  config = helpers.tiny_config(
    tmp_path,
    preset=values["preset_dir"],
    tokenizer="bpe",
    dataset_path=values["rest_jsonl"],
    trainable="bitfit",
  )
  experiment = trainer.FederatedExperiment(config)
  model = experiment.task.keras_model(
    experiment.process.get_model_weights(experiment.context.initial_state())
  )
  want = gpt2_lm.lm_from_backbone(keras_nlp.models.GPT2Backbone.from_preset(values["preset_dir"]))
  got_values = trainable.merged_values(gpt2_lm.backbone_of(model))
  for key, value in trainable.merged_values(gpt2_lm.backbone_of(want)).items():
    np.testing.assert_array_equal(got_values[key], value)


@pytest.fixture(scope="module")
def pretrained_lstm(pretrained):
  """The LSTM pretrained on the same clients' text (characters), beside the GPT-2 preset."""
  tmp_path, values, _ = pretrained
  lstm = values | dict(  # No --learning_rate: the LSTM's own default.
    model="char_lstm", preset_dir=str(tmp_path / "lstm"), rest_jsonl="", epochs=3, learning_rate=None
  )
  with flagsaver.flagsaver(**lstm):
    info = pretrain.pretrain()
  return lstm | {"rest_jsonl": values["rest_jsonl"]}, info


@pytest.mark.full
def test_the_lstm_pretrains_on_the_same_text_and_fine_tuning_starts_from_it(pretrained_lstm, tmp_path):
  values, info = pretrained_lstm
  preset = values["preset_dir"]
  assert char_lstm.is_preset(preset) and info["train_clients"] == 2
  assert info["model"]["architecture"] == "char_lstm"
  assert info["config"]["learning_rate"] == pretraining.DEFAULT_LEARNING_RATES["char_lstm"] != 1e-3
  losses = [e["train_loss"] for e in info["epochs"]]
  assert losses[-1] < losses[0], losses
  config = helpers.tiny_config(tmp_path, model="char_lstm", preset=preset, dataset_path=values["rest_jsonl"])
  assert config.tokenizer == "char"  # The LSTM's own, not the BPE a GPT-2 preset brings.
  experiment = trainer.FederatedExperiment(config)
  weights = experiment.process.get_model_weights(experiment.context.initial_state())
  want = char_lstm.from_preset(preset, experiment.task.model_config)
  for got, value in zip(weights.trainable, want.trainable_weights, strict=True):
    np.testing.assert_array_equal(got, value.numpy())


def test_a_preset_of_the_other_model_is_refused(pretrained, pretrained_lstm, tmp_path):
  for model, preset in (
    ("gpt2", pretrained_lstm[0]["preset_dir"]),
    ("char_lstm", pretrained[1]["preset_dir"]),
  ):
    config = helpers.tiny_config(
      tmp_path, model=model, preset=preset, dataset_path=pretrained[1]["rest_jsonl"]
    )
    with pytest.raises(errors.UserInputError, match=f"is not a pretrained --model={model}: pass --model="):
      trainer.FederatedExperiment(config)


def test_unknown_group_is_named(tmp_path):
  with pytest.raises(client_data.CorpusError, match=r"No clients in group\(s\) \['nobody'\]"):
    client_groups.split_by_group(["a:X", "b:Y"], ["nobody"])
  with pytest.raises(client_data.CorpusError, match="leave some groups for federated fine-tuning"):
    client_groups.split_by_group(["a:X", "b:Y"], ["a", "b"])
