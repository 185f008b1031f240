"""TFDS corpora and TFF's Shakespeare / Stack Overflow, from files the tests make, with no network.

TFDS datasets are prepared by TFDS's own `store_as_tfds_dataset`; TFF's
datasets are written in TFF's SQL client-data format (the tables its
`SqlClientData` reads) from TFF's own synthetic examples, then read back
through `tff.simulation.datasets.*.load_data`. The word tokenizer is checked
against TFF's Stack Overflow preprocessing (`build_to_ids_fn`).
"""

import sqlite3
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.simulation.baselines.stackoverflow import word_prediction_preprocessing

from tests import helpers
from tff_gpt import errors
from tff_gpt.data import client_data, datasets, partitions, tff_datasets, tokenizers
from tff_gpt.export import portable
from tff_gpt.training import trainer

TOPICS = ["sports", "science", "arts"]


# Its module-scoped fixtures are built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  """A TFDS dataset `tiny_posts` (text, author, topic) prepared by TFDS in a local data directory."""
  import tensorflow_datasets as tfds

  data_dir = tmp_path_factory.mktemp("tfds")
  features = tfds.features.FeaturesDict(
    {
      "text": tfds.features.Text(),
      "author": tfds.features.Text(),
      "topic": tfds.features.ClassLabel(names=TOPICS),
    }
  )
  examples = [
    (i, {"text": f"post {i} about {TOPICS[i % 3]}", "author": f"user{i % 4}", "topic": i % 3})
    for i in range(48)
  ]
  tfds.dataset_builders.store_as_tfds_dataset(
    name="tiny_posts",
    version="1.0.0",
    features=features,
    split_datasets={"train": examples},
    data_dir=str(data_dir),
  )
  return str(data_dir)


def test_tfds_natural_clients_from_a_feature(tfds_dir, cache_dir):
  corpus = datasets.load_corpus(
    "tfds", tfds_name="tiny_posts", tfds_data_dir=tfds_dir, client_field="author", cache_dir=cache_dir
  )
  assert sorted(corpus.train.client_ids) == ["user0", "user1", "user2", "user3"]
  texts = {cid: corpus.texts("train")[cid] + corpus.texts("test")[cid] for cid in corpus.train.client_ids}
  assert sorted(texts["user1"]) == sorted(f"post {i} about {TOPICS[i % 3]}" for i in range(1, 48, 4))


def test_tfds_dirichlet_over_a_class_label(tfds_dir, cache_dir):
  spec = partitions.Partition("dirichlet", clients=6, alpha=0.05, label="topic")
  corpus = datasets.load_corpus(
    "tfds", tfds_name="tiny_posts", tfds_data_dir=tfds_dir, partition=spec, cache_dir=cache_dir
  )
  h = corpus.summary["heterogeneity"]
  assert len(corpus.train.client_ids) == 6 and h["labels"] == 3 and h["mean_label_tv"] > 0.4
  assert corpus.summary["partition_label"] == "topic"


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(tfds_name="imdb_reviews"), "not prepared in"),
    (dict(tfds_name="no_such_dataset_xyz"), "no such dataset"),
    (dict(tfds_name="tiny_posts", tfds_split="validation"), "'validation' is not a split"),
    (dict(tfds_name="tiny_posts", text_field="body"), "--text_field 'body' is not a feature"),
    (dict(tfds_name="tiny_posts", client_field="user_id"), "--partition=iid"),
  ],
)
def test_tfds_errors_are_immediate_and_never_download(tfds_dir, cache_dir, kwargs, message):
  start = time.monotonic()
  with pytest.raises(client_data.CorpusError, match=message):
    datasets.load_corpus("tfds", tfds_data_dir=tfds_dir, cache_dir=cache_dir, **kwargs)
  assert time.monotonic() - start < 30


