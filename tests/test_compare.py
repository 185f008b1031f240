"""experiments/compare_algorithms.py: same clients for every configuration, one report."""

import dataclasses
import glob
import os

import pytest
import tensorflow_federated as tff
from absl import flags
from absl.testing import flagsaver

from experiments import compare_algorithms, flags_common
from tests import helpers
from tff_gpt import comparison, runtime
from tff_gpt.comparison import stats as comparison_stats
from tff_gpt.models import tff_model
from tff_gpt.training import config as config_lib
from tff_gpt.training import outputs, trainer


def test_parse_configuration_forms(tmp_path):
  assert comparison.parse_configuration("fedyogi").overrides == {"algorithm": "fedyogi"}
  dp = comparison.parse_configuration("fedavg_unweighted+dp_fixed")
  assert dp.name == "fedavg_unweighted-dp_fixed"
  assert dp.overrides == {
    "algorithm": "fedavg_unweighted",
    "aggregator": "dp_fixed",
    "client_weighting": "uniform",
  }
  assert comparison.parse_configuration("char_lstm").overrides == {"model": "char_lstm"}

  tuned = comparison.parse_configuration(
    "adam: --algorithm=fedadam --server_learning_rate=0.01,0.1 --server_beta_2=0.9"
  )
  assert tuned.overrides == {"algorithm": "fedadam", "server_beta_2": 0.9}
  assert tuned.server_learning_rates == [0.01, 0.1] and tuned.client_learning_rates == []

  flagfile = tmp_path / "prox.cfg"
  flagfile.write_text("--algorithm=fedprox\n--proximal_strength=0.1\n--client_learning_rate=0.1,0.3\n")
  prox = comparison.parse_configuration(f"prox: --flagfile={flagfile}")
  assert prox.overrides == {"algorithm": "fedprox", "proximal_strength": 0.1}
  assert prox.client_learning_rates == [0.1, 0.3]

  assert comparison.parse_configuration("q: --noexport --max_elements_per_client=0").overrides == {
    "export": False,
    "max_elements_per_client": None,
  }
  for bad in ("fedfoo", "x: --algorithm=fedfoo", "x: --no_such_flag=1", "x: --total_rounds=ten"):
    with pytest.raises(comparison.ConfigurationError):
      comparison.parse_configuration(bad)


@pytest.mark.parametrize(
  "path", sorted(glob.glob(os.path.join(helpers.REPO, "configs", "*.flags"))), ids=os.path.basename
)
def test_every_shipped_comparison_flagfile_parses_and_validates(path, tmp_path):
  """The README's and BENCHMARKS' reproduce commands: every grid point is a valid experiment."""
  args = flags.FLAGS.read_flags_from_files([f"--flagfile={path}"], force_gnu=False)
  with flagsaver.flagsaver():
    flags.FLAGS(["compare_algorithms", *args])
    base = flags_common.config_from_flags()
    base.validate()
    specs = list(flags.FLAGS.configuration)
    configs = [
      config
      for spec in specs
      for config in comparison.grid_configs(base, comparison.parse_configuration(spec), str(tmp_path))
    ]
  assert len(specs) >= 2 and len(configs) >= len(specs)
  assert len({c.experiment_name for c in configs}) == len(configs)
  # Read without absl (as the studies do), the same base and configurations.
  same_base, configurations, _ = comparison.read_comparison(path)
  assert same_base == base
  assert configurations == [comparison.parse_configuration(spec) for spec in specs]
  # What the reader skips is exactly the comparison's own flags.
  own = {f.name for f in flags.FLAGS.get_flags_for_module(compare_algorithms)}
  assert own - {"comparison_name", "configuration"} == set(comparison.COMPARISON_FLAGS)


def test_grid_names_and_values(tmp_path):
  base = helpers.tiny_config(tmp_path)
  configuration = comparison.Configuration("adam", {"algorithm": "fedadam"}, [0.1, 0.3], [0.01])
  configs = comparison.grid_configs(base, configuration, str(tmp_path / "cmp"))
  assert [c.experiment_name for c in configs] == ["adam_clr0.1_slr0.01", "adam_clr0.3_slr0.01"]
  assert [(c.client_learning_rate, c.server_learning_rate) for c in configs] == [(0.1, 0.01), (0.3, 0.01)]
  assert {c.seed for c in configs} == {base.seed}
  bad = comparison.Configuration("dp", {"aggregator": "dp_fixed"})
  with pytest.raises(ValueError, match="Configuration 'dp'.*dp_fixed"):
    comparison.grid_configs(base, bad, str(tmp_path / "cmp"))


