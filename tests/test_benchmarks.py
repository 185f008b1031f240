"""The benchmark's quick mode runs end to end, so the benchmark cannot rot."""

import json
import math
import os
import shutil
import statistics
import subprocess
import sys

import pytest

pytestmark = pytest.mark.full  # Subprocess runs or benchmarks: ./test.sh --full.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_benchmark(tmp_path, module, *args, timeout=1200):
  """Runs `python -m <module> <args>` (in benchmarks/ unless it names a package); exit 0; its output."""
  log = tmp_path / f"{module}.log"
  with open(log, "w") as f:  # A file, not a pipe: TFF's worker inherits stdout.
    result = subprocess.run(
      [sys.executable, "-m", module if "." in module else f"benchmarks.{module}", *args],
      cwd=REPO,
      stdout=f,
      stderr=subprocess.STDOUT,
      timeout=timeout,
    )
  text = log.read_text()
  assert result.returncode == 0, text[-3000:]
  return text


@pytest.mark.slow
def test_quick_benchmark_prints_every_figure(tmp_path):
  out = tmp_path / "figures.json"
  text = _run_benchmark(tmp_path, "run_benchmarks", "--quick", "--out", str(out))
  figures = json.loads(out.read_text())
  for section in ("round_vs_central", "fixed_overhead", "scaling[tiny]", "memory_over_rounds", "concurrency"):
    assert f"== {section} ==" in text
    assert figures[section]
  # Figures only: how fast each variant is belongs to BENCHMARKS.md, not to a timed assertion.
  ratios = figures["round_vs_central"]
  variants = ("dataset_reduce", "dataset_iterator", "one_client_at_a_time", "tff_native_compiler")
  federated = [ratios[f"federated_over_central[{v}]"] for v in (*variants, "draws_initial_values")]
  assert all(0 < r < math.inf for r in federated), federated
  assert 0 < ratios["central_flops_fraction"] < 1
  fastest = max(ratios[f"central_tokens_per_s[{c}]"] for c in ("compiled_step_loop", "compiled_dataset_loop"))
  assert ratios["central_tokens_per_s"] == pytest.approx(fastest)
  overhead = figures["fixed_overhead"]
  assert overhead["round_no_data_s"] > 0 and overhead["round_one_batch_each_s"] > 0
  scaling = figures["scaling[tiny]"]
  assert set(scaling) == {"1", "3"}
  for clients, row in scaling.items():
    assert row["s_per_client"] == pytest.approx(row["s_per_round"] / int(clients)), row
  memory = figures["memory_over_rounds"]
  assert memory["rounds"] == 10 and memory["growth_after_settling_pct"] < 5  # No leak round after round.


@pytest.mark.slow
def test_quick_peft_benchmark_compares_modes(tmp_path):
  out = tmp_path / "peft.json"
  _run_benchmark(tmp_path, "peft", "--quick", "--modes=all,lora:2", "--out", str(out))
  rows = {row["mode"]: row for row in json.loads(out.read_text())["rows"]}
  assert set(rows) == {"all", "lora:2"}
  whole, lora = rows["all"], rows["lora:2"]
  assert whole["bytes_fraction_of_full"] == pytest.approx(1.0, abs=1e-3)
  assert lora["trained_parameters"] == 2 * 2 * (16 * 2 + 2 * 16)
  assert lora["client_download_bytes"] == 4 * lora["trained_parameters"]
  assert lora["bytes_fraction_of_full"] < 0.05
  for row in rows.values():
    assert row["federated_tokens_per_s"] > 0 and row["central_tokens_per_s"] > 0, row
    assert len(row["round_s"]) == 2