def _example(features: dict) -> bytes:
  feature = {}
  for key, value in features.items():
    if isinstance(value, int):
      feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    else:
      feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tff_sql(path, splits: dict[str, dict[str, list[dict]]]) -> None:
  """TFF's SQL client data: `examples(split_name, client_id, serialized_example_proto)` and metadata."""
  with sqlite3.connect(path) as db:
    db.execute("CREATE TABLE examples (split_name TEXT, client_id TEXT, serialized_example_proto BLOB)")
    db.execute("CREATE TABLE client_metadata (client_id TEXT, split_name TEXT, num_examples INTEGER)")
    for split, clients in splits.items():
      for cid, examples in clients.items():
        db.executemany("INSERT INTO examples VALUES (?, ?, ?)", [(split, cid, _example(e)) for e in examples])
        db.execute("INSERT INTO client_metadata VALUES (?, ?, ?)", (cid, split, len(examples)))


def _numpy_examples(client_data_):
  out = {}
  for cid in client_data_.client_ids:
    out[cid] = [
      {k: (v.decode("utf-8") if isinstance(v, bytes) else int(v)) for k, v in e.items()}
      for e in client_data_.create_tf_dataset_for_client(cid).as_numpy_iterator()
    ]
  return out


@pytest.fixture
def tff_dir(tmp_path):
  """TFF's shakespeare.sqlite, stackoverflow.sqlite and word counts, made from TFF's synthetic data."""
  lines = [f"speech {i} of the role, with words" for i in range(12)]
  shakespeare = {
    "train": {
      "KING_LEAR_LEAR": [{"snippets": t} for t in lines[:8]],
      "HAMLET_OPHELIA": [{"snippets": "o"}] * 3,
    },
    "test": {"KING_LEAR_LEAR": [{"snippets": t} for t in lines[8:]], "HAMLET_OPHELIA": [{"snippets": "p"}]},
  }
  write_tff_sql(tmp_path / tff_datasets.SHAKESPEARE_FILE, shakespeare)
  so = tff.simulation.datasets.stackoverflow
  examples = _numpy_examples(so.get_synthetic())
  halves = {cid: (ex[: len(ex) // 2 or 1], ex[len(ex) // 2 :] or ex) for cid, ex in examples.items()}
  write_tff_sql(
    tmp_path / tff_datasets.STACKOVERFLOW_FILE,
    {
      "train": {cid: h[0] for cid, h in halves.items()},
      "heldout": {cid: h[1] for cid, h in halves.items()},
      "test": {cid: h[1] for cid, h in halves.items()},
    },
  )
  counts = so.get_synthetic_word_counts()
  (tmp_path / tff_datasets.WORD_COUNT_FILE).write_text("".join(f"{w} {c}\n" for w, c in counts.items()))
  return tmp_path


def test_tff_shakespeare_keeps_tffs_split(tff_dir, cache_dir):
  corpus = datasets.load_corpus("tff_shakespeare", tff_cache_dir=str(tff_dir), cache_dir=cache_dir)
  assert corpus.texts("train")["KING_LEAR_LEAR"] == [f"speech {i} of the role, with words" for i in range(8)]
  assert corpus.texts("test")["KING_LEAR_LEAR"] == [
    f"speech {i} of the role, with words" for i in range(8, 12)
  ]
  dealt = datasets.load_corpus(
    "tff_shakespeare",
    tff_cache_dir=str(tff_dir),
    partition=partitions.Partition("iid", clients=3),
    cache_dir=cache_dir,
  )
  pooled = sorted(t for split in ("train", "test") for ex in dealt.texts(split).values() for t in ex)
  assert len(dealt.train.client_ids) == 3 and len(pooled) == 16


def test_tff_stackoverflow_through_tffs_loader_with_a_client_sample(tff_dir, cache_dir):
  corpus = datasets.load_corpus("tff_stackoverflow", tff_cache_dir=str(tff_dir), cache_dir=cache_dir)
  want = _numpy_examples(tff.simulation.datasets.stackoverflow.load_data(cache_dir=str(tff_dir))[0])
  assert corpus.texts("train") == {cid: [e["tokens"] for e in ex] for cid, ex in want.items()}
  sample = datasets.load_corpus(
    "tff_stackoverflow", tff_cache_dir=str(tff_dir), tff_max_clients=2, cache_dir=cache_dir
  )
  assert len(sample.train.client_ids) == 2 and set(sample.train.client_ids) < set(want)


@pytest.mark.parametrize(
  "setup, message",
  [
    (lambda d: None, "has no shakespeare.sqlite"),
    (lambda d: (d / "shakespeare.sqlite").write_text("not a database"), "is not TFF's SQL client data"),
  ],
)
def test_tff_cache_dir_without_the_files(tmp_path, cache_dir, setup, message):
  setup(tmp_path)
  with pytest.raises(client_data.CorpusError, match=message):
    datasets.load_corpus("tff_shakespeare", tff_cache_dir=str(tmp_path), cache_dir=cache_dir)


def test_word_tokenizer_matches_tffs_stackoverflow_ids(tff_dir):
  tokenizer = tokenizers.load_word_vocabulary(str(tff_dir / tff_datasets.WORD_COUNT_FILE), 30)
  vocab = tokenizer.vocabulary
  assert len(vocab) == 30
  to_ids = word_prediction_preprocessing.build_to_ids_fn(vocab, max_sequence_length=100)
  sentences = [
    e["tokens"]
    for ex in _numpy_examples(tff.simulation.datasets.stackoverflow.get_synthetic()).values()
    for e in ex
  ]
  for sentence in sentences:
    want = to_ids({"tokens": tf.constant(sentence)}).numpy()
    got = np.concatenate([[tokenizer.bos_id], tokenizer.encode([sentence])[0], [tokenizer.eos_id]])
    np.testing.assert_array_equal(got, want)
  special = word_prediction_preprocessing.get_special_tokens(30)
  assert (tokenizer.pad_id, tokenizer.oov_id, tokenizer.vocabulary_size) == (0, special.out_of_vocab[0], 34)
  assert tokenizer.decode(tokenizer.encode(["is a zzzunknown"])[0]) == "is a <unk>"


@pytest.mark.full
@pytest.mark.slow
def test_a_federated_run_on_tff_stackoverflow_with_words_and_on_a_tfds_partition(tff_dir, tfds_dir, tmp_path):
  config = helpers.tiny_config(
    tmp_path,
    dataset="tff_stackoverflow",
    dataset_path=None,
    tff_cache_dir=str(tff_dir),
    tokenizer="word",
    word_vocab_size=40,
    clients_per_round=2,
    total_rounds=2,
    export=True,
  )
  experiment = trainer.FederatedExperiment(config)
  summary = experiment.run()
  assert np.isfinite(summary["eval_loss"]) and summary["partition"] == "natural clients"
  assert summary["heterogeneity"]["clients"] == 3
  # The export carries the word vocabulary: the same ids, and text back.
  exported = portable.Tokenizer(summary["export"])
  text = "is a zzzunknown median"
  np.testing.assert_array_equal(exported.encode([text])[0], experiment.task.tokenizer.encode([text])[0])
  assert exported.decode(exported.encode([text])[0]) == "is a median"
  config = helpers.tiny_config(
    tmp_path,
    experiment_name="tfds",
    dataset="tfds",
    dataset_path=None,
    tfds_name="tiny_posts",
    tfds_data_dir=tfds_dir,
    partition="dirichlet",
    partition_clients=4,
    partition_alpha=0.5,
    partition_label="topic",
    total_rounds=1,
  )
  summary = trainer.FederatedExperiment(config, progress=False).run()
  assert summary["heterogeneity"]["labels"] == 3 and summary["partition"].startswith("dirichlet over 4")


def test_config_checks_dataset_flags_before_any_round(tmp_path):
  bad = [
    (dict(dataset="tfds", dataset_path=None), "--tfds_name"),
    (dict(tfds_name="x"), "--tfds_name"),
    (dict(dataset="tff_shakespeare", dataset_path=None), "--tff_cache_dir"),
    (dict(tff_max_clients=5), "--tff_max_clients"),
    (dict(tokenizer="word"), "--vocab_file"),
    (dict(partition="natural", partition_alpha=0.3), "--partition_alpha"),
    (dict(partition="dirichlet", partition_clients=3, partition_alpha=0.0, partition_label="client"), "> 0"),
  ]
  for overrides, message in bad:
    with pytest.raises(errors.UserInputError, match=message):
      helpers.tiny_config(tmp_path, **overrides).validate()