@pytest.mark.full
def test_comparison_sees_the_same_clients_and_writes_the_report(tmp_path, capfd, bpe_files):
  config = helpers.tiny_config(tmp_path, clients_per_round=2)
  values = {k: v for k, v in config.to_dict().items() if v is not None}
  bpe = f"bpe: --tokenizer=bpe --vocab_file={bpe_files[0]} --merges_file={bpe_files[1]}"
  # A client rate of 100 diverges (tests/test_divergence.py has the run itself): prox's second grid point,
  # whose round-2 train loss is NaN.
  configurations = [
    "fedavg",
    "prox: --algorithm=fedprox --client_learning_rate=0.5,100",
    "char_lstm",
    bpe,
  ]
  with flagsaver.flagsaver(**values, configuration=configurations, comparison_name="cmp", target_loss=10.0):
    report = compare_algorithms.run()
  out = capfd.readouterr().out
  assert "prox_clr100: Round 2 diverged: the round's train loss is nan" in out
  root = os.path.join(values["root_output_dir"], "cmp")
  runs = ["fedavg", "prox_clr0.5", "char_lstm", "bpe"]
  sampled = [outputs.read_sampled_clients(outputs.RunDirs.of(root, run)) for run in runs]
  sample = tff.simulation.build_uniform_sampling_fn(sorted(helpers.PATTERNS), replace=False, random_seed=0)
  assert sampled[0] == {1: sample(1, 2), 2: sample(2, 2)}
  for other in sampled[1:]:
    assert other == sampled[0]

  assert [r["configuration"] for r in report["rows"]] == ["fedavg", "prox", "char_lstm", "bpe"]
  assert {g["run"]: g["diverged_round"] for g in report["grid"] if g["diverged_round"] != ""} == {
    "prox_clr100": 2
  }
  assert len(report["grid"]) == 5
  prox_losses = [g["final_eval_loss"] for g in report["grid"] if g["configuration"] == "prox"]
  assert report["rows"][1]["final_eval_loss"] == min(x for x in prox_losses if x != "")  # Not the diverged.
  assert report["rows"][2]["model"] == "char_lstm"
  assert all(r["rounds_to_target"] == 1 for r in report["rows"])
  with open(report["markdown"]) as f:
    table = f.read()
  assert sum(line.startswith("| ") for line in table.splitlines()) == 5  # Header and four configurations.
  assert "no longer finite, stopped; see grid.csv): prox_clr100 (round 2)." in table
  assert os.path.getsize(report["plot"]) > 20_000

  # Two tokenizers: the report compares by loss per character, which is the loss itself for characters.
  assert "final_loss_per_char" in table.splitlines()[0] and "different tokenizers (bpe, char)" in table
  rows = {r["configuration"]: r for r in report["rows"]}
  for name in ("fedavg", "prox", "char_lstm"):
    assert rows[name]["final_loss_per_char"] == rows[name]["final_eval_loss"]
  assert rows["bpe"]["tokenizer"] == "bpe"
  bpe_summary = outputs.read_json(outputs.RunDirs.of(root, "bpe").summary)
  assert rows["bpe"]["final_loss_per_char"] == round(bpe_summary["eval_loss_per_char"], 4)
  assert rows["bpe"]["final_loss_per_char"] < rows["bpe"]["final_eval_loss"]

  capfd.readouterr()
  with flagsaver.flagsaver(**values, configuration=configurations, comparison_name="cmp"):
    compare_algorithms.run()
  out = capfd.readouterr().out
  assert out.count("finished before, skipped") == 4 and out.count("diverged before, skipped") == 1


