"""Turns `{client_id: [text, ...]}` into cached `tff.simulation` ClientData.

Every corpus (Shakespeare, a text directory, a JSON Lines file) is parsed into
a mapping from client id to that client's examples in their natural order.
This module checks it, splits each client's examples in order into train and
test (as TFF's Shakespeare does), and stores both splits in TFF's SQL
client-data format, so a second run reads them back in seconds.

The element structure matches `tff.simulation.datasets.shakespeare`:
`OrderedDict(snippets=tf.string)`.
"""

import collections
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf
import tensorflow_federated as tff

from tff_gpt import errors
from tff_gpt.data import corpus_summary, partitions

ELEMENT_SPEC = collections.OrderedDict(snippets=tf.TensorSpec(shape=(), dtype=tf.string))
TRAIN_FRACTION = 0.8
_TRAIN_FILE = "train.sqlite"
_TEST_FILE = "test.sqlite"
_SUMMARY_FILE = "summary.json"


class CorpusError(errors.UserInputError):
  """Raised when a corpus cannot be turned into federated data."""


@dataclasses.dataclass
class ParsedCorpus:
  """What a corpus parser returns.

  Attributes:
    clients: `{client_id: [example, ...]}`, examples in their natural order.
    labels: `{label name: {client_id: [label of each example]}}` for labels a
      partition can skew or measure (Shakespeare: "play"; a JSON Lines field).
    default_label: The label whose heterogeneity is reported when the
      partition names none (Shakespeare: "play").
    test: The source's own held-out split (TFF's datasets), kept as it is by
      the natural partition; None when examples are split here.
    dropped: `{reason: records}` the parser left out with a counted reason
      (prompt and response pairs: an empty response, the separator inside the text).
  """

  clients: dict[str, list[str]]
  labels: dict[str, dict[str, list[str]]] = dataclasses.field(default_factory=dict)
  default_label: str | None = None
  test: dict[str, list[str]] | None = None
  dropped: dict[str, int] = dataclasses.field(default_factory=dict)


def default_cache_dir() -> str:
  """Returns `$TFF_GPT_CACHE`, or `~/.cache/tff_gpt` when it is unset."""
  return os.environ.get("TFF_GPT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tff_gpt")


def split_in_order(
  examples: Sequence[str], train_fraction: float = TRAIN_FRACTION
) -> tuple[list[str], list[str]]:
  """Splits one client's examples in order: the first part trains, the rest tests.

  A client with at least two examples keeps at least one in each split; a
  client with one example keeps it for training.
  """
  n = len(examples)
  n_train = min(max(1, math.floor(train_fraction * n)), max(1, n - 1))
  return list(examples[:n_train]), list(examples[n_train:])


def validate_clients(clients: Mapping[str, Sequence[str]], source: str) -> None:
  """Raises `CorpusError` unless `clients` holds at least 2 clients, all with text."""
  if len(clients) < 2:
    raise CorpusError(
      f"{source}: found {len(clients)} client(s); federated training needs at "
      "least 2. Add more files or client ids to the corpus."
    )
  for client_id, examples in clients.items():
    if not any(text.strip() for text in examples):
      raise CorpusError(
        f"{source}: client {client_id!r} has no text. Remove it from the " "corpus or give it some text."
      )


def write_sql(clients: Mapping[str, Sequence[str]], path: str) -> None:
  """Writes what `tff.simulation.datasets.save_to_sql_client_data` writes for these clients (its tables,
  rows and serialized `tf.train.Example`s, `tests/test_text_corpus.py` compares them), in one transaction.

  TFF's writer builds and iterates a `tf.data.Dataset` per client, which made a cold start grow with the
  population (BENCHMARKS.md section 14); this writes the same rows with `sqlite3.executemany`.
  """

  def example(text: str) -> bytes:
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")]))
    return tf.train.Example(features=tf.train.Features(feature={"snippets": feature})).SerializeToString()

  if os.path.exists(path):
    os.remove(path)
  with contextlib.closing(sqlite3.connect(path)) as db, db:
    db.execute(
      "CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
      "serialized_example_proto BLOB NOT NULL);"
    )
    db.execute(
      "CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL, "
      "num_examples INTEGER NOT NULL);"
    )
    for client_id in sorted(clients):
      examples = clients[client_id]
      db.executemany(
        "INSERT INTO examples (split_name, client_id, serialized_example_proto) VALUES (?, ?, ?);",
        ((_SPLIT, client_id, example(text)) for text in examples),
      )
      db.execute(
        "INSERT INTO client_metadata (client_id, split_name, num_examples) VALUES (?, ?, ?);",
        (client_id, _SPLIT, len(examples)),
      )


_SPLIT = "default_split"  # TFF's name of the one split of a database (`sql_client_data_utils`).


