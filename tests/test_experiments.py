"""The absl entry points, run as a researcher runs them (main under flagsaver)."""

import csv
import dataclasses
import os

import pytest
from absl import flags
from absl.testing import flagsaver

from experiments import flags_common, generate, run_experiment
from tests import helpers
from tff_gpt.training import config as config_lib
from tff_gpt.training import outputs
from tff_gpt.training.task import FederatedTask


def _flags(tmp_path, **overrides):
  config = helpers.tiny_config(tmp_path, total_rounds=3, rounds_per_eval=2, rounds_per_checkpoint=2)
  values = {k: v for k, v in config.to_dict().items() if v is not None}
  values.update(overrides)
  return values


def test_main_writes_one_metrics_row_per_round_and_generates(tmp_path, capfd):
  values = _flags(tmp_path)
  with flagsaver.flagsaver(**values, sample_prompt="the cat"):
    run_experiment.main(["run_experiment"])
  out = capfd.readouterr().out
  assert "Finished 3 rounds of fedavg (mean aggregator)" in out and "perplexity" in out and "Sample" in out
  results = os.path.join(values["root_output_dir"], "results", values["experiment_name"])
  with open(os.path.join(results, "experiment.metrics.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["round_num"] for r in rows] == ["1", "2", "3"]
  assert {"train_loss", "train_accuracy", "eval_loss", "eval_perplexity", "tokens_per_second"} <= set(rows[0])
  assert [r["eval_loss"] != "" for r in rows] == [False, True, True]
  with open(os.path.join(results, "hparams.csv"), newline="") as f:
    assert next(csv.DictReader(f))["total_rounds"] == "3"

  with flagsaver.flagsaver(
    root_output_dir=values["root_output_dir"],
    experiment_name=values["experiment_name"],
    prompt="the ",
    sampler="top_p",
    num_samples=2,
    max_length=12,
  ):
    texts = generate.generate_samples()
  assert len(texts) == 2
  assert all(t.startswith("the ") for t in texts)
  assert any(len(t) > len("the ") for t in texts)  # sampling may stop at once on end-of-text


def test_flagfile(tmp_path, capfd):
  values = _flags(tmp_path, total_rounds=1, experiment_name="from_flagfile")
  flagfile = tmp_path / "run.flags"
  flagfile.write_text("".join(f"--{k}={v}\n" for k, v in values.items()))
  with flagsaver.flagsaver():
    run_experiment.FLAGS(["run_experiment", f"--flagfile={flagfile}", "--sample_prompt="])
    config = flags_common.config_from_flags()
  assert config == config_lib.ExperimentConfig(**values)  # What main() trains (the tests above run it)


def test_a_preset_directory_brings_its_model_and_bpe(tmp_path, bpe_files):
  """--preset builds the preset's model with its BPE tokenizer (its weights: tests/test_pretrain.py)."""
  preset, _, tok = helpers.write_preset(tmp_path / "preset", bpe_files)
  values = _flags(tmp_path, total_rounds=1, experiment_name="from_preset", preset=preset)
  del values["tokenizer"]  # Implied by --preset: its BPE.
  with flagsaver.flagsaver(**values):
    config = flags_common.config_from_flags()
  config.validate()
  run_config = FederatedTask(config, outputs.RunDirs.of(config.root_output_dir, "from_preset")).run_config()
  assert run_config["model"]["vocabulary_size"] == tok.vocabulary_size
  assert run_config["model"]["max_sequence_length"] == 32
  assert run_config["tokenizer"]["preset"] == preset


@pytest.mark.parametrize(
  ("overrides", "noted"),
  [
    (dict(client_optimizer="adam", client_learning_rate=3e-3), True),
    (dict(client_optimizer="adam", client_learning_rate=1e-4), False),
    (dict(client_optimizer="sgd", client_learning_rate=0.1), False),
    (dict(client_optimizer="adam", client_learning_rate=3e-3, trainable="lora:8"), False),
    (dict(client_optimizer="adam", client_learning_rate=3e-3, server_learning_rate=0.3), False),
  ],
)
def test_whole_model_fine_tuning_with_client_adam_is_advised_against(tmp_path, overrides, noted):
  config = helpers.tiny_config(tmp_path, preset="/some/preset", tokenizer="bpe", **overrides)
  notes = config.advice()
  assert bool(notes) == noted and all("--client_optimizer=sgd --client_learning_rate=0.1" in n for n in notes)
  assert not helpers.tiny_config(tmp_path, client_optimizer="adam", client_learning_rate=3e-3).advice()
  # The LSTM started from its pretrained weights: not this note.
  lstm = dict(model="char_lstm", tokenizer="char", preset="/some/lstm", client_learning_rate=3e-3)
  assert not helpers.tiny_config(tmp_path, **lstm, client_optimizer="adam").advice()


def test_make_bpe_vocab_then_train_with_it(tmp_path, capfd):
  from experiments import make_bpe_vocab

  corpus = helpers.write_jsonl_corpus(tmp_path / "corpus.jsonl")
  with flagsaver.flagsaver(
    dataset="jsonl",
    dataset_path=corpus,
    cache_dir=str(tmp_path / "cache"),
    vocab_size=280,
    output_dir=str(tmp_path / "bpe"),
  ):
    vocab_file, merges_file = make_bpe_vocab.make_vocab()
  assert "Wrote" in capfd.readouterr().out
  config = helpers.tiny_config(tmp_path, tokenizer="bpe", vocab_file=vocab_file, merges_file=merges_file)
  from tff_gpt.training import trainer

  experiment = trainer.FederatedExperiment(config)
  assert experiment.task.tokenizer.vocabulary_size <= 280
  assert experiment.task.model_config["vocabulary_size"] == experiment.task.tokenizer.vocabulary_size
  helpers.ensure_tff_context()  # make_vocab's corpus loading leaves none.
  summary = experiment.run()

  # Per character: the run's total held-out loss, recomputed by Keras, over the labels the char
  # tokenizer has on the same text.
  from tff_gpt.data import preprocessing, tokenizers
  from tff_gpt.training import report

  loss, tokens = helpers.keras_held_out_loss(experiment.task, summary["model_weights"])
  total_nats = loss * tokens
  texts = experiment.task.test_data.texts
  chars = preprocessing.TokenizedClients(texts, tokenizers.CharTokenizer(), sequence_length=8)
  characters = sum(int((chars.sequences(c)["labels"] >= 0).sum()) for c in experiment.task.eval_client_ids)
  assert summary["tokenizer"] == "bpe"
  assert summary["eval_tokens"] < characters  # Merges: fewer tokens than characters.
  assert summary["eval_loss_per_char"] == pytest.approx(total_nats / characters, rel=1e-4)
  assert summary["eval_loss_per_char"] < summary["eval_loss"]
  assert "nats per character" in report.format_summary(summary)


@pytest.mark.full
def test_shipped_shakespeare_bpe_is_what_make_bpe_vocab_makes(tmp_path):
  """configs/bpe/shakespeare_384 (the README comparison's BPE row) is reproducible from its command."""
  from experiments import make_bpe_vocab

  shipped = os.path.join(helpers.REPO, "configs", "bpe", "shakespeare_384")
  with flagsaver.flagsaver(
    dataset="shakespeare", cache_dir=str(tmp_path / "cache"), vocab_size=384, output_dir=str(tmp_path / "bpe")
  ):
    made = make_bpe_vocab.make_vocab()
  for path in made:
    with open(path, "rb") as new, open(os.path.join(shipped, os.path.basename(path)), "rb") as old:
      assert new.read() == old.read(), os.path.basename(path)


def test_settings_written_by_earlier_code_still_resume():
  """A run directory's run_config from before the settings groups (old names, fewer fields) resumes."""
  saved = {"model_size": "small", "tokenizer": "char", "seed": 0, "total_rounds": 300, "retired_flag": 1}
  assert config_lib.ExperimentConfig().resume_changes(saved) == []
  assert config_lib.ExperimentConfig(model_size="small", total_rounds=10).resume_changes(saved) == []
  assert config_lib.ExperimentConfig(seed=1).resume_changes(saved) == ["--seed was 0, now 1"]


def test_flags_are_derived_from_the_settings_declarations():
  """Every setting is a flag with its declared help; enums list their choices; nothing else is listed."""
  for field in dataclasses.fields(config_lib.ExperimentConfig):
    flag = flags.FLAGS[field.name]
    assert flag.help.endswith(field.metadata["help"])
    if field.metadata["choices"]:
      assert list(flag.parser.enum_values) == list(field.metadata["choices"])
  assert set(config_lib.RESUME_KEYS) < {f.name for f in dataclasses.fields(config_lib.ExperimentConfig)}
  assert "seed" in config_lib.RESUME_KEYS and "total_rounds" not in config_lib.RESUME_KEYS
