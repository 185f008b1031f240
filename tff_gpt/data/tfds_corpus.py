"""Text corpora from TensorFlow Datasets, read from a local data directory only.

`load_tfds` reads a dataset already prepared under `data_dir` (by
`tfds.load(..., download=True)` on a machine with network,
`tfds build`, or `tfds.dataset_builders.store_as_tfds_dataset`), never
downloads: a dataset or split that is not there is a `CorpusError` naming it.
Each example's `text_field` is one example of text; its `client_field`
feature, when the dataset has one, is its natural client, and any other
scalar feature can be a partition's label (class labels by name).
"""

import collections
import os

import numpy as np

from tff_gpt.data import client_data, pairs, partitions

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
ONE_CLIENT = "all"  # The natural client of a dataset without a client feature.


def _builder(name: str, data_dir: str):
  import tensorflow_datasets as tfds

  if not os.path.isdir(data_dir):
    raise client_data.CorpusError(
      f"--tfds_data_dir {data_dir!r} does not exist. Point it at the directory where the dataset was "
      "prepared (tfds.load(..., data_dir=...) or `tfds build --data_dir=...` on a machine with network)."
    )
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # DatasetNotFoundError, bad config names, unreadable dataset_info.json.
    raise client_data.CorpusError(
      f"--tfds_name {name!r}: no such dataset in TFDS or in {data_dir} ({type(e).__name__}: "
      f"{str(e).splitlines()[0][:160]}). Check the name (and config, 'name/config')."
    ) from e
  if not builder.is_prepared():
    raise client_data.CorpusError(
      f"TFDS dataset {name!r} is not prepared in {data_dir}; this project does not download. "
      f"Prepare it where there is network (`tfds build {name} --data_dir=DIR`) and copy DIR here, "
      "or pass the --tfds_data_dir that holds it."
    )
  return builder


def _check(builder, name: str, data_dir: str, split: str, fields: dict[str, str | None]) -> None:
  """Fails unless `split` and every field (`{what names it: feature}`) are in the dataset."""
  if split not in builder.info.splits:
    raise client_data.CorpusError(
      f"--tfds_split {split!r} is not a split of {name} in {data_dir}; it has {sorted(builder.info.splits)}."
    )
  features = builder.info.features
  for flag, field in fields.items():
    if field and field not in features:
      raise client_data.CorpusError(
        f"{flag} {field!r} is not a feature of {name}; it has {sorted(features.keys())}."
      )


def _as_text(value) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  if isinstance(value, np.ndarray) and value.ndim == 0:
    return _as_text(value.item())
  return str(value)


def _fields(examples: pairs.ExampleFormat, label_field: str | None) -> dict[str, str | None]:
  """The features a dataset needs, by what names each (for `_check`'s message)."""
  if examples.kind == "alpaca":
    fields = {"--examples=alpaca needs": "instruction", "--examples=alpaca needs ": "output"}
  elif examples.kind == "pairs":
    fields = {"--prompt_field": examples.prompt_field, "--response_field": examples.response_field}
  else:
    fields = {"--text_field": examples.text_field}
  return {**fields, "--partition_label": label_field}


def parse_tfds(
  name: str,
  *,
  split: str,
  data_dir: str,
  text_field: str = "text",
  client_field: str | None,
  label_field: str | None = None,
  examples: pairs.ExampleFormat | None = None,
) -> client_data.ParsedCorpus:
  """Reads `{client: [example, ...]}` (and each example's `label_field`) from a prepared TFDS split.

  An example is the `text_field` feature, or with `examples` a prompt and response pair (`pairs`).
  """
  import tensorflow_datasets as tfds

  examples = examples or pairs.ExampleFormat(text_field=text_field)
  builder = _builder(name, data_dir)
  _check(builder, name, data_dir, split, _fields(examples, label_field))
  features = builder.info.features
  has_clients = bool(client_field) and client_field in features
  label_names = getattr(features[label_field], "names", None) if label_field else None
  read = [f for f in (*examples.fields(), *examples.optional_fields()) if f in features]
  clients, labels = collections.defaultdict(list), collections.defaultdict(list)
  dropped = collections.Counter()
  for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
    client = _as_text(example[client_field]) if has_clients else ONE_CLIENT
    text, reason = examples.read({f: _as_text(example[f]) for f in read})
    if reason:
      dropped[reason] += 1
      continue
    clients[client].append(text)
    if label_field:
      value = example[label_field]
      labels[client].append(label_names[int(value)] if label_names else _as_text(value))
  if not clients:
    raise client_data.CorpusError(f"TFDS {name} split {split!r} has no usable examples ({dict(dropped)}).")
  return client_data.ParsedCorpus(
    clients=dict(clients), labels={label_field: dict(labels)} if label_field else {}, dropped=dict(dropped)
  )


def load_tfds(
  name: str,
  *,
  split: str = "train",
  data_dir: str | None = None,
  text_field: str = "text",
  client_field: str | None = "client_id",
  partition: partitions.Partition | None = None,
  cache_dir: str | None = None,
  examples: pairs.ExampleFormat | None = None,
) -> client_data.FederatedCorpus:
  """Federated data from a TFDS dataset prepared in `data_dir`.

  Args:
    name: The TFDS name ("ag_news_subset", "imdb_reviews/plain_text", or a
      dataset stored under `data_dir` by name).
    split: The TFDS split read (a slice such as "train[:10%]" works too);
      every client's examples are split in order into train and test.
    data_dir: Where the dataset was prepared; `~/tensorflow_datasets` when None.
    text_field: The text feature (`examples`: pairs instead, `pairs.ExampleFormat`).
    client_field: The feature naming each example's client. Without it in
      the dataset, the natural partition has one client, so deal examples with
      an "iid" or "dirichlet" `partition`.
    partition: How examples are dealt into clients; its label (other than
      "client") is a feature.
    cache_dir: Root of the parsed-corpus cache.

  Raises:
    client_data.CorpusError: Not prepared, unknown split or feature, or no
      client feature with the natural partition.
  """
  data_dir = os.path.abspath(data_dir or DEFAULT_DATA_DIR)
  partition = partition or partitions.Partition()
  label = partition.label if partition.label != partitions.CLIENT_LABEL else None
  builder = _builder(name, data_dir)
  examples = examples or pairs.ExampleFormat(text_field=text_field)
  _check(builder, name, data_dir, split, _fields(examples, label))
  if partition.kind == "natural" and client_field not in builder.info.features:
    raise client_data.CorpusError(
      f"TFDS {name} has no feature {client_field!r} to use as client id (features: "
      f"{sorted(builder.info.features.keys())}). Set --client_field to one, or deal examples into "
      "clients with --partition=iid or --partition=dirichlet and --partition_clients."
    )
  version_dir = str(builder.data_dir)
  signature = sorted(f"{f}:{os.path.getsize(os.path.join(version_dir, f))}" for f in os.listdir(version_dir))
  key = client_data.cache_key(
    "tfds", name, version_dir, split, *examples.cache_parts(), str(client_field), str(label), *signature
  )
  fields = dict(client_field=client_field, label_field=label, examples=examples)
  parse = lambda: parse_tfds(name, split=split, data_dir=data_dir, **fields)  # noqa: E731
  return client_data.load_or_build("tfds", key, parse, partition=partition, cache_dir=cache_dir)