class FederatedCorpus:
  """Train and test `tff.simulation.datasets.ClientData` of one corpus.

  Attributes:
    name: A short name of the corpus, used in messages.
    train: `ClientData` of `OrderedDict(snippets=tf.string)`, every client.
    test: `ClientData` of the same structure; clients with one example only
      have no test split and are absent here.
    summary: The `partition_summary` of the two splits.
  """

  def __init__(self, name: str, cache_path: str):
    self.name = name
    self.cache_path = cache_path
    self.train = tff.simulation.datasets.load_and_parse_sql_client_data(
      os.path.join(cache_path, _TRAIN_FILE), ELEMENT_SPEC
    )
    self.test = tff.simulation.datasets.load_and_parse_sql_client_data(
      os.path.join(cache_path, _TEST_FILE), ELEMENT_SPEC
    )
    with open(os.path.join(cache_path, _SUMMARY_FILE)) as f:
      self.summary = json.load(f)
    self._texts = {}

  def summary_text(self) -> str:
    return corpus_summary.format_summary(self.summary, f"Federated corpus '{self.name}' ({self.cache_path})")

  def texts(self, split: str) -> dict[str, list[str]]:
    """Returns `{client_id: [example, ...]}` of the 'train' or 'test' split.

    Reads the cache with one SQL query, which is about 100x faster than a
    `tf.data` pipeline per client; the result equals iterating the
    `ClientData`.
    """
    if split not in self._texts:
      filename = {"train": _TRAIN_FILE, "test": _TEST_FILE}[split]
      texts = collections.defaultdict(list)
      with contextlib.closing(sqlite3.connect(os.path.join(self.cache_path, filename))) as db:
        rows = db.execute("SELECT client_id, serialized_example_proto FROM examples ORDER BY rowid")
        for client_id, proto in rows:
          feature = tf.train.Example.FromString(proto).features.feature["snippets"]
          texts[client_id].append(feature.bytes_list.value[0].decode("utf-8"))
      self._texts[split] = dict(texts)
    return self._texts[split]


def cache_key(*parts: str) -> str:
  """A short stable hash of the strings that identify a parsed corpus."""
  return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:16]


def load_or_build(
  name: str,
  key: str,
  parse_fn: Callable[[], "ParsedCorpus | Mapping[str, Sequence[str]]"],
  *,
  partition: partitions.Partition | None = None,
  cache_dir: str | None = None,
) -> FederatedCorpus:
  """Returns the cached corpus `name`/`key` dealt by `partition`, building it if missing.

  `parse_fn` runs only on a cache miss. It, the partition and the checks run
  before anything is written, and the cache directory appears only once
  complete, so a failed parse leaves no cache behind.

  Args:
    name: The corpus name (a cache sub-directory).
    key: Identifies the parsed content (see `cache_key`).
    parse_fn: Returns a `ParsedCorpus`, or just `{client_id: [example, ...]}`.
    partition: How examples are dealt into clients; natural clients when None.
    cache_dir: Root of the cache; `default_cache_dir()` when `None`.

  Returns:
    The `FederatedCorpus`.
  """
  partition = partition or partitions.Partition()
  partition.validate()
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, name, cache_key(key, *partition.cache_key()))
  if not os.path.exists(os.path.join(path, _SUMMARY_FILE)):
    parsed = parse_fn()
    if not isinstance(parsed, ParsedCorpus):
      parsed = ParsedCorpus(clients=dict(parsed))
    train, test, summary_extra = _deal(parsed, partition, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".build-", dir=os.path.dirname(path))
    try:
      write_sql(train, os.path.join(staging, _TRAIN_FILE))
      write_sql(test, os.path.join(staging, _TEST_FILE))
      with open(os.path.join(staging, _SUMMARY_FILE), "w") as f:
        json.dump(dict(corpus_summary.partition_summary(train, test), **summary_extra), f, indent=1)
      _publish(staging, path)
    finally:
      shutil.rmtree(staging, ignore_errors=True)
  return FederatedCorpus(name, path)


def _publish(staging: str, path: str) -> None:
  """Renames the finished `staging` directory to `path`, unless another process got there first.

  Runs that share a cache can parse the same corpus at once (parallel tests, two experiments started
  together). The first rename wins and later ones keep it, so no process deletes files another one is
  reading. A `path` without a summary is an unfinished leftover and is replaced.
  """
  try:
    os.rename(staging, path)  # Atomic; fails when `path` exists and is not empty.
  except OSError:
    if os.path.exists(os.path.join(path, _SUMMARY_FILE)):
      return
    shutil.rmtree(path, ignore_errors=True)
    os.rename(staging, path)


def _deal(parsed: ParsedCorpus, partition: partitions.Partition, name: str):
  """`(train, test, summary fields)`: the partition's clients, each split in order."""
  label = partition.label or parsed.default_label
  partition = dataclasses.replace(partition, label=label)
  keep_source_split = parsed.test is not None and partition.kind == "natural"
  clients, labels = parsed.clients, parsed.labels
  if parsed.test is not None and not keep_source_split:  # Re-dealt: pool each client's train and test.
    if labels:
      raise CorpusError(f"{name}: labels with a source test split are not supported.")
    clients = {cid: list(ex) + list(parsed.test.get(cid, [])) for cid, ex in clients.items()}
  # Blank examples are dropped, with their labels.
  keep = {cid: [bool(e.strip()) for e in ex] for cid, ex in clients.items()}
  clients = {cid: [e for e, k in zip(ex, keep[cid], strict=True) if k] for cid, ex in clients.items()}
  labels = {
    label_name: {cid: [v for v, k in zip(values[cid], keep[cid], strict=True) if k] for cid in clients}
    for label_name, values in labels.items()
  }
  dealt, dealt_labels = partitions.partition(clients, labels, partition)
  validate_clients(dealt, name)
  if keep_source_split:
    train, test = dealt, {cid: list(ex) for cid, ex in parsed.test.items() if ex}
  else:
    train, test = {}, {}
    for client_id, examples in dealt.items():
      train[client_id], client_test = split_in_order(examples)
      if client_test:
        test[client_id] = client_test
  if not test:
    raise CorpusError(
      f"{name}: no client has 2 or more examples, so there is no held-out "
      "test split. Give clients more examples (for text files: paragraphs "
      "separated by blank lines)."
    )
  extra = {
    "partition": partition.describe(),
    "partition_settings": dataclasses.asdict(partition),
    "partition_label": label,
    "heterogeneity": partitions.heterogeneity(dealt, dealt_labels),
  }
  if parsed.dropped:
    extra["dropped"] = dict(parsed.dropped)
  return train, test, extra
