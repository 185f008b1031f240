"""The docs agree with their sources: the generated results tables, the README's length, every local link."""

import glob
import os
import re

from tests import helpers

_LINK = re.compile(r"\]\(([^)\s#]+)(#[^)\s]*)?\)")


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


def test_generated_results_tables_match_their_results_files():
  import importlib.util

  spec = importlib.util.spec_from_file_location("headline_table", f"{helpers.REPO}/scripts/headline_table.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for name, (page, _) in module.BLOCKS.items():
    text = _read(f"{helpers.REPO}/{page}")
    assert (
      module.page_with_table(name, text) == text
    ), f"{page}'s {name}: run .venv/bin/python scripts/headline_table.py --write"


def test_readme_reads_in_five_minutes_and_benchmarks_keep_to_speed():
  assert len(_read(f"{helpers.REPO}/README.md").splitlines()) <= 250
  assert len(_read(f"{helpers.REPO}/BENCHMARKS.md").splitlines()) <= 500


def test_every_local_link_in_the_docs_points_at_a_file():
  pages = [
    f"{helpers.REPO}/README.md",
    f"{helpers.REPO}/BENCHMARKS.md",
    *glob.glob(f"{helpers.REPO}/docs/*.md"),
  ]
  broken = []
  for page in pages:
    for target, _ in _LINK.findall(_read(page)):
      if target.startswith(("http://", "https://", "mailto:")):
        continue
      if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(page), target))):
        broken.append(f"{os.path.relpath(page, helpers.REPO)} -> {target}")
  assert not broken, broken


_NAMED_TEST = re.compile(r"`(tests/test_\w+\.py)::(test_\w+)`")


def test_every_test_the_guarantees_table_names_exists():
  """docs/testing.md maps each guarantee to its test: a renamed or deleted test fails here."""
  text = _read(f"{helpers.REPO}/docs/testing.md")
  table = text[text.index("## Guarantees and the tests that hold them") :]
  named = _NAMED_TEST.findall(table)
  assert len(named) >= 20
  missing = [
    f"{path}::{name}"
    for path, name in named
    if not os.path.exists(f"{helpers.REPO}/{path}") or f"def {name}(" not in _read(f"{helpers.REPO}/{path}")
  ]
  assert not missing, missing
