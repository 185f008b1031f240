"""One entry point to every corpus: `load_corpus(name, ...)`, through the table of loaders by name.

Each loader takes the `Request` (what was asked for: every corpus setting
that `data.settings.CorpusSettings` declares and documents) and returns a
`client_data.FederatedCorpus`. A new corpus is a function here and a line in
`LOADERS`; its name becomes a `--dataset` choice.
"""

import dataclasses
from collections.abc import Callable

from tff_gpt.data import (
  client_data,
  packaged,
  pairs,
  partitions,
  shakespeare,
  text_corpus,
  tfds_corpus,
  tff_datasets,
)


@dataclasses.dataclass(frozen=True)
class Request:
  """What `load_corpus` was asked for; each field is the `--` setting of the same name (`path` is
  `--dataset_path`, `partition` the `partitions.Partition` of `--partition*`, `file_pattern` picks a
  text_dir's files, `seed` seeds the client sample of TFF's datasets, `examples` makes each example a
  prompt and response pair)."""

  name: str
  path: str | None = None
  client_field: str = "client_id"
  text_field: str = "text"
  file_pattern: str = "*.txt"
  partition: partitions.Partition | None = None
  tfds_name: str | None = None
  tfds_split: str = "train"
  tfds_data_dir: str | None = None
  tff_cache_dir: str | None = None
  tff_max_clients: int | None = None
  seed: int = 0
  cache_dir: str | None = None
  examples: pairs.ExampleFormat | None = None

  @property
  def dealt(self) -> dict:
    """How every loader deals and caches: the partition and the cache directory."""
    return dict(partition=self.partition, cache_dir=self.cache_dir)

  @property
  def fields(self) -> dict:
    """Which record fields hold the client, the text and the example format (JSON Lines, TFDS)."""
    return dict(client_field=self.client_field, text_field=self.text_field, examples=self.examples)


def _shakespeare(r: Request) -> client_data.FederatedCorpus:
  if r.path:
    raise client_data.CorpusError("The shakespeare corpus is embedded: do not pass a path.")
  return shakespeare.load_data(examples=r.examples, **r.dealt)


def _text_dir(r: Request) -> client_data.FederatedCorpus:
  return text_corpus.load_text_dir(r.path, pattern=r.file_pattern, **r.dealt)


def _jsonl(r: Request) -> client_data.FederatedCorpus:
  return text_corpus.load_jsonl(r.path, **r.fields, **r.dealt)


def _tfds(r: Request) -> client_data.FederatedCorpus:
  if not r.tfds_name:
    raise client_data.CorpusError("--dataset=tfds needs --tfds_name: the TFDS dataset to read.")
  return tfds_corpus.load_tfds(
    r.tfds_name, split=r.tfds_split, data_dir=r.tfds_data_dir, **r.fields, **r.dealt
  )


def _tff(r: Request) -> client_data.FederatedCorpus:
  return tff_datasets.load_tff(
    r.name, tff_cache_dir=r.tff_cache_dir, max_clients=r.tff_max_clients, seed=r.seed, **r.dealt
  )


def _packaged(r: Request) -> client_data.FederatedCorpus:
  """A corpus of `packaged`: text is its first field; pairs, unless fields are given, its two fields."""
  if r.path:
    raise client_data.CorpusError(f"The {r.name} corpus is fetched and cached: do not pass a path.")
  first, second = packaged.FIELDS[r.name]
  examples = r.examples or pairs.ExampleFormat()
  if not examples.is_pairs:
    examples = dataclasses.replace(examples, text_field=first)
  elif (examples.prompt_field, examples.response_field) == ("prompt", "response"):
    examples = dataclasses.replace(examples, prompt_field=first, response_field=second)
  path = packaged.prepare(r.name, r.cache_dir)
  return text_corpus.load_jsonl(path, examples=examples, **r.dealt)


LOADERS: dict[str, Callable[[Request], client_data.FederatedCorpus]] = {
  "shakespeare": _shakespeare,
  "text_dir": _text_dir,
  "jsonl": _jsonl,
  "tfds": _tfds,
  "tff_shakespeare": _tff,
  "tff_stackoverflow": _tff,
  "rotten_tomatoes": _packaged,
  "spam_assassin": _packaged,
}
CORPORA = tuple(LOADERS)
# The loaders that read prompt and response pairs (jsonl and tfds first: they read alpaca too).
PAIRS_CORPORA = ("jsonl", "tfds", "shakespeare", "rotten_tomatoes", "spam_assassin")


def load_corpus(name: str, **request) -> client_data.FederatedCorpus:
  """Loads the federated corpus `name`, dealt into clients by `partition` (natural clients when None).

  `request` holds the other fields of `Request`.

  Raises:
    client_data.CorpusError: For an unknown name or a corpus that cannot be used.
  """
  if name not in LOADERS:
    raise client_data.CorpusError(f"Unknown dataset {name!r}; expected one of {list(CORPORA)}.")
  r = Request(name, **request)
  if r.examples is not None and r.examples.is_pairs and name not in PAIRS_CORPORA:
    raise client_data.CorpusError(
      f"--examples={r.examples.kind} reads {', '.join(PAIRS_CORPORA)}, not {name}."
    )
  return LOADERS[name](r)
