"""Every entry point: a mistake in the user's input is one line, `error: ...`, with exit status 2.

Each case runs the real command in a subprocess. Unexpected errors keep their
traceback; these are the expected ones (flags, corpus, tokenizer, checkpoint,
missing runs, unsupported settings).
"""

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

from tests import helpers
from tff_gpt import errors
from tff_gpt.data import client_data, tokenizers
from tff_gpt.models import checkpoints, frozen
from tff_gpt.training import config as config_lib
from tff_gpt.training import trainer

pytestmark = pytest.mark.slow


def _cases(tmp):
  bad_jsonl = tmp / "bad.jsonl"
  bad_jsonl.write_text('{"client_id": "a", "text": "fine"}\n{not json\n')
  not_json = tmp / "vocab.json"
  not_json.write_text("this is not JSON")
  merges = tmp / "merges.txt"
  merges.write_text("a b\n")
  runs = f"--root_output_dir={tmp}/runs"
  corpus = tmp / "corpus.jsonl"
  helpers.write_jsonl_corpus(corpus)
  huge_batches = [
    "--dataset=jsonl",
    f"--dataset_path={corpus}",
    "--model_size=tiny",
    "--client_batch_size=10000000",
  ]
  labelled = tmp / "labelled.jsonl"
  labelled.write_text(
    '{"client_id": "a", "text": "x", "genre": "g"}\n{"client_id": "b", "text": "y"}\n', encoding="utf-8"
  )
  jsonl = ["--dataset=jsonl", f"--dataset_path={corpus}"]
  return [
    ("run_experiment", ["--total_rounds=0"], "--total_rounds must be >= 1"),
    (
      "run_experiment",
      ["--partition=dirichlet", "--partition_clients=4", "--partition_alpha=0", "--partition_label=play"],
      "--partition_alpha must be > 0",
    ),
    ("run_experiment", ["--partition_alpha=0.5"], "only apply to --partition=iid or dirichlet"),
    ("run_experiment", [runs, *jsonl, "--partition=iid", "--partition_clients=500"], "needs at least 1000"),
    (
      "run_experiment",
      [
        runs,
        "--dataset=jsonl",
        f"--dataset_path={labelled}",
        "--partition=dirichlet",
        "--partition_clients=2",
        "--partition_alpha=1",
        "--partition_label=genre",
      ],
      "labelled.jsonl:2: no field 'genre'",
    ),
    (
      "run_experiment",
      [runs, "--dataset=tfds", "--tfds_name=imdb_reviews", f"--tfds_data_dir={tmp}"],
      "not prepared",
    ),
    (
      "run_experiment",
      [runs, "--dataset=tff_shakespeare", f"--tff_cache_dir={tmp}"],
      "no shakespeare.sqlite",
    ),
    ("run_experiment", ["--client_optimizer=lion"], "flag --client_optimizer=lion"),
    ("run_experiment", ["--trainable=lora:0"], "the rank R must be >= 1"),
    ("run_experiment", ["--client_weighting=num_examples", "--aggregator=dp_fixed"], "weight"),
    (
      "run_experiment",
      [runs, "--dataset=jsonl", f"--dataset_path={bad_jsonl}"],
      "bad.jsonl:2: not valid JSON",
    ),
    (
      "run_experiment",
      [runs, "--tokenizer=bpe", f"--vocab_file={not_json}", f"--merges_file={merges}"],
      "JSON",
    ),
    ("run_experiment", [runs, "--tokenizer=bpe", f"--preset={tmp}/nowhere"], "does not exist"),
    ("run_experiment", ["unexpected"], "Unexpected arguments"),
    ("run_experiment", [runs, *huge_batches], "GB at its peak"),
    ("generate", [runs, "--experiment_name=none"], "No run at"),
    ("export_model", [runs, "--experiment_name=none"], "No run at"),
    ("compare_algorithms", [runs, "--configuration=x: algorithm=fedadam"], "is not a flag"),
    ("compare_algorithms", [runs, "--configuration=x: --algorithm=nothing"], "--algorithm"),
    ("make_bpe_vocab", ["--dataset=jsonl", f"--dataset_path={tmp}/missing.jsonl"], "does not exist"),
    ("pretrain", ["--dataset=jsonl", f"--dataset_path={bad_jsonl}", "--groups=a"], "bad.jsonl:2: not valid"),
    ("pretrain", ["--examples=pairs"], "pretraining reads text; --examples=pairs"),
    ("run_experiment", ["--examples=alpaca"], "--examples alpaca reads --dataset=jsonl or tfds"),
    (
      "run_experiment",
      [runs, *jsonl, "--examples=pairs"],
      "corpus.jsonl:1: missing field(s) ['prompt', 'response']",
    ),
  ]


def _run(module, args, tmp):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TFF_GPT_CACHE=str(tmp / "cache"))
  return subprocess.run(
    [sys.executable, "-m", f"experiments.{module}", *args],
    capture_output=True,
    text=True,
    cwd=helpers.REPO,
    env=env,
    timeout=600,
  )


@pytest.mark.full
def test_each_entry_point_reports_user_errors_in_one_line_with_status_2(tmp_path):
  cases = _cases(tmp_path)
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    results = list(pool.map(lambda c: _run(c[0], c[1], tmp_path), cases))
  failures = []
  for (module, args, expected), result in zip(cases, results, strict=True):
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    ok = (
      result.returncode == 2
      and "Traceback" not in result.stderr
      and len(lines) == 1
      and expected in lines[0]
      and len(lines[0]) <= 400
    )
    if not ok:
      failures.append(f"{module} {args} -> {result.returncode}: {result.stderr[-1500:]}")
  assert not failures, "\n\n".join(failures)


def test_every_project_error_is_a_user_input_error():
  for error in (
    client_data.CorpusError,
    tokenizers.TokenizerError,
    checkpoints.CheckpointError,
    frozen.FrozenWeightsError,
    trainer.ResumeError,
    config_lib.ConfigError,
  ):
    assert issubclass(error, errors.UserInputError) and issubclass(error, ValueError), error


@pytest.mark.full
def test_an_unexpected_error_keeps_its_traceback(tmp_path):
  """A corrupt run config is not a user mistake the code anticipates: it shows where it failed."""
  config = tmp_path / "runs" / "checkpoints" / "broken" / "run_config.json"
  config.parent.mkdir(parents=True)
  config.write_text(json.dumps({"experiment": {"total_rounds": "many"}, "model": {}}))
  result = _run("export_model", [f"--root_output_dir={tmp_path}/runs", "--experiment_name=broken"], tmp_path)
  assert result.returncode == 1 and "Traceback" in result.stderr, result.stderr[-2000:]