@pytest.mark.slow
def test_round_cost_splits_the_fixed_cost_by_process(tmp_path):
  out = tmp_path / "round_cost.json"
  _run_benchmark(tmp_path, "round_cost", "--rounds=2", "--repeats=1", "--out", str(out))
  figures = json.loads(out.read_text())
  rounds, loops = figures["empty_rounds"], figures["central_loops"]
  assert rounds["rounds"] == 2
  cpu = rounds["python_cpu_s_per_round"] + rounds["worker_cpu_s_per_round"]
  # The split accounts for the round: CPU time on 2 cores fits in the wall time, and the worker does work.
  assert 0 < rounds["worker_cpu_s_per_round"] and cpu <= 2.5 * rounds["s_per_round"], rounds
  tokens = {
    loop: loops[f"tokens_per_s[{loop}]"] for loop in ("compiled_step_loop", "compiled_dataset_loop", "fit")
  }
  assert all(t > 0 for t in tokens.values()), tokens


@pytest.mark.slow
def test_build_time_benchmark_sees_both_build_speedups_undone_and_done(tmp_path):
  """The build benchmark runs each setting; GPT-2 builds with far fewer AutoGraph conversions, no session."""
  out = tmp_path / "build.json"
  _run_benchmark(tmp_path, "build_time", "--model_sizes=tiny", "--repeats=1", f"--out={out}", timeout=900)
  median = json.loads(out.read_text())["tiny"]["median"]
  autograph, session, current = (median[s] for s in ("autograph", "session_constants", "current"))
  assert current["autograph_conversions"] < autograph["autograph_conversions"] / 3
  assert current["autograph_conversions"] == session["autograph_conversions"]
  # Keras's session functions are the constants of GPT-2's op layers, evaluated once per build.
  assert session["keras_session_functions"] >= 50 and current["keras_session_functions"] == 0


@pytest.mark.slow
def test_quick_central_replay_trains_every_configuration_centrally(tmp_path):
  out, plot = tmp_path / "central.json", tmp_path / "central.png"
  text = _run_benchmark(
    tmp_path, "studies.central_replay", "--quick", "--factors=0.5,1", "--out", str(out), "--plot", str(plot)
  )
  assert "| configuration | federated: client lr |" in text and plot.stat().st_size > 10_000
  results = json.loads(out.read_text())["results"]
  assert set(results) == {"gpt2_tiny"}
  for r in results.values():
    assert [e["round_num"] for e in r["federated"]["evals"]] == [1, 2]
    rate = r["federated"]["client_learning_rate"]
    assert [c["learning_rate"] for c in r["central"]] == pytest.approx([rate / 2, rate])
    for c in r["central"]:
      assert [e["round_num"] for e in c["evals"]] == [1, 2] and c["steps"] > 0
      assert c["examples"] == r["federated"]["train_sequences"]  # Every batch the clients trained on.
      assert all(math.isfinite(e["eval_loss"]) for e in c["evals"])
      assert c["final_loss_per_char"] == pytest.approx(c["final_eval_loss"], rel=1e-6)  # Characters.
    best = next(c for c in r["central"] if c["learning_rate"] == r["best_central_learning_rate"])
    assert best["evals"][1]["eval_loss"] < best["evals"][0]["eval_loss"]  # It learns.


