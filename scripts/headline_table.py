"""Prints the README's headline results table, generated from the results file it summarizes.

  .venv/bin/python scripts/headline_table.py            # prints the table
  .venv/bin/python scripts/headline_table.py --write    # replaces it in README.md

`tests/test_docs.py` fails when README.md's table differs from what this prints.
"""

import csv
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = "studies/results_gpt2_vs_lstm_300_rounds.csv"
START, END = "<!-- headline table: scripts/headline_table.py -->", "<!-- end of headline table -->"
COLUMNS = (
  ("configuration", "configuration"),
  ("model", "model"),
  ("tokenizer", "tokenizer"),
  ("client_lr", "client lr"),
  ("final_loss_per_char", "held-out loss per char, round 300"),
  ("final_accuracy", "next-token accuracy (own tokens)"),
  ("mb_communicated", "MB communicated"),
)


def table() -> str:
  with open(os.path.join(REPO, SOURCE), newline="") as f:
    rows = list(csv.DictReader(f))
  lines = [
    "| " + " | ".join(title for _, title in COLUMNS) + " |",
    "|" + "---|" * len(COLUMNS),
    *("| " + " | ".join(row[key] for key, _ in COLUMNS) + " |" for row in rows),
    "",
    f"Source: [`{SOURCE}`]({SOURCE}), written by `.venv/bin/python -m experiments.compare_algorithms "
    "--flagfile=configs/gpt2_vs_lstm_300_rounds.flags` (2026-11-27, commits 20b999f and fbf73bd; the runs "
    "and their reading in [docs/results.md](docs/results.md#a-comparison-on-shakespeare)).",
  ]
  return "\n".join([START, *lines, END])


def readme_with_table(readme: str) -> str:
  """`readme` with the block between the markers replaced by `table()`."""
  start, end = readme.index(START), readme.index(END) + len(END)
  return readme[:start] + table() + readme[end:]


if __name__ == "__main__":
  path = os.path.join(REPO, "README.md")
  if "--write" in sys.argv[1:]:
    with open(path) as f:
      text = readme_with_table(f.read())
    with open(path, "w") as f:
      f.write(text)
  else:
    print(table())
