"""Prints the docs' generated results tables, each made from the results file it summarizes.

  .venv/bin/python scripts/headline_table.py            # prints every table
  .venv/bin/python scripts/headline_table.py --write    # replaces each in its page

Each table sits in its page between `<!-- NAME: scripts/headline_table.py -->`
and `<!-- end of NAME -->`; `tests/test_docs.py` fails when a page's table
differs from what this prints.
"""

import csv
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


# page: (block name, what makes it)
BLOCKS = {
  "README.md": ("headline table", headline_table),
  "docs/results.md": ("comparison table", comparison_table),
}


def markers(name: str) -> tuple[str, str]:
  return f"<!-- {name}: scripts/headline_table.py -->", f"<!-- end of {name} -->"


def page_with_table(page: str, text: str) -> str:
  """`text` (the page's contents) with its block between the markers made anew."""
  name, make = BLOCKS[page]
  start_marker, end_marker = markers(name)
  start, end = text.index(start_marker), text.index(end_marker) + len(end_marker)
  return text[:start] + "\n".join([start_marker, make(), end_marker]) + text[end:]


if __name__ == "__main__":
  for page, (name, make) in BLOCKS.items():
    path = os.path.join(REPO, page)
    if "--write" in sys.argv[1:]:
      with open(path) as f:
        text = page_with_table(page, f.read())
      with open(path, "w") as f:
        f.write(text)
    else:
      print(f"{page} ({name}):\n{make()}\n")
