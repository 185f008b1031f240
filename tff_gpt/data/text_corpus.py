"""Bring-your-own federated text: a directory of text files or a JSON Lines file.

Both give the same `client_data.FederatedCorpus` as Shakespeare:
- a directory: one client per UTF-8 file (`*.txt` by default, searched
  recursively, the client id is the path relative to the directory); each
  paragraph (text separated by a blank line) is one example;
- JSON Lines: one example per line, `{client_field: ..., text_field: ...}`;
  a client's examples keep the order of the file. A path ending in `.csv` is
  read the same way, a header row naming the fields (labelled data exported
  from a spreadsheet or pandas: text, label and client columns).
"""

import collections
import csv
import glob
import io
import json
import os
import re

from tff_gpt.data import client_data, pairs, partitions

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _check_path(path: str, kind: str) -> None:
  if not path:
    raise client_data.CorpusError(f"No {kind} given: pass the path of your corpus.")
  if not os.path.exists(path):
    raise client_data.CorpusError(f"Corpus path {path!r} does not exist. Check the {kind} path.")


def _read_utf8(path: str) -> str:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except UnicodeDecodeError as e:
    raise client_data.CorpusError(
      f"{path} is not UTF-8 ({e.reason} at byte {e.start}). Convert it, for "
      f"example with `iconv -f latin1 -t utf-8 {path}`."
    ) from e


def parse_text_dir(directory: str, *, pattern: str = "*.txt") -> dict[str, list[str]]:
  """Reads `{relative path: [paragraph, ...]}` from the files under `directory`."""
  _check_path(directory, "text directory")
  if not os.path.isdir(directory):
    raise client_data.CorpusError(f"{directory!r} is not a directory of text files.")
  paths = sorted(glob.glob(os.path.join(directory, "**", pattern), recursive=True))
  paths = [p for p in paths if os.path.isfile(p)]
  if not paths:
    raise client_data.CorpusError(
      f"{directory!r} has no files matching {pattern!r}: it is empty or the " "file pattern is wrong."
    )
  clients = {}
  for path in paths:
    text = _read_utf8(path)
    client_id = os.path.relpath(path, directory)
    if not text.strip():
      raise client_data.CorpusError(f"{path}: client {client_id!r} has no text. Remove the file or add text.")
    clients[client_id] = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
  return clients


def with_directory_labels(clients: dict[str, list[str]]) -> client_data.ParsedCorpus:
  """Each paragraph's label "directory": the first directory of its file's path ("." at the top)."""
  directory = {
    cid: [cid.split(os.sep, 1)[0] if os.sep in cid else "."] * len(ex) for cid, ex in clients.items()
  }
  return client_data.ParsedCorpus(clients=clients, labels={"directory": directory})


def _read_record(record, path: str, number: int, client_field: str, examples: pairs.ExampleFormat):
  """`(example or None, drop reason or None)` of one JSON record; a record that cannot be read raises."""
  if not isinstance(record, dict):
    raise client_data.CorpusError(f"{path}:{number}: expected a JSON object, got {str(record)[:60]!r}.")
  missing = [f for f in (client_field, *examples.fields()) if f not in record]
  if missing:
    raise client_data.CorpusError(
      f"{path}:{number}: missing field(s) {missing}; the line has "
      f"{sorted(record)}. Set the client and {'prompt/response' if examples.is_pairs else 'text'} field "
      "names to match."
    )
  for field in (*examples.fields(), *examples.optional_fields()):
    if field in record and not isinstance(record[field], str):
      raise client_data.CorpusError(f"{path}:{number}: field {field!r} must be a string.")
  return examples.read(record)


