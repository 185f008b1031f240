"""The studies' own arithmetic, on rows written by hand (their runs are tested in test_benchmarks)."""

import pytest

from studies import same_start_report


def _row(loss, sent, curve):
  return {"eval_loss_per_char": loss, "bytes_communicated": sent, "loss_per_char_curve": curve}


def test_same_start_reads_every_row_within_the_whole_model_runs_bytes():
  mb = 2**20
  rows = {
    same_start_report.BUDGET_ROW: _row(1.5, 100 * mb, [(10, 1.9, 25 * mb), (20, 1.5, 100 * mb)]),
    "cheaper": _row(1.4, 150 * mb, [(10, 1.8, 50 * mb), (20, 1.6, 100 * mb), (30, 1.4, 150 * mb)]),
    "dearer": _row(1.2, 400 * mb, [(10, 1.7, 200 * mb), (20, 1.2, 400 * mb)]),
    "unchanged": _row(1.7, 0, []),
  }
  assert (
    same_start_report.at_bytes(rows["cheaper"], 100 * mb) == 1.6
  )  # The last evaluation within, not the last.
  assert same_start_report.at_bytes(rows["dearer"], 100 * mb) is None
  lines = same_start_report.table(rows).splitlines()
  assert "within 100.0 MB" in lines[0]
  assert lines[2:] == [
    f"| {same_start_report.BUDGET_ROW} | 1.5000 | 1.5000 | 100.0 |",
    "| cheaper | 1.4000 | 1.6000 | 150.0 |",
    "| dearer | 1.2000 | - | 400.0 |",
    "| unchanged | 1.7000 | 1.7000 | 0.0 |",
  ]


def test_rows_over_seeds_give_means_intervals_and_paired_differences_from_their_reference():
  import numpy as np
  from scipy import stats

  from studies import runs

  by_seed = {  # A row and its reference, paired by seed: the reference moves with the seed, the gap not.
    s: {"ref": {"loss": 2.0 + 0.1 * s}, "row": {"loss": 1.9 + 0.1 * s + 0.01 * (s - 1)}} for s in (0, 1, 2)
  }
  summary = {r["label"]: r for r in runs.over_seeds(by_seed, "loss", lambda label: "ref")}
  ref, row = summary["ref"], summary["row"]
  assert "difference" not in ref and ref["seeds"] == 3 and ref["mean"] == np.mean([2.0, 2.1, 2.2])
  low, high = stats.t.interval(0.95, 2, loc=2.1, scale=stats.sem([2.0, 2.1, 2.2]))
  assert (ref["low"], ref["high"]) == (low, high)
  differences = [by_seed[s]["row"]["loss"] - by_seed[s]["ref"]["loss"] for s in (0, 1, 2)]
  assert row["difference"] == np.mean(differences)
  low, high = stats.t.interval(0.95, 2, loc=np.mean(differences), scale=stats.sem(differences))
  assert row["difference_low"] == low and row["difference_high"] == high < 0  # Excludes zero: paired.
  assert row["low"] < ref["mean"] < row["high"]  # Unpaired: no finding.
  lines = runs.seeds_table(list(summary.values()), "loss").splitlines()
  assert lines[2] == f"| ref | 3 | 2.1000 [{ref['low']:.4f}, {ref['high']:.4f}] |  |  |"
  assert (
    lines[3].startswith("| row | 3 | 2.0000 [") and f"-0.1000 [{low:.4f}, {high:.4f}] | ref |" in lines[3]
  )


def test_kept_rows_take_the_first_seeds_whole_table_and_a_preset_that_moved_stops_the_study():
  from studies import runs

  done = {
    "rows": {"a": {"loss": 1.0, "replies": ["r"]}, "b": {"loss": 2.0}},
    "rows_by_seed": {"0": {"a": {"loss": 1.0}}, "1": {"a": {"loss": 1.5}}},
  }
  assert runs.kept_rows(done) == {0: done["rows"], 1: {"a": {"loss": 1.5}}} and runs.kept_rows({}) == {}
  runs.same_preset(4.342155456542969, 4.342159271240234, "the preset")  # Pretrained again: 9e-7 of it.
  with pytest.raises(SystemExit, match=r"^error: the preset pretrained again ends at held-out loss 4.54,"):
    runs.same_preset(4.5371, 4.54, "the preset")


def test_sentiment_over_seeds_pairs_each_row_with_its_reference_and_the_gap_closed():
  from studies import sentiment

  def rows(seed):  # The head closes (0.7 - 0.6) / (0.9 - 0.6) of the gap at seed 0, 0.15 / 0.3 at seed 1.
    accuracy = {
      sentiment.HEAD: 0.7 + 0.05 * seed,
      sentiment.WORDS: 0.65,
      sentiment.CENTRAL: 0.9,
      sentiment.FLOOR: 0.6,
      sentiment.MAJORITY: 0.55,
      sentiment.SKEW: 0.5 + 0.01 * seed,
    }
    out = {
      label: {"accuracy": a, "macro_f1": a - 0.1, "bytes_communicated": 0} for label, a in accuracy.items()
    }
    for label in (sentiment.HEAD, sentiment.WORDS):
      out[label]["gap_closed"] = (accuracy[label] - 0.6) / 0.3
    return out

  settings = sentiment.settings(quick=True)
  result = sentiment.summarize(settings, {}, {0: rows(0), 1: rows(1)}, "work")
  over = {r["label"]: r for r in result["over_seeds"]}
  assert over[sentiment.SKEW]["reference"] == sentiment.HEAD  # Skew against the same method unskewed.
  assert over[sentiment.SKEW]["difference"] == pytest.approx(((0.5 - 0.7) + (0.51 - 0.75)) / 2)
  assert over[sentiment.HEAD]["reference"] == sentiment.CENTRAL
  assert "reference" not in over[sentiment.CENTRAL]
  closed = {r["label"]: r for r in result["gap_closed"]}
  assert closed[sentiment.HEAD]["values"] == pytest.approx([1 / 3, 0.5])
  assert sentiment.doc_table(result).splitlines()[0].startswith("| row (2 seeds) | accuracy |")
  assert sentiment.summarize(settings, {}, {0: rows(0)}, "work").keys() == {
    "settings",
    "pretraining",
    "rows_by_seed",
    "work_dir",
  }  # One seed: no intervals.


def test_lora_variants_over_seeds_pair_each_variant_with_lora_of_its_seed():
  from studies import lora_variants

  losses = {"pretrained, unchanged": 3.0, "LoRA, rank 8": 2.0, "FFA-LoRA, rank 8": 2.1}
  by_seed = {s: {k: {"response_loss": v + 0.1 * s} for k, v in losses.items()} for s in (0, 1)}
  by_seed[1]["FFA-LoRA, rank 8"]["response_loss"] += 0.02  # Seed 1: FFA 0.12 above LoRA, seed 0: 0.1.
  result = lora_variants.over_seeds(by_seed)
  over = {r["label"]: r for r in result["over_seeds"]}
  assert over["FFA-LoRA, rank 8"]["reference"] == "LoRA, rank 8"
  assert over["FFA-LoRA, rank 8"]["values"] == pytest.approx([2.1, 2.22])
  assert over["FFA-LoRA, rank 8"]["difference"] == pytest.approx(0.11)
  assert "difference" not in over["LoRA, rank 8"] and set(result["rows_by_seed"]) == {"0", "1"}
  assert result["seeds_table"].splitlines()[0].startswith("| row | seeds | response loss (nats per token)")
