"""Clients chosen by group (a Shakespeare play, a directory) and written out as JSON Lines; the seeded
choice of evaluation and validation clients.

`experiments.pretrain` pretrains on some groups' clients and writes the
others for the federated run, split exactly as the corpus split them.
"""

import json
import os
import tempfile
from collections.abc import Sequence

import numpy as np

from tff_gpt import errors
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


def evaluation_clients(
  client_ids: Sequence[str], *, clients_per_eval: int | None, validation_clients: int | None, seed: int
) -> tuple[list[str], list[str]]:
  """`(test clients, validation clients)`: a seeded sample of `clients_per_eval` of `client_ids` (None: all),
  of which `validation_clients` (drawn by another stream of the seed) are set apart.

  Raises:
    errors.UserInputError: The validation clients would leave no test client.
  """
  ids = sorted(client_ids)
  n, k = clients_per_eval, validation_clients
  if n is not None and n < len(ids):
    ids = sorted(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())
  if not k:
    return ids, []
  if k >= len(ids):
    raise errors.UserInputError(
      f"--validation_clients={k} leaves no test clients of the {len(ids)} evaluated; pass fewer, or raise "
      "--clients_per_eval."
    )
  # Another stream of the seed than the sample's, so that the split does not depend on --clients_per_eval.
  chosen = set(np.random.default_rng([seed, 1]).choice(ids, size=k, replace=False).tolist())
  return [c for c in ids if c not in chosen], sorted(chosen)
