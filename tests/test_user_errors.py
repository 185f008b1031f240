"""Every entry point: a mistake in the user's input is one line, `error: ...`, with exit status 2.

Each case runs the entry point's `main` through the runner the command uses
(`flags_common.guard`, flags parsed by `flags_common.parse_flags`), in this
process; two cases and the unexpected-error case run the real command in a
subprocess (full tier). Messages raised by the library are tested beside
their code (`test_text_corpus`, `test_tokenizers`, `test_partitions`,
`test_memory`, ...); here each entry point's own checks, and that each error
class reaches the user as one line.
"""

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest
from absl.testing import flagsaver

from experiments import (
  compare_algorithms,
  export_model,
  flags_common,
  generate,
  make_bpe_vocab,
  pretrain,
  run_experiment,
)
from tests import helpers
from tff_gpt import errors
from tff_gpt.data import client_data
from tff_gpt.training import config as config_lib
from tff_gpt.training import trainer

ENTRY_POINTS = {
  m.__name__.rsplit(".", 1)[-1]: m
  for m in (run_experiment, generate, export_model, compare_algorithms, make_bpe_vocab, pretrain)
}


def _cases(tmp):
  runs = f"--root_output_dir={tmp}/runs"
  corpus = tmp / "corpus.jsonl"
  helpers.write_jsonl_corpus(corpus)
  bad_jsonl = tmp / "bad.jsonl"
  bad_jsonl.write_text('{"client_id": "a", "text": "fine"}\n{not json\n')
  jsonl = ["--dataset=jsonl", f"--dataset_path={corpus}"]
  return [
    ("run_experiment", ["--total_rounds=0"], "--total_rounds must be >= 1"),
    ("run_experiment", ["--sequence_length=1"], "--sequence_length must be >= 2"),
    ("run_experiment", ["--client_learning_rate=-1"], "--client_learning_rate must be > 0"),
    ("run_experiment", ["--dataset=jsonl"], "--dataset_path is required with --dataset=jsonl"),
    (
      "run_experiment",
      [f"--dataset_path={corpus}"],
      "--dataset_path is only for --dataset=text_dir or jsonl",
    ),
    ("run_experiment", ["--tokenizer=bpe"], "--vocab_file and --merges_file are required"),
    ("run_experiment", ["--model_size=huge"], "--model_size must be one of"),
    (
      "run_experiment",
      ["--trainable=half"],
      "--trainable must be all, last_blocks:K, lora:R, ffa_lora:R, hetlora:R, flexlora:R or bitfit",
    ),
    ("run_experiment", ["--trainable=lora:0"], "the rank R must be >= 1"),
    ("run_experiment", ["--lora_alpha=-2"], "--lora_alpha must be > 0"),
    ("run_experiment", ["--experiment_name=a/b"], "--experiment_name may hold"),
    (
      "run_experiment",
      ["--partition=dirichlet", "--partition_clients=4", "--partition_alpha=0", "--partition_label=play"],
      "--partition_alpha must be > 0",
    ),
    ("run_experiment", ["--partition_alpha=0.5"], "only apply to --partition=iid or dirichlet"),
    ("run_experiment", [runs, *jsonl, "--partition=iid", "--partition_clients=500"], "needs at least 1000"),
    ("run_experiment", ["--client_weighting=num_examples", "--aggregator=dp_fixed"], "weight"),
    ("run_experiment", ["--aggregator=secure", "--round_parts=2"], "use --round_parts=1"),
    ("run_experiment", ["--examples=alpaca"], "--examples alpaca reads --dataset=jsonl or tfds"),
    (
      "run_experiment",
      [*jsonl, "--examples=pairs", "--response_separator="],
      "--response_separator must hold visible text",
    ),
    ("run_experiment", ["unexpected"], "Unexpected arguments"),
    ("generate", [runs, "--experiment_name=none"], "No run at"),
    ("export_model", [runs, "--experiment_name=none"], "No run at"),
    ("compare_algorithms", [runs, "--configuration=x: algorithm=fedadam"], "is not a flag"),
    ("compare_algorithms", [runs, "--configuration=x: --algorithm=nothing"], "--algorithm"),
    ("make_bpe_vocab", ["--dataset=jsonl", f"--dataset_path={tmp}/missing.jsonl"], "does not exist"),
    ("pretrain", ["--dataset=jsonl", f"--dataset_path={bad_jsonl}", "--groups=a"], "bad.jsonl:2: not valid"),
    ("pretrain", ["--examples=pairs"], "pretraining reads text; --examples=pairs"),
  ]


