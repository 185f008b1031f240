"""What the studies share: their command line and where their result goes."""

import argparse
import json
import os

STUDIES = os.path.dirname(os.path.abspath(__file__))


def parser(doc: str, *, quick: bool = True, work_dir: str | None = None) -> argparse.ArgumentParser:
  """`--out` (and `--quick`, `--work_dir` with `work_dir` as its help), described by `doc`'s first line."""
  p = argparse.ArgumentParser(description=doc.splitlines()[0])
  if quick:
    p.add_argument("--quick", action="store_true", help="Tiny model and few rounds (for tests).")
  p.add_argument("--out", default="", help="Write the results as JSON here.")
  if work_dir is not None:
    p.add_argument("--work_dir", default="", help=work_dir)
  return p


def write(result: dict, out: str) -> dict:
  """Writes `result` as JSON to `out` (when given); returns it."""
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=1)
  return result


def read(name: str) -> dict:
  """A study's committed results file, `studies/<name>` (e.g. "results_dialogue.json")."""
  with open(os.path.join(STUDIES, name)) as f:
    return json.load(f)
