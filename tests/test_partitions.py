"""Partitions of a corpus (natural, iid, dirichlet, size skew) and their heterogeneity figures."""

import collections
import json

import numpy as np
import pytest

from tff_gpt.data import client_data, datasets, partitions


def _labelled(n_labels=6, per_label=60, natural=12):
  """`clients, labels`: `natural` clients, each example labelled `l0`.. (label = example index % n_labels)."""
  clients, labels = collections.defaultdict(list), collections.defaultdict(list)
  for i in range(n_labels * per_label):
    cid = f"c{i % natural}"
    clients[cid].append(f"example {i}")
    labels[cid].append(f"l{i % n_labels}")
  return dict(clients), {"topic": dict(labels)}


def _all(clients):
  return sorted(t for texts in clients.values() for t in texts)


@pytest.mark.parametrize(
  "spec",
  [
    partitions.Partition("iid", clients=20),
    partitions.Partition("iid", clients=20, size_skew=1.5),
    partitions.Partition("dirichlet", clients=20, alpha=0.05, label="topic"),
    partitions.Partition("dirichlet", clients=20, alpha=1000, label="topic", size_skew=1.0),
  ],
  ids=["iid", "iid-skew", "dirichlet-0.05", "dirichlet-1000-skew"],
)
def test_every_example_is_dealt_exactly_once_and_the_deal_is_seeded(spec):
  clients, labels = _labelled()
  dealt, dealt_labels = partitions.partition(clients, labels, spec)
  assert len(dealt) == 20 and _all(dealt) == _all(clients)
  assert min(len(ex) for ex in dealt.values()) >= partitions.MIN_EXAMPLES_PER_CLIENT
  # Labels travel with their examples.
  label_of = {t: lab for cid in clients for t, lab in zip(clients[cid], labels["topic"][cid], strict=True)}
  if dealt_labels:
    assert all(
      label_of[t] == lab for cid in dealt for t, lab in zip(dealt[cid], dealt_labels[cid], strict=True)
    )
  again, _ = partitions.partition(clients, labels, spec)
  assert again == dealt
  other, _ = partitions.partition(clients, labels, partitions.Partition(**{**spec.__dict__, "seed": 1}))
  assert other != dealt


def test_smaller_alpha_gives_clients_fewer_labels_and_larger_distance():
  clients, labels = _labelled(n_labels=10, per_label=200)
  tv = {}
  for alpha in (0.01, 1.0, 1000.0):
    spec = partitions.Partition("dirichlet", clients=20, alpha=alpha, label="topic")
    dealt, dealt_labels = partitions.partition(clients, labels, spec)
    h = partitions.heterogeneity(dealt, dealt_labels)
    tv[alpha] = h["mean_label_tv"]
    if alpha == 0.01:  # Nearly one label a client (the last clients take what is left).
      assert h["median_effective_labels"] < 1.5
  iid, iid_labels = partitions.partition(
    clients, labels, partitions.Partition("iid", clients=20, label="topic")
  )
  assert tv[0.01] > 0.8 > tv[1.0] > tv[1000.0]
  assert tv[1000.0] < 0.15 and partitions.heterogeneity(iid, iid_labels)["mean_label_tv"] < 0.15


def test_size_skew_follows_a_power_law_and_raises_the_gini():
  rng = np.random.default_rng(0)
  equal = partitions.client_sizes(1000, 10, 0.0, rng)
  skewed = partitions.client_sizes(1000, 10, 1.0, rng)
  assert equal.sum() == skewed.sum() == 1000 and set(equal) == {100}
  assert skewed.min() >= 2
  # Shares follow 1/(i+1): the largest client holds about 1/H_10 = 34% of the (spare) examples.
  assert abs(skewed.max() / 1000 - 1 / sum(1 / k for k in range(1, 11))) < 0.02
  assert partitions.gini(equal) == 0 and partitions.gini(skewed) > 0.4


def test_gini_and_tv_on_known_values():
  assert partitions.gini([0, 0, 0, 1]) == pytest.approx(0.75)  # (n - 1) / n: one holds all.
  assert partitions.gini([1, 1, 1, 1]) == pytest.approx(0.0)
  assert partitions.gini([1, 2, 3, 4]) == pytest.approx(0.25)  # mean |xi - xj| / (2 mean) = 1.25 / 5.
  h = partitions.heterogeneity({"a": ["x"] * 4, "b": ["y"] * 4}, {"a": ["p"] * 4, "b": ["q"] * 4})
  assert h["mean_label_tv"] == pytest.approx(0.5)  # Each client: all of one label vs 50/50 global.
  assert h["median_effective_labels"] == pytest.approx(1.0)
  mixed = partitions.heterogeneity({"a": ["x"] * 2, "b": ["y"] * 2}, {"a": ["p", "q"], "b": ["q", "p"]})
  assert mixed["mean_label_tv"] == 0 and mixed["median_effective_labels"] == pytest.approx(2.0)