@pytest.mark.full
def test_comparison_of_trainable_modes(tmp_path):
  """Configurations may differ in --trainable; each run keeps its own frozen weights."""
  config = helpers.tiny_config(tmp_path, clients_per_round=2)
  values = {k: v for k, v in config.to_dict().items() if v is not None}
  configurations = ["whole: --trainable=all", "lora: --trainable=lora:2 --lora_alpha=4"]
  with flagsaver.flagsaver(**values, configuration=configurations, comparison_name="modes"):
    report = compare_algorithms.run()
  whole, lora = report["rows"]
  assert (whole["configuration"], lora["configuration"]) == ("whole", "lora")
  root = os.path.join(values["root_output_dir"], "modes")
  sent = {
    name: outputs.read_json(outputs.RunDirs.of(root, name).summary)["bytes_communicated"]
    for name in ("whole", "lora")
  }
  # Every round each client moves the trained weights down and up, float32, and its weight: 8 P + 4 bytes.
  model = outputs.read_json(outputs.RunDirs.of(root, "whole").run_config)["model"]
  whole_params, lora_params = tff_model.build_keras_model(model).count_params(), 4 * (16 * 2 + 2 * 16)
  assert sent["lora"] / sent["whole"] == pytest.approx((8 * lora_params + 4) / (8 * whole_params + 4))
  assert os.path.isdir(outputs.RunDirs.of(root, "lora").frozen_weights)
  assert not os.path.exists(outputs.RunDirs.of(root, "whole").frozen_weights)
  with open(report["markdown"]) as f:
    assert "per_char" not in f.readline()  # One tokenizer: losses per token only.


@pytest.mark.full
def test_a_comparison_across_partitions_reports_their_heterogeneity(tmp_path):
  config = helpers.tiny_config(
    tmp_path,
    clients_per_round=2,
    total_rounds=1,
    partition="dirichlet",
    partition_clients=4,
    partition_label="client",
    partition_alpha=1.0,
  )
  values = {k: v for k, v in config.to_dict().items() if v is not None}
  configurations = ["a0.05: --partition_alpha=0.05", "a1000: --partition_alpha=1000"]
  with flagsaver.flagsaver(**values, configuration=configurations, comparison_name="het"):
    report = compare_algorithms.run()
  rows = {r["configuration"]: r for r in report["rows"]}
  assert rows["a0.05"]["partition_alpha"] == 0.05 and rows["a1000"]["partition_alpha"] == 1000
  assert rows["a0.05"]["mean_label_tv"] > rows["a1000"]["mean_label_tv"]
  assert rows["a0.05"]["partition"].startswith("dirichlet over 4 clients, alpha 0.05 over client")
  with open(report["markdown"]) as f:
    header = f.readline()
  assert "mean_label_tv" in header and "size_gini" in header
  assert os.path.getsize(report["heterogeneity_plot"]) > 10_000


def test_intervals_and_paired_differences_over_seeds():
  mean, low, high = comparison_stats.interval([1.0, 2.0, 3.0, 4.0])
  # Student's t with 3 degrees of freedom: t(0.975) = 3.1824; sd 1.2910, so the half-width is 2.0543.
  assert (mean, round(low, 3), round(high, 3)) == (2.5, 0.446, 4.554)
  assert comparison_stats.interval([2.0]) == (2.0, "", "")
  figures = dict.fromkeys(comparison_stats.AVERAGED, 1.0)
  point = [figures | dict(run=f"r{s}", diverged_round="", train_seconds=100 + s / 3) for s in range(3)]
  summary = comparison_stats.summarize_point(point)
  assert (
    summary["seeds"] == 3
    and summary["train_seconds"] == 100.3
    and summary["final_eval_loss_ci"] == ("[1.0000, 1.0000]")
  )

  def runs(configuration, losses):
    return [
      dict(configuration=configuration, seed=s, run=f"{configuration}_s{s}", final_eval_loss=loss)
      for s, loss in enumerate(losses)
    ]

  best = {
    "fedavg": ({}, runs("fedavg", [2.0, 2.1, 1.9])),
    "better": ({}, runs("better", [1.9, 2.0, 1.8])),  # 0.1 lower on every seed: the interval excludes 0.
    "same": ({}, runs("same", [2.2, 1.9, 1.95])),
  }
  diffs = {d["configuration"]: d for d in comparison_stats.paired_differences(best, "fedavg", "eval_loss")}
  assert diffs["better"]["mean_difference"] == -0.1 and diffs["better"]["excludes_zero"]
  assert not diffs["same"]["excludes_zero"]
  text = comparison_stats.conclusions(list(diffs.values()), "fedavg")
  assert "lower final test loss than fedavg: better" in text and "includes zero): same" in text


