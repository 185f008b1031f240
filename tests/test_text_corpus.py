"""Bring-your-own corpora and every bad input, on real files."""

import contextlib
import json
import os
import sqlite3

import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tests import helpers
from tff_gpt.data import client_data, datasets, text_corpus


def _no_cache(cache_dir):
  import pathlib

  path = pathlib.Path(cache_dir)
  return not path.exists() or not any(path.rglob("*.sqlite"))


def test_text_dir_one_client_per_file(tmp_path, cache_dir):
  corpus_dir = tmp_path / "texts"
  (corpus_dir / "sub").mkdir(parents=True)
  (corpus_dir / "a.txt").write_text("Para one.\n\nPara two.\n\nPara three.", encoding="utf-8")
  (corpus_dir / "sub" / "b.txt").write_text("Only\nparagraph\n\n\nsecond one", encoding="utf-8")
  (corpus_dir / "ignored.md").write_text("not a txt file", encoding="utf-8")
  corpus = datasets.load_corpus("text_dir", path=str(corpus_dir), cache_dir=cache_dir)
  assert sorted(corpus.train.client_ids) == ["a.txt", "sub/b.txt"]
  assert corpus.texts("train")["a.txt"] == ["Para one.", "Para two."]
  assert corpus.texts("test")["a.txt"] == ["Para three."]
  assert corpus.texts("train")["sub/b.txt"] == ["Only\nparagraph"]


def test_jsonl_with_named_fields(tmp_path, cache_dir):
  path = tmp_path / "c.jsonl"
  rows = [
    {"user": "u1", "body": "one"},
    {"user": "u2", "body": "two"},
    {"user": "u1", "body": "three"},
    {"user": "u2", "body": "four"},
    {"user": 7, "body": "five"},
  ]
  path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
  corpus = text_corpus.load_jsonl(str(path), client_field="user", text_field="body", cache_dir=cache_dir)
  assert corpus.texts("train") == {"u1": ["one"], "u2": ["two"], "7": ["five"]}
  assert corpus.texts("test") == {"u1": ["three"], "u2": ["four"]}
  assert corpus.summary["train"]["clients"] == 3


def test_csv_labelled_text_reads_as_the_same_json_lines_would(tmp_path, cache_dir):
  from tff_gpt.data import pairs

  rows = [("m1", 'a warm, "funny" film', "fresh"), ("m2", "dull", "rotten"), ("m1", "bad", "rotten")]
  rows += [("m2", "great fun", "fresh"), ("m1", "fine", "fresh")]
  (tmp_path / "r.csv").write_text(
    "movie,review,label\n" + "".join(f'{m},"{t.replace(chr(34), 2 * chr(34))}",{y}\n' for m, t, y in rows),
    encoding="utf-8",
  )
  (tmp_path / "r.jsonl").write_text(
    "".join(json.dumps({"movie": m, "review": t, "label": y}) + "\n" for m, t, y in rows), encoding="utf-8"
  )
  examples = pairs.ExampleFormat(kind="pairs", prompt_field="review", response_field="label")
  read = {
    name: text_corpus.load_jsonl(
      str(tmp_path / name), client_field="movie", examples=examples, cache_dir=cache_dir
    )
    for name in ("r.csv", "r.jsonl")
  }
  assert read["r.csv"].texts("train") == read["r.jsonl"].texts("train")
  assert read["r.csv"].texts("test") == read["r.jsonl"].texts("test")
  assert pairs.split(read["r.csv"].texts("train")["m1"][0]) == ('a warm, "funny" film', "fresh")
  (tmp_path / "bad.csv").write_text("movie,review,label\nm1,a, film,fresh\n", encoding="utf-8")
  with pytest.raises(client_data.CorpusError, match=r"bad.csv:2: 3 fields in the header, not in this row"):
    text_corpus.load_jsonl(
      str(tmp_path / "bad.csv"), client_field="movie", examples=examples, cache_dir=cache_dir
    )


def test_jsonl_corpus_fixture_loads(jsonl_corpus, cache_dir):
  corpus = datasets.load_corpus("jsonl", path=jsonl_corpus, cache_dir=cache_dir)
  assert sorted(corpus.train.client_ids) == sorted(helpers.PATTERNS)


@pytest.mark.parametrize("name", ["text_dir", "jsonl"])
def test_missing_path(tmp_path, cache_dir, name):
  with pytest.raises(client_data.CorpusError, match="does not exist"):
    datasets.load_corpus(name, path=str(tmp_path / "missing"), cache_dir=cache_dir)
  assert _no_cache(cache_dir)


def test_empty_directory(tmp_path, cache_dir):
  (tmp_path / "empty").mkdir()
  with pytest.raises(client_data.CorpusError, match="empty or the file pattern"):
    datasets.load_corpus("text_dir", path=str(tmp_path / "empty"), cache_dir=cache_dir)