@pytest.mark.parametrize(
  "spec, message",
  [
    (partitions.Partition("dirichlet", clients=4, alpha=0.0, label="topic"), "--partition_alpha must be > 0"),
    (partitions.Partition("dirichlet", clients=4, alpha=-1, label="topic"), "--partition_alpha must be > 0"),
    (partitions.Partition("dirichlet", clients=4, alpha=1.0), "needs --partition_label"),
    (partitions.Partition("natural", clients=4), "--partition_clients"),
    (partitions.Partition("natural", alpha=0.5), "--partition_alpha"),
    (partitions.Partition("natural", size_skew=1.0), "--partition_size_skew"),
    (partitions.Partition("iid"), "needs --partition_clients >= 2"),
    (partitions.Partition("iid", clients=4, alpha=1.0), "only applies to --partition=dirichlet"),
    (partitions.Partition("iid", clients=4, size_skew=-1), "must be >= 0"),
    (partitions.Partition("iid", clients=1000), "--partition_clients=1000 needs at least 2000 examples"),
    (partitions.Partition("dirichlet", clients=4, alpha=1, label="genre"), "'genre' is not a label"),
  ],
)
def test_bad_partitions_name_the_flag_and_the_fix(spec, message):
  clients, labels = _labelled()
  with pytest.raises(partitions.PartitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
    partitions.partition(clients, labels, spec)


def test_jsonl_partition_by_a_field_is_cached_and_reported(tmp_path, cache_dir):
  path = tmp_path / "c.jsonl"
  lines = [{"client_id": f"u{i % 5}", "text": f"text {i}", "genre": f"g{i % 3}"} for i in range(90)]
  path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
  spec = partitions.Partition("dirichlet", clients=6, alpha=0.1, label="genre", seed=3)
  corpus = datasets.load_corpus("jsonl", path=str(path), partition=spec, cache_dir=cache_dir)
  assert len(corpus.train.client_ids) == 6
  texts = corpus.texts("train")
  tests = corpus.texts("test")
  assert sorted(t for c in (texts, tests) for ex in c.values() for t in ex) == sorted(
    x["text"] for x in lines
  )
  h = corpus.summary["heterogeneity"]
  assert corpus.summary["partition"] == "dirichlet over 6 clients, alpha 0.1 over genre, seed 3"
  assert h["labels"] == 3 and h["mean_label_tv"] > 0.3
  assert "mean TV distance" in corpus.summary_text() and "Gini" in corpus.summary_text()
  # The same settings read the cache back; other settings build another.
  again = datasets.load_corpus("jsonl", path=str(path), partition=spec, cache_dir=cache_dir)
  assert again.cache_path == corpus.cache_path
  natural = datasets.load_corpus("jsonl", path=str(path), cache_dir=cache_dir)
  assert natural.cache_path != corpus.cache_path and len(natural.train.client_ids) == 5
  assert (
    natural.summary["partition"] == "natural clients"
    and "mean_label_tv" not in natural.summary["heterogeneity"]
  )


def test_a_label_field_that_some_lines_lack_names_the_line(tmp_path, cache_dir):
  path = tmp_path / "c.jsonl"
  lines = [{"client_id": "a", "text": "x", "genre": "g"}] * 4 + [{"client_id": "b", "text": "y"}]
  path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
  spec = partitions.Partition("dirichlet", clients=2, alpha=1, label="genre")
  with pytest.raises(client_data.CorpusError, match=r"c.jsonl:5: no field 'genre'"):
    datasets.load_corpus("jsonl", path=str(path), partition=spec, cache_dir=cache_dir)


def test_text_dir_partitions_over_directories(tmp_path, cache_dir):
  for d in ("news", "mail"):
    (tmp_path / "t" / d).mkdir(parents=True)
    for i in range(3):
      paragraphs = "\n\n".join(f"{d} {i} paragraph {j}" for j in range(6))
      (tmp_path / "t" / d / f"{i}.txt").write_text(paragraphs, encoding="utf-8")
  spec = partitions.Partition("iid", clients=4, label="directory")
  corpus = datasets.load_corpus("text_dir", path=str(tmp_path / "t"), partition=spec, cache_dir=cache_dir)
  assert corpus.summary["heterogeneity"]["labels"] == 2 and len(corpus.train.client_ids) == 4


@pytest.mark.full
@pytest.mark.slow
def test_shakespeare_natural_roles_report_their_play_mix(cache_dir):
  corpus = datasets.load_corpus("shakespeare", cache_dir=cache_dir)
  h = corpus.summary["heterogeneity"]
  assert corpus.summary["partition_label"] == "play"
  assert h["mean_label_tv"] > 0.9 and h["median_effective_labels"] == 1  # A role speaks in one play.
  dealt = datasets.load_corpus(
    "shakespeare",
    partition=partitions.Partition("dirichlet", clients=50, alpha=100, label="play"),
    cache_dir=cache_dir,
  )
  assert len(dealt.train.client_ids) == 50 and dealt.summary["heterogeneity"]["mean_label_tv"] < 0.5
