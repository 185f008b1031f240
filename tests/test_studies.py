"""The studies' own arithmetic, on rows written by hand (their runs are tested in test_benchmarks)."""

from studies import same_start


def _row(loss, sent, curve):
  return {"eval_loss_per_char": loss, "bytes_communicated": sent, "loss_per_char_curve": curve}


def test_same_start_reads_every_row_within_the_whole_model_runs_bytes():
  mb = 2**20
  rows = {
    same_start.BUDGET_ROW: _row(1.5, 100 * mb, [(10, 1.9, 25 * mb), (20, 1.5, 100 * mb)]),
    "cheaper": _row(1.4, 150 * mb, [(10, 1.8, 50 * mb), (20, 1.6, 100 * mb), (30, 1.4, 150 * mb)]),
    "dearer": _row(1.2, 400 * mb, [(10, 1.7, 200 * mb), (20, 1.2, 400 * mb)]),
    "unchanged": _row(1.7, 0, []),
  }
  assert same_start.at_bytes(rows["cheaper"], 100 * mb) == 1.6  # The last evaluation within, not the last.
  assert same_start.at_bytes(rows["dearer"], 100 * mb) is None
  lines = same_start.table(rows).splitlines()
  assert "within 100.0 MB" in lines[0]
  assert lines[2:] == [
    f"| {same_start.BUDGET_ROW} | 1.5000 | 1.5000 | 100.0 |",
    "| cheaper | 1.4000 | 1.6000 | 150.0 |",
    "| dearer | 1.2000 | - | 400.0 |",
    "| unchanged | 1.7000 | 1.7000 | 0.0 |",
  ]
