"""Prints the docs' generated results tables, each made from the results file it summarizes.

  .venv/bin/python scripts/headline_table.py            # prints every table
  .venv/bin/python scripts/headline_table.py --write    # replaces each in its page

Each table sits in its page between `<!-- NAME: scripts/headline_table.py -->`
and `<!-- end of NAME -->`; `tests/test_docs.py` fails when a page's table
differs from what this prints.
"""

import csv
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADLINE_SOURCE = "studies/results_gpt2_vs_lstm_300_rounds.csv"
HEADLINE_COLUMNS = (
  ("configuration", "configuration"),
  ("model", "model"),
  ("tokenizer", "tokenizer"),
  ("client_lr", "client lr"),
  ("final_loss_per_char", "held-out loss per char, round 300"),
  ("final_accuracy", "next-token accuracy (own tokens)"),
  ("mb_communicated", "MB communicated"),
)
# The comparison's report (runs/shakespeare/report/comparison.md), copied with its CSVs and plot.
COMPARISON_SOURCE = "studies/results_compare_shakespeare.md"
COMPARISON_MADE = (
  "2026-12-03; the runs trained at commits 8b04eb2 and 2bb6e1b, which train alike, the report rewritten by "
  "the commit that added this file"
)
SAME_START_SOURCE = "studies/results_same_start.json"  # Written by `studies.same_start --out`.
SAME_START_MADE = (
  "2026-12-03; the rows at commit c9ff556, then with `--keep_rows` the central ceilings at 8562229 and "
  "the rows of client Adam 1e-4 and 4 local epochs at bc3b062"
)


def headline_table() -> str:
  """README.md's: GPT-2 against the LSTM over 300 rounds."""
  with open(os.path.join(REPO, HEADLINE_SOURCE), newline="") as f:
    rows = list(csv.DictReader(f))
  return "\n".join(
    [
      "| " + " | ".join(title for _, title in HEADLINE_COLUMNS) + " |",
      "|" + "---|" * len(HEADLINE_COLUMNS),
      *("| " + " | ".join(row[key] for key, _ in HEADLINE_COLUMNS) + " |" for row in rows),
      "",
      f"Source: [`{HEADLINE_SOURCE}`]({HEADLINE_SOURCE}), written by `.venv/bin/python -m "
      "experiments.compare_algorithms --flagfile=configs/gpt2_vs_lstm_300_rounds.flags` (2026-11-27, commits "
      "20b999f and fbf73bd; the runs and their reading in "
      "[docs/results.md](docs/results.md#a-comparison-on-shakespeare)).",
    ]
  )


def comparison_table() -> str:
  """docs/results.md's: the algorithm comparison over seeds, as its report wrote it."""
  with open(os.path.join(REPO, COMPARISON_SOURCE)) as f:
    report = f.read().strip()
  name = os.path.basename(COMPARISON_SOURCE)
  return (
    f"{report}\n\nSource: [`{COMPARISON_SOURCE}`](../{COMPARISON_SOURCE}) (beside it: the `.csv` of these "
    "rows, `_differences.csv` and `_grid.csv` with every run; the plot is "
    "`docs/comparison_shakespeare.png`), the report of `.venv/bin/python -m "
    f"experiments.compare_algorithms --flagfile=configs/compare_shakespeare.flags` ({COMPARISON_MADE}); "
    f"`{name}` is its `report/comparison.md`."
  )


def same_start_table(up: str, ceiling: bool) -> str:
  """GPT-2 and the LSTM pretrained alike, then fine-tuned federatedly (with `ceiling`, also against
  central training of the same batches); `up` leads from the page to REPO."""
  with open(os.path.join(REPO, SAME_START_SOURCE)) as f:
    result = json.load(f)
  tables = [result["table"], result["gain_table"]] if ceiling else [result["table"]]
  return (
    "\n\n".join(tables)
    + f"\n\nSource: [`{SAME_START_SOURCE}`]({up}{SAME_START_SOURCE}), written by `.venv/bin/python -m "
    f"studies.same_start --work_dir /tmp/same_start --out {SAME_START_SOURCE} --plot docs/same_start.png` "
    f"({SAME_START_MADE})."
  )


# block name: (page, what makes it)
BLOCKS = {
  "headline table": ("README.md", headline_table),
  "same-start headline": ("README.md", lambda: same_start_table("", ceiling=False)),
  "comparison table": ("docs/results.md", comparison_table),
  "same-start table": ("docs/results.md", lambda: same_start_table("../", ceiling=True)),
}


def markers(name: str) -> tuple[str, str]:
  return f"<!-- {name}: scripts/headline_table.py -->", f"<!-- end of {name} -->"


def page_with_table(name: str, text: str) -> str:
  """`text` (the contents of block `name`'s page) with that block between its markers made anew."""
  _, make = BLOCKS[name]
  start_marker, end_marker = markers(name)
  start, end = text.index(start_marker), text.index(end_marker) + len(end_marker)
  return text[:start] + "\n".join([start_marker, make(), end_marker]) + text[end:]


if __name__ == "__main__":
  for name, (page, make) in BLOCKS.items():
    path = os.path.join(REPO, page)
    if "--write" in sys.argv[1:]:
      with open(path) as f:
        text = page_with_table(name, f.read())
      with open(path, "w") as f:
        f.write(text)
    else:
      print(f"{page} ({name}):\n{make()}\n")
