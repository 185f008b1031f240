"""Shared fixtures: a TFF execution context, a per-test cache, small corpora."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

from tests import helpers  # noqa: E402
from tff_gpt import runtime  # noqa: E402


def pytest_unconfigure(config):
  runtime.shutdown()  # Also TFF's import-time context, in the process that only collects (xdist).


def pytest_configure(config):
  # absl flags are parsed by app.run in the scripts; tests set them with flagsaver.
  flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="session", autouse=True)
def _shutdown_tff_at_end():
  runtime.set_up()  # The project's context from the first test on, never TFF's import-time default.
  yield
  runtime.shutdown()


@pytest.fixture(autouse=True)
def tff_context():
  """Installs TFF's context when none is (the entry points drop theirs on exit)."""
  helpers.ensure_tff_context()


@pytest.fixture
def cache_dir(tmp_path):
  return str(tmp_path / "cache")


@pytest.fixture
def jsonl_corpus(tmp_path):
  return helpers.write_jsonl_corpus(tmp_path / "corpus.jsonl")


@pytest.fixture
def bpe_files(tmp_path):
  return helpers.write_bpe_files(tmp_path / "bpe")