@pytest.mark.slow
def test_quick_dialogue_and_lora_variant_studies_score_each_run_on_the_same_responses(tmp_path):
  out, work = tmp_path / "dialogue.json", str(tmp_path / "w")

  def run(module, *args):
    return _run_benchmark(tmp_path, module, "--quick", *args, "--out", str(out), "--work_dir", work)

  run("studies.dialogue")
  result = json.loads(out.read_text())
  rows = result["rows"]
  pairs, text = "federated LoRA, loss on responses", "federated LoRA, same pairs as plain text"
  assert set(rows) == {"pretrained, unchanged", pairs, text}
  tokens = {r["response_tokens"] for r in rows.values()}
  assert len(tokens) == 1  # Every model is scored on the same held-out response tokens.
  # The run's own federated evaluation and the Keras scoring agree: both count response tokens only.
  assert rows[pairs]["run_eval_perplexity"] == pytest.approx(rows[pairs]["response_perplexity"], rel=1e-3)
  plain = rows[text]
  assert plain["run_eval_perplexity"] != pytest.approx(plain["response_perplexity"], rel=1e-3)  # All tokens.
  assert result["pair_counts"]["test"]["pairs"] > 0
  # --keep_rows: the seed --out holds is kept, not run again (its runs are gone), and seed 1 is added.
  runs = tmp_path / "w" / "runs"  # Each run's checkpoints/, results/ and logdir/ directories.
  gone = list(runs.glob("*/lora_*"))
  assert gone
  for path in gone:
    shutil.rmtree(path)
  run("studies.dialogue", "--seeds=0,1", "--keep_rows")
  made = [p.name for p in runs.glob("results/lora_*")]
  assert sorted(made) == ["lora_pairs_s1", "lora_text_s1"]  # Seed 1's runs alone: seed 0's rows were kept.
  seeded = json.loads(out.read_text())
  by_seed = seeded["rows_by_seed"]
  assert set(by_seed) == {"0", "1"} and seeded["rows"] == rows
  assert by_seed["0"][pairs] == {k: v for k, v in rows[pairs].items() if k != "replies"}
  over = next(r for r in seeded["over_seeds"] if r["label"] == text)
  base = [by_seed[s][pairs]["response_loss"] for s in ("0", "1")]
  own = [by_seed[s][text]["response_loss"] for s in ("0", "1")]
  assert over["reference"] == pairs and over["values"] == own
  assert over["difference"] == pytest.approx((own[0] - base[0] + own[1] - base[1]) / 2)
  assert base[0] != base[1]  # Seed 1 trained on other clients.
  # LoRA's variants, one seed (their pairing over seeds: tests/test_studies.py), in the same work directory:
  # its pretrained preset is reused.
  out = tmp_path / "variants.json"
  assert "| variant | response perplexity |" in run("studies.lora_variants")
  variant_rows = json.loads(out.read_text())["rows"]
  assert len(variant_rows) == 5  # Four variants and the unchanged preset, scored on the same responses.
  assert {r["response_tokens"] for r in variant_rows.values()} == tokens
  by_kind = {label.split(",")[0]: r for label, r in variant_rows.items()}
  assert by_kind["FFA-LoRA"]["lora_gap_last"] < 1e-5 < by_kind["LoRA"]["lora_gap_last"]
  assert by_kind["FFA-LoRA"]["bytes_communicated"] < 0.55 * by_kind["LoRA"]["bytes_communicated"]
  for label in ("LoRA", "FFA-LoRA", "HetLoRA", "FlexLoRA"):
    p = by_kind[label]["personalization"]  # Quantiles of the clients' gains, in order; adapting moved them.
    assert p["gain_p10"] <= p["gain_median"] <= p["gain_p90"] and 0 <= p["fraction_improved"] <= 1
    assert p["personalized_loss_mean"] != p["global_loss_mean"]


@pytest.mark.slow
def test_quick_sentiment_and_summarization_studies_score_every_row_on_the_same_clients(tmp_path):
  from studies import sentiment, summarization

  out = tmp_path / "sentiment.json"
  work = str(tmp_path / "sentiment")
  # One seed: how the study pairs seeds is tested on hand-made rows (tests/test_studies.py).
  _run_benchmark(tmp_path, "studies.sentiment", "--quick", "--out", str(out), "--work_dir", work)
  result = json.loads(out.read_text())
  assert set(result["rows_by_seed"]) == {"0"}
  for rows in result["rows_by_seed"].values():
    assert set(rows) == {
      sentiment.HEAD,
      sentiment.WORDS,
      sentiment.CENTRAL,
      sentiment.FLOOR,
      sentiment.MAJORITY,
      sentiment.SKEW,
    }
    # Every row but the skewed one classifies the same clients' held-out reviews.
    assert rows[sentiment.HEAD]["eval_clients"] == rows[sentiment.WORDS]["eval_clients"] == 12
    assert rows[sentiment.FLOOR]["by_rate"]["0.1"]["clients"] == 12
    assert rows[sentiment.CENTRAL]["bytes_communicated"] == 0 < rows[sentiment.HEAD]["bytes_communicated"]
    floor, ceiling = rows[sentiment.FLOOR]["accuracy"], rows[sentiment.CENTRAL]["accuracy"]
    closed = (rows[sentiment.HEAD]["accuracy"] - floor) / (ceiling - floor) if ceiling > floor else None
    assert rows[sentiment.HEAD]["gap_closed"] == (pytest.approx(closed) if closed is not None else None)
  out = tmp_path / "summarization.json"
  work = str(tmp_path / "summarization")
  _run_benchmark(tmp_path, "studies.summarization", "--quick", "--out", str(out), "--work_dir", work)
  rows = json.loads(out.read_text())["rows_by_seed"]["0"]
  assert set(rows) == {summarization.UNCHANGED, summarization.FEDERATED, summarization.CENTRAL}
  for r in rows.values():
    assert 0 <= r["rougeL"] <= 1 and r["response_loss"] > 0
  # The federated row and the unchanged preset are scored on the same pairs: training moved the loss.
  assert rows[summarization.FEDERATED]["response_loss"] != rows[summarization.UNCHANGED]["response_loss"]


