"""TFF's federated text benchmarks from files the user already has.

`tff.simulation.datasets.shakespeare.load_data(cache_dir)` and
`...stackoverflow.load_data(cache_dir)` read `shakespeare.sqlite` and
`stackoverflow.sqlite` from their cache directory, and download them when
absent. This project never downloads: it checks the files first, then reads
them through TFF's loaders, keeping TFF's own train/test split of each client
(the natural partition) or pooling a client's examples before a partition
deals them.

- Shakespeare: 715 roles, `snippets` text (LEAF's preprocessing).
- Stack Overflow: `tokens` (lower-cased, space-separated words) of the train
  split, held out from the test split, as TFF's next-word baseline
  (`tff.simulation.baselines.stackoverflow`) uses them; its vocabulary is the
  most frequent words of `stackoverflow.word_count` (see
  `tokenizers.WordTokenizer`). The full dataset has 342,477 training users:
  `max_clients` reads a seeded sample of them.
"""

import os

import numpy as np
import tensorflow_federated as tff

from tff_gpt.data import client_data, partitions

SHAKESPEARE_FILE = "shakespeare.sqlite"
STACKOVERFLOW_FILE = "stackoverflow.sqlite"
WORD_COUNT_FILE = "stackoverflow.word_count"
_SOURCES = "https://storage.googleapis.com/tff-datasets-public/"


def _require_file(cache_dir: str | None, filename: str, dataset: str) -> str:
  if not cache_dir:
    raise client_data.CorpusError(
      f"--dataset={dataset} reads TFF's {filename} from --tff_cache_dir: pass the directory that holds it."
    )
  path = os.path.join(cache_dir, filename)
  if not os.path.isfile(path):
    raise client_data.CorpusError(
      f"--tff_cache_dir {cache_dir!r} has no {filename} (TFF's {dataset[4:]} data); this project does not "
      f"download. Fetch {_SOURCES}{filename}.lzma where there is network, `unxz` it into that directory."
    )
  return path


def word_count_file(cache_dir: str) -> str:
  """Where TFF's Stack Overflow word counts are: `<cache_dir>/` or Keras's `<cache_dir>/datasets/`."""
  for path in (
    os.path.join(cache_dir, WORD_COUNT_FILE),
    os.path.join(cache_dir, "datasets", WORD_COUNT_FILE),
  ):
    if os.path.isfile(path):
      return path
  raise client_data.CorpusError(
    f"--tff_cache_dir {cache_dir!r} has no {WORD_COUNT_FILE} for the word vocabulary. Fetch "
    f"{_SOURCES}stackoverflow.word_count.tar.bz2 and extract it there, or pass --vocab_file."
  )


def _texts(data: tff.simulation.datasets.ClientData, client_ids, field: str) -> dict[str, list[str]]:
  out = {}
  for cid in client_ids:
    dataset = data.create_tf_dataset_for_client(cid).map(lambda e: e[field])
    out[cid] = [t.decode("utf-8") for t in dataset.as_numpy_iterator()]
  return out


def _load(loader, path: str):
  try:
    return loader(cache_dir=os.path.dirname(path))
  except Exception as e:  # A file that is not TFF's SQL client data (DatabaseFormatError, sqlite3 errors).
    raise client_data.CorpusError(
      f"{path} is not TFF's SQL client data ({type(e).__name__}: {str(e).splitlines()[0][:160]}). "
      "Replace it with the file TFF publishes."
    ) from e


def _sample(client_ids, max_clients: int | None, seed: int) -> list[str]:
  client_ids = sorted(client_ids)
  if max_clients is None or max_clients >= len(client_ids):
    return client_ids
  picked = np.random.default_rng([seed, 0x50F]).choice(len(client_ids), size=max_clients, replace=False)
  return sorted(client_ids[i] for i in picked)


def _parse(train, test, field: str, max_clients: int | None, seed: int) -> client_data.ParsedCorpus:
  ids = _sample(train.client_ids, max_clients, seed)
  test_ids = set(test.client_ids)
  return client_data.ParsedCorpus(
    clients=_texts(train, ids, field), test=_texts(test, [c for c in ids if c in test_ids], field)
  )


def parse_shakespeare(
  path: str, *, max_clients: int | None = None, seed: int = 0
) -> client_data.ParsedCorpus:
  """TFF's Shakespeare `snippets`, each client's train and test split as TFF has them."""
  train, test = _load(tff.simulation.datasets.shakespeare.load_data, path)
  return _parse(train, test, "snippets", max_clients, seed)


def parse_stackoverflow(
  path: str, *, max_clients: int | None = None, seed: int = 0
) -> client_data.ParsedCorpus:
  """TFF's Stack Overflow `tokens`: the train split, held out from the test split (not `heldout`)."""
  train, _, test = _load(tff.simulation.datasets.stackoverflow.load_data, path)
  return _parse(train, test, "tokens", max_clients, seed)


def load_tff(
  dataset: str,
  *,
  tff_cache_dir: str | None,
  max_clients: int | None = None,
  seed: int = 0,
  partition: partitions.Partition | None = None,
  cache_dir: str | None = None,
) -> client_data.FederatedCorpus:
  """Loads "tff_shakespeare" or "tff_stackoverflow" from `tff_cache_dir`, never downloading.

  Args:
    dataset: "tff_shakespeare" or "tff_stackoverflow".
    tff_cache_dir: The directory holding TFF's `.sqlite` file(s).
    max_clients: Read a sample of this many training clients (seeded by `seed`).
    partition: How examples are dealt; the natural partition keeps TFF's
      train/test split.
    cache_dir: Root of this project's parsed-corpus cache.
  """
  filename, parse = {
    "tff_shakespeare": (SHAKESPEARE_FILE, parse_shakespeare),
    "tff_stackoverflow": (STACKOVERFLOW_FILE, parse_stackoverflow),
  }[dataset]
  path = os.path.abspath(_require_file(tff_cache_dir, filename, dataset))
  stat = os.stat(path)
  sample = f"{max_clients}:{seed}" if max_clients else "all"
  key = client_data.cache_key(dataset, path, str(stat.st_size), str(stat.st_mtime), sample)
  return client_data.load_or_build(
    dataset,
    key,
    lambda: parse(path, max_clients=max_clients, seed=seed),
    partition=partition,
    cache_dir=cache_dir,
  )
