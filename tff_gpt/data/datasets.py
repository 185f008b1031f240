"""One entry point to every corpus: `load_corpus(name, ...)`."""

from tff_gpt.data import client_data, pairs, partitions, shakespeare, text_corpus, tfds_corpus, tff_datasets

CORPORA = ("shakespeare", "text_dir", "jsonl", "tfds", "tff_shakespeare", "tff_stackoverflow")


def load_corpus(
  name: str,
  *,
  path: str | None = None,
  client_field: str = "client_id",
  text_field: str = "text",
  file_pattern: str = "*.txt",
  partition: partitions.Partition | None = None,
  tfds_name: str | None = None,
  tfds_split: str = "train",
  tfds_data_dir: str | None = None,
  tff_cache_dir: str | None = None,
  tff_max_clients: int | None = None,
  seed: int = 0,
  cache_dir: str | None = None,
  examples: pairs.ExampleFormat | None = None,
) -> client_data.FederatedCorpus:
  """Loads the federated corpus `name`, dealt into clients by `partition` (natural clients when None).

  Each argument is the `--` setting of the same name that `data.settings.CorpusSettings` declares and
  documents (`path` is `--dataset_path`, `partition` the `partitions.Partition` of `--partition*`);
  `file_pattern` picks a text_dir's files; `seed` seeds the client sample of TFF's datasets;
  `examples` makes each example a prompt and response pair (jsonl, tfds, shakespeare's dialogue).

  Raises:
    client_data.CorpusError: For an unknown name or a corpus that cannot be used.
  """
  if examples is not None and examples.is_pairs and name not in ("shakespeare", "jsonl", "tfds"):
    raise client_data.CorpusError(f"--examples={examples.kind} reads jsonl, tfds or shakespeare, not {name}.")
  dealt = dict(partition=partition, cache_dir=cache_dir)
  fields = dict(client_field=client_field, text_field=text_field, examples=examples)
  if name == "shakespeare":
    if path:
      raise client_data.CorpusError("The shakespeare corpus is embedded: do not pass a path.")
    return shakespeare.load_data(examples=examples, **dealt)
  if name == "text_dir":
    return text_corpus.load_text_dir(path, pattern=file_pattern, **dealt)
  if name == "jsonl":
    return text_corpus.load_jsonl(path, **fields, **dealt)
  if name == "tfds":
    if not tfds_name:
      raise client_data.CorpusError("--dataset=tfds needs --tfds_name: the TFDS dataset to read.")
    return tfds_corpus.load_tfds(tfds_name, split=tfds_split, data_dir=tfds_data_dir, **fields, **dealt)
  if name in ("tff_shakespeare", "tff_stackoverflow"):
    return tff_datasets.load_tff(
      name, tff_cache_dir=tff_cache_dir, max_clients=tff_max_clients, seed=seed, **dealt
    )
  raise client_data.CorpusError(f"Unknown dataset {name!r}; expected one of {list(CORPORA)}.")
