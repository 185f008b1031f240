"""A run's memorization audit: the canaries planted in its training text, and what the run's end measures.

`canary_plan` chooses the clients (seeded, among training clients that are
neither evaluation nor validation clients and have as many examples as the
largest repeat count) and draws the canaries
(`data.canaries`); `planted` is the training split the task tokenizes. At the
end, `measure` ranks every canary (`memorization.exposures`, rows written to
`canaries.csv`) and, with `--membership_clients`, attacks membership at the
client level: clients some round sampled against clients none did, each
scored by the final model's mean loss per token on its own training text.
"""

import os

import numpy as np

from tff_gpt import errors, memorization
from tff_gpt.data import canaries, preprocessing
from tff_gpt.training import cohorts, outputs

PLAN_FILE, ROWS_FILE = "canaries.json", "canaries.csv"


def canary_plan(task) -> canaries.Plan | None:
  """The run's canaries (None without `--canaries`); refuses clients that cannot hold them, in one line."""
  c = task.config
  if not c.canaries:
    return None
  evaluated = set(task.eval_client_ids) | set(task.validation_client_ids)
  train, most = task.corpus.texts("train"), max(c.repeat_counts())
  free = [cid for cid in sorted(train) if cid not in evaluated and len(train[cid]) >= most]
  if len(free) < c.canary_clients:
    raise errors.UserInputError(
      f"--canary_clients={c.canary_clients} but only {len(free)} training clients are not evaluation clients "
      f"(canaries never go into those) and have the {most} examples --canary_repeats needs: lower either, "
      "or --clients_per_eval."
    )
  chosen = [free[i] for i in np.random.default_rng([c.seed, canaries.STREAM, 3]).permutation(len(free))]
  return canaries.draw(
    c.canaries,
    c.repeat_counts(),
    chosen[: c.canary_clients],
    digits=c.canary_digits,
    prefix=c.canary_prefix,
    seed=c.seed,
  )


def population(task) -> dict[str, list[str]]:
  """The training split's text of the clients the run trains on: all, or `--population` of them (the canary
  clients among them; `cohorts.population`)."""
  keep = sorted({c.client for c in task.canary_plan.inserted}) if task.canary_plan else []
  train = task.corpus.texts("train")
  return cohorts.population(train, task.config.population, seed=task.config.seed, keep=keep)


def planted(task, texts: dict[str, list[str]]) -> dict[str, list[str]]:
  """The training split `texts` with the run's canaries in it (unchanged without canaries)."""
  plan = task.canary_plan
  return texts if plan is None else canaries.insert(texts, plan, seed=task.config.seed)


def check(task) -> None:
  """Before round 1: the canaries fit their clients and the tokenizer; the plan is written beside the run."""
  plan = task.canary_plan
  if plan is None:
    return
  canaries.check_encodable(task.tokenizer, plan)
  _ = task.train_data  # Inserting refuses a repeat count above a client's examples.
  os.makedirs(task.dirs.results, exist_ok=True)
  plan.write(os.path.join(task.dirs.results, PLAN_FILE))


def measure(run, weights, *, progress: bool = False) -> dict:
  """`{"canary_exposure": by repeat count, "membership": attack}` (what the run's settings ask for)."""
  task, c, out = run.task, run.config, {}
  model = task.keras_model(weights)
  if task.canary_plan is not None:
    rows = memorization.exposures(model, task.tokenizer, task.canary_plan, seed=c.seed, progress=progress)
    rows = with_participation(rows, run, c.total_rounds)
    outputs.write_rows(os.path.join(task.dirs.results, ROWS_FILE), rows)
    out["canary_exposure"] = memorization.summarize_exposures(rows)
    out["canary_space_bits"] = float(c.canary_digits * np.log2(10))
  if c.membership_clients:
    out["membership"] = _membership(run, model)
  return out


def _membership(run, model) -> dict:
  """The loss-threshold attack: up to `--membership_clients` training clients some round sampled against as
  many whose text never trained (population clients no round sampled, and those outside `--population`)."""
  task, c = run.task, run.config
  sampled = {cid for r in range(1, c.total_rounds + 1) for cid in run.clients_for_round(r)}
  trained = task.train_data
  inside = set(trained.client_ids)
  outside = task.tokenized(
    {k: v for k, v in task.corpus.texts("train").items() if c.population and k not in inside}
  )
  members = [(trained, cid) for cid in trained.client_ids if cid in sampled]
  others = [(trained, cid) for cid in trained.client_ids if cid not in sampled]
  others += [(outside, cid) for cid in outside.client_ids]
  if not others:
    return {"note": "every training client was sampled: no non-members to compare with"}
  rng = np.random.default_rng([c.seed, canaries.STREAM, 4])
  losses = [
    [_mean_loss(model, data.sequences(cid)) for data, cid in _some(group, c.membership_clients, rng)]
    for group in (members, others)
  ]
  return memorization.membership(*losses)


def _some(group: list, count: int, rng) -> list:
  """Up to `count` of `group`, drawn by `rng`."""
  return [group[i] for i in rng.permutation(len(group))[:count]]


def with_participation(rows: list[dict], run, rounds: int) -> list[dict]:
  """Each canary row with `rounds_aggregated` (rounds whose aggregate held its client's update) and
  `last_round` (the last of them, 0: none): a canary's exposure depends on them as much as on its repeats."""
  aggregated = {}
  for r in range(1, rounds + 1):
    for cid in run.clients_for_round(r):
      aggregated.setdefault(cid, []).append(r)
  return [
    dict(
      row,
      rounds_aggregated=len(aggregated.get(row["client"], [])),
      last_round=max(aggregated.get(row["client"], [0])),
    )
    for row in rows
  ]


def _mean_loss(model, sequences, batch_size: int = 256) -> float:
  """The model's mean cross-entropy per labelled token of `sequences` (in batches: a client of thousands of
  sequences at once would hold gigabytes of activations)."""
  import tensorflow as tf

  total, count = 0.0, 0
  for start in range(0, len(sequences["labels"]), batch_size):
    part = {k: v[start : start + batch_size] for k, v in sequences.items()}
    logits = model({"token_ids": part["token_ids"], "padding_mask": part["padding_mask"]})
    keep = part["labels"] != preprocessing.IGNORE_LABEL
    losses = tf.keras.losses.sparse_categorical_crossentropy(
      np.maximum(part["labels"], 0), logits, from_logits=True
    )
    total += float(np.sum(np.where(keep, losses.numpy(), 0.0)))
    count += int(keep.sum())
  return total / max(count, 1)
