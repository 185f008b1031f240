"""Clients chosen by group (a Shakespeare play, a directory) and written out as JSON Lines.

`experiments.pretrain` pretrains on some groups' clients and writes the
others for the federated run, split exactly as the corpus split them.
"""

import json
import os
import tempfile
from collections.abc import Sequence

from tff_gpt.data.client_data import CorpusError, FederatedCorpus


def split_by_group(client_ids: Sequence[str], groups: Sequence[str], *, separator: str = ":"):
  """`(chosen, rest)`: the client ids whose group is in `groups`, and the others.

  A client's group is the part of its id before `separator`: the play of a
  Shakespeare role ("hamlet:HAMLET"), for example.

  Raises:
    CorpusError: A group with no clients, or no client left in `rest`.
  """
  group_of = {cid: cid.split(separator, 1)[0] for cid in client_ids}
  unknown = sorted(set(groups) - set(group_of.values()))
  if unknown:
    raise CorpusError(
      f"No clients in group(s) {unknown}: a group is the part of a client id before {separator!r}; "
      f"this corpus has {sorted(set(group_of.values()))[:8]}..."
    )
  chosen = [cid for cid in client_ids if group_of[cid] in groups]
  rest = [cid for cid in client_ids if group_of[cid] not in groups]
  if not rest:
    raise CorpusError("Every client is in the chosen groups: leave some groups for federated fine-tuning.")
  return chosen, rest


def write_jsonl(corpus: FederatedCorpus, client_ids: Sequence[str], path: str) -> int:
  """Writes clients' examples as JSON Lines (`client_id`, `text`); returns the number of lines.

  Each client's train examples come first, then its test examples, in their
  original order, so `--dataset=jsonl` on the file splits them exactly as
  `corpus` did. Written to a temporary file and renamed into place.
  """
  train, test = corpus.texts("train"), corpus.texts("test")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  lines = 0
  with tempfile.NamedTemporaryFile(
    "w", encoding="utf-8", dir=os.path.dirname(os.path.abspath(path)), delete=False, suffix=".tmp"
  ) as f:
    for cid in client_ids:
      for text in train.get(cid, []) + test.get(cid, []):
        f.write(json.dumps({"client_id": cid, "text": text}, ensure_ascii=False) + "\n")
        lines += 1
  os.replace(f.name, path)
  return lines