def test_empty_jsonl(tmp_path, cache_dir):
  (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
  with pytest.raises(client_data.CorpusError, match="is empty"):
    datasets.load_corpus("jsonl", path=str(tmp_path / "e.jsonl"), cache_dir=cache_dir)


def test_not_utf8(tmp_path, cache_dir):
  corpus_dir = tmp_path / "texts"
  corpus_dir.mkdir()
  (corpus_dir / "good.txt").write_text("fine\n\ntext", encoding="utf-8")
  (corpus_dir / "latin.txt").write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
  with pytest.raises(client_data.CorpusError, match=r"latin\.txt is not UTF-8.*iconv"):
    datasets.load_corpus("text_dir", path=str(corpus_dir), cache_dir=cache_dir)
  assert _no_cache(cache_dir)


def test_jsonl_line_not_json(tmp_path, cache_dir):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"client_id": "a", "text": "ok"}\n{not json}\n', encoding="utf-8")
  with pytest.raises(client_data.CorpusError, match=r"bad\.jsonl:2: not valid JSON"):
    datasets.load_corpus("jsonl", path=str(path), cache_dir=cache_dir)
  assert _no_cache(cache_dir)


def test_jsonl_missing_field(tmp_path, cache_dir):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"client_id": "a", "text": "ok"}\n{"client_id": "b", "body": "x"}\n', encoding="utf-8")
  with pytest.raises(client_data.CorpusError, match=r"bad\.jsonl:2: missing field\(s\) \['text'\]"):
    datasets.load_corpus("jsonl", path=str(path), cache_dir=cache_dir)


def test_fewer_than_two_clients(tmp_path, cache_dir):
  path = tmp_path / "one.jsonl"
  path.write_text('{"client_id": "a", "text": "x"}\n{"client_id": "a", "text": "y"}\n', encoding="utf-8")
  with pytest.raises(client_data.CorpusError, match="found 1 client.*at least 2"):
    datasets.load_corpus("jsonl", path=str(path), cache_dir=cache_dir)
  assert _no_cache(cache_dir)


def test_client_with_no_text(tmp_path, cache_dir):
  path = tmp_path / "blank.jsonl"
  path.write_text(
    '{"client_id": "a", "text": "x"}\n{"client_id": "a", "text": "y"}\n'
    '{"client_id": "b", "text": "   "}\n',
    encoding="utf-8",
  )
  with pytest.raises(client_data.CorpusError, match="client 'b' has no text"):
    datasets.load_corpus("jsonl", path=str(path), cache_dir=cache_dir)
  corpus_dir = tmp_path / "texts"
  corpus_dir.mkdir()
  (corpus_dir / "a.txt").write_text("a\n\nb", encoding="utf-8")
  (corpus_dir / "empty.txt").write_text("\n\n", encoding="utf-8")
  with pytest.raises(client_data.CorpusError, match="client 'empty.txt' has no text"):
    datasets.load_corpus("text_dir", path=str(corpus_dir), cache_dir=cache_dir)


def test_unknown_dataset(cache_dir):
  with pytest.raises(client_data.CorpusError, match="Unknown dataset 'wiki'"):
    datasets.load_corpus("wiki", cache_dir=cache_dir)


def test_a_corpus_built_twice_at_once_keeps_the_first_copy(cache_dir):
  """Runs parsing into one cache at once: the last to finish keeps the first's files, never deletes them."""
  clients = {"a": ["one", "two", "three"], "b": ["four", "five", "six"]}
  first = {}

  def parse_while_another_run_finishes():
    # Another run builds the same corpus and starts reading it while this one is still parsing.
    first["corpus"] = client_data.load_or_build("race", "key", lambda: clients, cache_dir=cache_dir)
    first["inode"] = os.stat(os.path.join(first["corpus"].cache_path, "train.sqlite")).st_ino
    return clients

  second = client_data.load_or_build("race", "key", parse_while_another_run_finishes, cache_dir=cache_dir)
  assert second.cache_path == first["corpus"].cache_path
  assert os.stat(os.path.join(second.cache_path, "train.sqlite")).st_ino == first["inode"]  # Not replaced.
  want = {"a": ["one", "two"], "b": ["four", "five"]}
  assert second.texts("train") == first["corpus"].texts("train") == want
  # No staging directory is left behind.
  assert os.listdir(os.path.dirname(second.cache_path)) == [os.path.basename(second.cache_path)]


def test_the_corpus_cache_holds_exactly_what_tffs_sql_writer_writes(tmp_path):
  clients = {"b": ["ünïcode line", "two"], "a": ["one", "", "three words here"], "c": ["x"]}
  ours, tffs = str(tmp_path / "ours.sqlite"), str(tmp_path / "tff.sqlite")
  client_data.write_sql(clients, ours)
  tff.simulation.datasets.save_to_sql_client_data(
    sorted(clients),
    lambda cid: tf.data.Dataset.from_tensor_slices({"snippets": tf.constant(clients[cid], tf.string)}),
    tffs,
  )

  def rows(path):
    with contextlib.closing(sqlite3.connect(path)) as db:
      return [
        db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
        for table in ("examples", "client_metadata")
      ]

  assert rows(ours) == rows(tffs) and len(rows(ours)[0]) == 6
  parsed = tff.simulation.datasets.load_and_parse_sql_client_data(ours, client_data.ELEMENT_SPEC)
  assert [e["snippets"].numpy().decode() for e in parsed.create_tf_dataset_for_client("a")] == clients["a"]