def parse_jsonl(
  path: str,
  *,
  client_field: str,
  text_field: str = "text",
  label_field: str | None = None,
  examples: pairs.ExampleFormat | None = None,
) -> client_data.ParsedCorpus:
  """Reads `{client id: [example, ...]}` from a JSON Lines file (or a `.csv` file with a header row), and
  each line's `label_field`.

  An example is a line's `text_field`, or with `examples` a prompt and response pair (`pairs`).
  """
  examples = examples or pairs.ExampleFormat(text_field=text_field)
  _check_path(path, "JSON Lines file")
  if os.path.isdir(path):
    raise client_data.CorpusError(f"{path!r} is a directory; expected a JSON Lines file.")
  clients, labels = collections.defaultdict(list), collections.defaultdict(list)
  dropped = collections.Counter()
  for number, record in _records(path):
    example, reason = _read_record(record, path, number, client_field, examples)
    if label_field and label_field not in record:
      raise client_data.CorpusError(
        f"{path}:{number}: no field {label_field!r}, which --partition_label names; every line needs "
        f"it (this one has {sorted(record)}). Add it or choose another label."
      )
    if reason:
      dropped[reason] += 1
      continue
    if label_field:
      labels[str(record[client_field])].append(str(record[label_field]))
    clients[str(record[client_field])].append(example)
  if not clients:
    raise client_data.CorpusError(
      f"{path} has no usable JSON lines (dropped: {dict(dropped)})."
      if dropped
      else f"{path} is empty: it has " "no JSON lines."
    )
  return client_data.ParsedCorpus(
    clients=dict(clients), labels={label_field: dict(labels)} if label_field else {}, dropped=dict(dropped)
  )


def _records(path: str):
  """`(line number, record)` of a JSON Lines file, or of a `.csv` file (a header row names the fields)."""
  text = _read_utf8(path)
  if path.lower().endswith(".csv"):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for record in reader:
      if None in record or None in record.values():  # More or fewer cells than the header names.
        raise client_data.CorpusError(
          f"{path}:{reader.line_num}: {len(reader.fieldnames)} fields in the header, not in this row: quote "
          "cells that hold commas."
        )
      yield reader.line_num, record
    return
  for number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      yield number, json.loads(line)
    except json.JSONDecodeError as e:
      raise client_data.CorpusError(
        f"{path}:{number}: not valid JSON ({e.msg}). Each line must be one JSON object."
      ) from e


def _signature(path: str) -> list[str]:
  paths = [path]
  if os.path.isdir(path):
    paths = sorted(glob.glob(os.path.join(path, "**", "*"), recursive=True))
  return [f"{p}:{os.path.getsize(p)}:{os.path.getmtime(p)}" for p in paths if os.path.isfile(p)]


def load_text_dir(
  directory: str,
  *,
  pattern: str = "*.txt",
  partition: partitions.Partition | None = None,
  cache_dir: str | None = None,
) -> client_data.FederatedCorpus:
  """Federated data with one client per text file under `directory` (or dealt by `partition`)."""
  _check_path(directory, "text directory")
  directory = os.path.abspath(directory)
  key = client_data.cache_key("text_dir", pattern, *_signature(directory))
  return client_data.load_or_build(
    "text_dir",
    key,
    lambda: with_directory_labels(parse_text_dir(directory, pattern=pattern)),
    partition=partition,
    cache_dir=cache_dir,
  )


def load_jsonl(
  path: str,
  *,
  client_field: str = "client_id",
  text_field: str = "text",
  partition: partitions.Partition | None = None,
  cache_dir: str | None = None,
  examples: pairs.ExampleFormat | None = None,
) -> client_data.FederatedCorpus:
  """Federated data from a JSON Lines file with a client id and a text field (or a prompt and response).

  A `partition` label other than "client" is a field of every line.
  """
  _check_path(path, "JSON Lines file")
  path = os.path.abspath(path)
  examples = examples or pairs.ExampleFormat(text_field=text_field)
  label = partition.label if partition and partition.label != partitions.CLIENT_LABEL else None
  key = client_data.cache_key("jsonl", client_field, *examples.cache_parts(), str(label), *_signature(path))
  return client_data.load_or_build(
    "jsonl",
    key,
    lambda: parse_jsonl(path, client_field=client_field, label_field=label, examples=examples),
    partition=partition,
    cache_dir=cache_dir,
  )
