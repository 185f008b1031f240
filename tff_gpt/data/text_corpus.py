"""Bring-your-own federated text: a directory of text files or a JSON Lines file.

Both give the same `client_data.FederatedCorpus` as Shakespeare:
- a directory: one client per UTF-8 file (`*.txt` by default, searched
  recursively, the client id is the path relative to the directory); each
  paragraph (text separated by a blank line) is one example;
- JSON Lines: one example per line, `{client_field: ..., text_field: ...}`;
  a client's examples keep the order of the file.
"""

import collections
import glob
import json
import os
import re

from tff_gpt.data import client_data

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


def parse_jsonl(path: str, *, client_field: str, text_field: str) -> dict[str, list[str]]:
  """Reads `{client id: [text, ...]}` from a JSON Lines file."""
  _check_path(path, "JSON Lines file")
  if os.path.isdir(path):
    raise client_data.CorpusError(f"{path!r} is a directory; expected a JSON Lines file.")
  clients = collections.defaultdict(list)
  for number, line in enumerate(_read_utf8(path).splitlines(), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise client_data.CorpusError(
        f"{path}:{number}: not valid JSON ({e.msg}). Each line must be one JSON object."
      ) from e
    if not isinstance(record, dict):
      raise client_data.CorpusError(f"{path}:{number}: expected a JSON object, got {line[:60]!r}.")
    missing = [f for f in (client_field, text_field) if f not in record]
    if missing:
      raise client_data.CorpusError(
        f"{path}:{number}: missing field(s) {missing}; the line has "
        f"{sorted(record)}. Set the client and text field names to match."
      )
    text = record[text_field]
    if not isinstance(text, str):
      raise client_data.CorpusError(f"{path}:{number}: field {text_field!r} must be a string.")
    clients[str(record[client_field])].append(text)
  if not clients:
    raise client_data.CorpusError(f"{path} is empty: it has no JSON lines.")
  return dict(clients)


def _signature(path: str) -> list[str]:
  paths = [path]
  if os.path.isdir(path):
    paths = sorted(glob.glob(os.path.join(path, "**", "*"), recursive=True))
  return [f"{p}:{os.path.getsize(p)}:{os.path.getmtime(p)}" for p in paths if os.path.isfile(p)]


def load_text_dir(
  directory: str, *, pattern: str = "*.txt", cache_dir: str | None = None
) -> client_data.FederatedCorpus:
  """Federated data with one client per text file under `directory`."""
  _check_path(directory, "text directory")
  directory = os.path.abspath(directory)
  key = client_data.cache_key("text_dir", pattern, *_signature(directory))
  return client_data.load_or_build(
    "text_dir", key, lambda: parse_text_dir(directory, pattern=pattern), cache_dir=cache_dir
  )


def load_jsonl(
  path: str,
  *,
  client_field: str = "client_id",
  text_field: str = "text",
  cache_dir: str | None = None,
) -> client_data.FederatedCorpus:
  """Federated data from a JSON Lines file with a client id and a text field."""
  _check_path(path, "JSON Lines file")
  path = os.path.abspath(path)
  key = client_data.cache_key("jsonl", client_field, text_field, *_signature(path))
  return client_data.load_or_build(
    "jsonl",
    key,
    lambda: parse_jsonl(path, client_field=client_field, text_field=text_field),
    cache_dir=cache_dir,
  )