@pytest.mark.slow
def test_quick_memorization_study_audits_every_row_alike(tmp_path):
  out = tmp_path / "memorization.json"
  plot = tmp_path / "exposure.png"
  args = ["--quick", "--out", str(out), "--work_dir", str(tmp_path / "w"), "--plot", str(plot)]
  printed = _run_benchmark(tmp_path, "studies.memorization", *args)
  assert plot.stat().st_size > 0
  assert "| row (one seed) | exposure x4 | exposure x1 | never planted |" in printed
  rows = json.loads(out.read_text())["rows_by_seed"]["0"]
  clipped = "FedAvg, clipped at 1, no noise"
  assert list(rows) == ["FedAvg", "central, FedAvg's batches", "LoRA 8", clipped, "FedAvg, DP noise 1"]
  for row in rows.values():  # The same canaries, each row ranked against the same space.
    assert set(row["exposure"]) == {"0", "1", "4"} and row["space_bits"] == pytest.approx(math.log2(1000))
    assert 0 <= row["membership_auc"] <= 1
  assert rows["FedAvg, DP noise 1"]["dp_epsilon"] > 0 and rows["FedAvg"]["dp_epsilon"] is None
  assert rows[clipped]["dp_epsilon"] is None  # No noise: no guarantee (the run reports infinity).
  assert rows["central, FedAvg's batches"]["bytes_communicated"] == 0
  # Participation, computed without training, is what the trained FedAvg run's audit counted.
  import csv

  from tff_gpt.training import outputs

  seen = json.loads(out.read_text())["participation"]["0"]
  results = outputs.RunDirs.of(str(tmp_path / "w" / "runs"), "fedavg").results
  with open(os.path.join(results, "canaries.csv"), newline="") as f:
    planted = [r for r in csv.DictReader(f) if r["repeats"] != "0"]
  assert len({r["client"] for r in planted}) == 4  # Two canaries per repeat count, each in its own client.
  audited = {
    k: statistics.mean(int(r["rounds_aggregated"]) for r in planted if r["repeats"] == k) for k in "14"
  }
  assert {k: seen[k] for k in ("1", "4")} == pytest.approx(audited)
  assert "Rounds that aggregated the x4 canaries' clients (mean of 2), seeds 0:" in printed


@pytest.mark.slow
def test_quick_dropout_study_reaches_its_target_in_rounds_and_simulated_minutes(tmp_path):
  out, plot = tmp_path / "dropout.json", tmp_path / "dropout.png"
  args = ["--quick", "--out", str(out), "--work_dir", str(tmp_path / "w"), "--plot", str(plot)]
  printed = _run_benchmark(tmp_path, "studies.dropout", *args)
  assert plot.stat().st_size > 0 and "| no dropout | 4.0 |" in printed  # 4 clients a round, all report.
  rows = json.loads(out.read_text())["rows_by_seed"]["0"]
  assert list(rows) == ["no dropout", "dropout 0.5", "dropout 0.5, over-selection"]
  assert rows["no dropout"]["rounds_to_target"] == 2  # The target is its own loss at round 2.
  assert rows["dropout 0.5"]["mean_clients"] < rows["dropout 0.5, over-selection"]["mean_clients"] <= 4
  assert all(r["minutes"] > 0 for r in rows.values())