@pytest.mark.full
def test_seeds_pair_the_runs_and_validation_clients_choose_the_grid_point(tmp_path):
  config = helpers.tiny_config(tmp_path, clients_per_round=2, total_rounds=1, validation_clients=2)
  values = {k: v for k, v in config.to_dict().items() if v is not None}
  configurations = ["fedavg", "prox: --algorithm=fedprox --client_learning_rate=0.1,0.5"]
  flags = dict(configuration=configurations, comparison_name="seeds", seeds=["0", "1"], parallel_runs=2)
  with flagsaver.flagsaver(**values, **flags):  # Two runs at a time, each in a process of its own.
    report = compare_algorithms.run()
  root = os.path.join(values["root_output_dir"], "seeds")
  # A run trained in a process of the pool equals the same run trained here.
  here = dataclasses.replace(config, root_output_dir=str(tmp_path / "here"), experiment_name="fedavg_s0")
  with runtime.execution_context():
    alone = trainer.FederatedExperiment(here, progress=False).run()
  pooled = outputs.read_json(outputs.RunDirs.of(root, "fedavg_s0").summary)
  assert pooled["eval_loss"] == pytest.approx(alone["eval_loss"], rel=1e-6)
  sampled = {
    run: outputs.read_sampled_clients(outputs.RunDirs.of(root, run))
    for run in ("fedavg_s0", "fedavg_s1", "prox_clr0.1_s0", "prox_clr0.5_s1")
  }
  assert sampled["fedavg_s0"] != sampled["fedavg_s1"]  # Another seed, other clients.
  assert (
    sampled["fedavg_s0"] == sampled["prox_clr0.1_s0"] and sampled["fedavg_s1"] == sampled["prox_clr0.5_s1"]
  )
  summary = outputs.read_json(outputs.RunDirs.of(root, "fedavg_s0").summary)
  assert summary["eval_clients"] == 2 and summary["validation_clients"] == 2 and "val_loss" in summary
  rows = {r["configuration"]: r for r in report["rows"]}
  assert rows["fedavg"]["seeds"] == 2 and rows["fedavg"]["final_eval_loss_ci"].startswith("[")
  (difference,) = report["differences"]
  assert difference["configuration"] == "prox" and difference["seeds"] == 2
  with open(report["markdown"]) as f:
    text = f.read()
  assert "2 validation clients" in text and "Over 2 paired seeds" in text
  assert (
    "_per_char" not in text.splitlines()[0]
  )  # One tokenizer: no per-character columns, intervals neither.

  # The grid point is chosen on validation clients: test losses that favour the other point change nothing.
  chosen = rows["prox"]["grid_point"]
  other = next(p for p in ("prox_clr0.1", "prox_clr0.5") if p != chosen)
  for seed in (0, 1):
    dirs = outputs.RunDirs.of(root, f"{other}_s{seed}")
    metrics = outputs.read_metrics(dirs)
    for row in metrics:
      row["eval_loss"] = "0.001"
    outputs.write_rows(dirs.metrics_csv, metrics)
  records = comparison.run_comparison(
    config_lib.ExperimentConfig(**values),
    [comparison.parse_configuration(c) for c in configurations],
    comparison_dir=root,
    seeds=[0, 1],
    progress=False,
  )
  for record in records:  # The summaries too: the final test loss of the other point is the lowest now.
    if record["grid_point"] == other:
      record["summary"]["eval_loss"] = 0.001
  again = comparison.write_report(records, root, select_on="validation")
  assert {r["configuration"]: r for r in again["rows"]}["prox"]["grid_point"] == chosen
  on_test = comparison.write_report(records, root, select_on="test")
  assert {r["configuration"]: r for r in on_test["rows"]}["prox"]["grid_point"] == other