def _call(module, args, tmp, capsys) -> tuple[int, str]:
  """`(exit status, stderr)` of the entry point's command with `args`, run in this process."""
  args = [a for a in args if not a.startswith("--root_output_dir")]
  with flagsaver.flagsaver():
    try:
      argv = flags_common.parse_flags([module, f"--root_output_dir={tmp}/runs", *args])
      flags_common.guard(ENTRY_POINTS[module].main)(argv)
      status = 0
    except SystemExit as e:
      status = e.code
  return status, capsys.readouterr().err


def _one_line_error(status, stderr, expected) -> bool:
  lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
  return (
    status == 2
    and "Traceback" not in stderr
    and len(lines) == 1
    and expected in lines[0]
    and len(lines[0]) <= 400
  )


def test_each_entry_point_reports_user_errors_in_one_line_with_status_2(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("TFF_GPT_CACHE", str(tmp_path / "cache"))
  failures = []
  for module, args, expected in _cases(tmp_path):
    status, stderr = _call(module, args, tmp_path, capsys)
    if not _one_line_error(status, stderr, expected):
      failures.append(f"{module} {args} -> {status}: {stderr[-1500:]}")
  assert not failures, "\n\n".join(failures)
  assert not os.path.exists(tmp_path / "runs" / "checkpoints"), "a refused run left a run directory"


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
def test_the_commands_themselves_report_a_bad_flag_and_a_bad_corpus_in_one_line(tmp_path):
  """Two cases as real commands: absl's own flag parsing, and a corpus error inside a run."""
  bad_jsonl = tmp_path / "bad.jsonl"
  bad_jsonl.write_text('{"client_id": "a", "text": "fine"}\n{not json\n')
  cases = [
    ("run_experiment", ["--client_optimizer=lion"], "flag --client_optimizer=lion"),
    (
      "run_experiment",
      [f"--root_output_dir={tmp_path}/runs", "--dataset=jsonl", f"--dataset_path={bad_jsonl}"],
      "bad.jsonl:2: not valid JSON",
    ),
  ]
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    results = list(pool.map(lambda c: _run(c[0], c[1], tmp_path), cases))
  for (_, _, expected), result in zip(cases, results, strict=True):
    assert _one_line_error(result.returncode, result.stderr, expected), result.stderr[-1500:]


def test_every_project_error_is_a_user_input_error_or_a_run_failure():
  """Every exception class the library defines reaches the user as one line (`flags_common.guard`)."""
  import importlib
  import inspect
  import pkgutil

  import tff_gpt

  defined = set()
  for module in pkgutil.walk_packages(tff_gpt.__path__, "tff_gpt."):
    for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
      if issubclass(cls, Exception) and cls.__module__.startswith("tff_gpt."):
        defined.add(cls)
  ours = {e for e in defined if e not in (errors.UserInputError, errors.RunFailure)}
  assert {client_data.CorpusError, trainer.ResumeError, config_lib.ConfigError} <= ours  # Found by the walk.
  for error in ours:
    assert issubclass(error, errors.UserInputError | errors.RunFailure), error


@pytest.mark.full
def test_an_unexpected_error_keeps_its_traceback(tmp_path):
  """A corrupt run config is not a user mistake the code anticipates: it shows where it failed."""
  config = tmp_path / "runs" / "checkpoints" / "broken" / "run_config.json"
  config.parent.mkdir(parents=True)
  config.write_text(json.dumps({"experiment": {"total_rounds": "many"}, "model": {}}))
  result = _run("export_model", [f"--root_output_dir={tmp_path}/runs", "--experiment_name=broken"], tmp_path)
  assert result.returncode == 1 and "Traceback" in result.stderr, result.stderr[-2000:]