def test_cohort_benchmark_times_each_cohort_and_divides_by_its_clients(tmp_path):
  out = tmp_path / "cohorts.json"
  printed = _run_benchmark(
    tmp_path,
    "cohorts",
    "--cohorts",
    "2,4",
    "--part_sizes",
    "0,3",
    "--rounds",
    "1",
    "--model_size",
    "tiny",
    "--out",
    str(out),
  )
  rows = json.loads(out.read_text())["cohorts"]
  assert [(r["clients"], r["parts"]) for r in rows] == [(2, 1), (2, 1), (4, 1), (4, 2)]
  assert "(1.00x the first cohort's)" in printed and "4 clients in  2 part(s)" in printed
  for r in rows:
    assert r["s_per_client"] == pytest.approx(r["s_per_round"] / r["clients"])
    assert r["peak_mb"] >= r["peak_minus_before_mb"]


def test_quick_peers_benchmark_trains_the_same_clients_to_the_same_losses_in_flower(tmp_path):
  """tff_gpt and Flower (.venv-peers: PyTorch, transformers, PEFT) from the same initial weights, on the same
  clients' batches with the same optimizer: per-round train losses and the held-out loss agree, for the
  whole model and for tff_gpt's LoRA adapters run in PyTorch; PEFT's LoRA trains too."""
  out = tmp_path / "peers.json"
  text = _run_benchmark(tmp_path, "peers", "--quick", "--work_dir", str(tmp_path / "w"), "--out", str(out))
  whole, lora = json.loads(out.read_text())["rows"]
  for row, flower in ((whole, "flower"), (lora, "flower, tff_gpt's adapters")):
    tff, torch_side = row["train_loss"]["tff_gpt"], row["train_loss"][flower]
    assert len(tff) == len(torch_side) == 2
    assert torch_side[0] == pytest.approx(tff[0], rel=1e-4) and torch_side[1] == pytest.approx(
      tff[1], rel=1e-3
    )
    loss = row["heldout_loss"]
    assert loss[flower] == pytest.approx(loss["tff_gpt"], rel=1e-3) and loss["tff_gpt"] < loss["initial"]
    # The run's own federated evaluation and PyTorch's score of its Hugging Face export: the same batches.
    assert row["tff_gpt_own_eval_loss"] == pytest.approx(loss["tff_gpt"], rel=1e-4)
    for side in ("tff_gpt", "flower"):
      assert row[side]["tokens_per_second"] > 0 and row[side]["peak_pss_mb"] > 100
  assert math.isfinite(lora["heldout_loss"]["flower"])  # PEFT's adapters on c_attn.
  assert "tiny: tff_gpt" in text and "x); held-out loss" in text


def test_client_cost_times_rounds_with_no_step_and_with_steps(tmp_path):
  out = tmp_path / "cost.json"
  _run_benchmark(tmp_path, "client_cost", "--model_size", "tiny", "--rounds", "1", "--out", str(out))
  result = json.loads(out.read_text())
  assert set(result["by_batches"]) == {"0", "1", "2"} and len(result["settings"]["clients"]) == 4
  rows = result["by_batches"].values()
  assert all(row["s_per_round"] > 0 for row in rows)
  assert sum(row["worker_cpu_s_per_round"] for row in rows) > 0  # The worker did the clients' work.


def test_bpe_trace_benchmark_times_the_first_encode_in_each_setting(tmp_path):
  out = tmp_path / "bpe_trace.json"
  _run_benchmark(tmp_path, "bpe_trace", "--repeats=1", "--out", str(out))
  median = json.loads(out.read_text())["median"]
  assert set(median) == {"autograph", "current"}
  assert all(m["first_encode_s"] > 0 and m["second_encode_s"] > 0 for m in median.values())
