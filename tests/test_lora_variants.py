"""LoRA variants: FFA-LoRA (A frozen, B alone trained and sent) and the exactness gap of averaging factors."""

import dataclasses
import json
import os

import numpy as np
import pytest
import safetensors.numpy

from tests import helpers
from tff_gpt import export
from tff_gpt.algorithms import lora_gap
from tff_gpt.training import outputs, trainer


def _experiment(tmp_path, trainable, **overrides):
  helpers.ensure_tff_context()
  config = helpers.tiny_config(
    tmp_path, experiment_name=trainable.replace(":", "_"), trainable=trainable, **overrides
  )
  return trainer.FederatedExperiment(config)


def _round(experiment, state, client_ids):
  result = experiment.process.next(state, experiment.task.train_datasets(client_ids, 1))
  weights = [np.asarray(w, np.float64) for w in result.state.global_model_weights.trainable]
  return result, weights, float(result.metrics["client_work"]["train"]["num_examples"])


@pytest.mark.parametrize("trainable", ["lora:2", "ffa_lora:2", "hetlora:2"])
def test_the_gap_is_the_distance_from_the_aggregate_to_the_mean_of_the_clients_products(tmp_path, trainable):
  """Each client's factors come from a one-client FedAvg round (server rate 1): TFF's own client update.

  With hetlora a client's product is of its own first r components (ranks 1 and 2 here, both present).
  """
  ranks = dict(lora_client_ranks="1,2") if trainable.startswith("het") else {}
  experiment = _experiment(tmp_path, trainable, client_learning_rate=2.0, **ranks)
  task = experiment.task
  state = experiment.context.initial_state()
  clients = task.train_data.client_ids[:3]
  if ranks:
    by_rank = {task.client_rank(c): c for c in task.train_data.client_ids}
    clients = [
      by_rank[1],
      by_rank[2],
      next(c for c in task.train_data.client_ids if c not in by_rank.values()),
    ]
  rank = {c: task.client_rank(c) or 2 for c in clients}
  frozen_a = (
    task.frozen_lora_a(experiment.process.get_model_weights(state)) if trainable.startswith("ffa") else None
  )
  singles = [_round(experiment, state, [c]) for c in clients]
  if ranks:  # The rank-1 client trained its first component only: the second is the server's, unchanged.
    start = [np.asarray(w) for w in state.global_model_weights.trainable]
    for i in range(0, len(start), 2):
      assert np.any(singles[0][1][i + 1][0] != start[i + 1][0])
      np.testing.assert_array_equal(singles[0][1][i][:, 1:], start[i][:, 1:])
      np.testing.assert_array_equal(singles[0][1][i + 1][1:], start[i + 1][1:])
  result, after, _ = _round(experiment, state, clients)
  before = state.global_model_weights.trainable
  means = lora_gap.mean_products(task.lora_kind, before, result.metrics["aggregator"], frozen_a)
  gap = lora_gap.gap(task.lora_kind, after, means, frozen_a)
  weights = np.array([n for _, _, n in singles])
  weights /= weights.sum()
  gap_sq = mean_sq = 0.0
  for i in range(len(frozen_a) if frozen_a else len(after) // 2):
    if frozen_a:
      products = [frozen_a[i] @ w[i] for _, w, _ in singles]
      aggregate = frozen_a[i] @ after[i]
    else:
      products = [
        w[2 * i][:, : rank[c]] @ w[2 * i + 1][: rank[c]]
        for c, (_, w, _) in zip(clients, singles, strict=False)
      ]
      aggregate = after[2 * i] @ after[2 * i + 1]
    mean_product = sum(p * x for p, x in zip(products, weights, strict=True))
    gap_sq += np.sum((aggregate - mean_product) ** 2)
    mean_sq += np.sum(mean_product**2)
  reference = np.sqrt(gap_sq / mean_sq)
  assert gap == pytest.approx(reference, rel=1e-4, abs=1e-7)
  if frozen_a:
    assert gap < 1e-6  # FFA-LoRA: the aggregate is the mean of the clients' products.
  else:
    assert gap > 1e-4  # Averaging both factors is not averaging the products.


def test_ffa_lora_sends_half_of_loras_bytes_keeps_a_and_writes_the_gap_each_round(tmp_path):
  lora = _experiment(tmp_path, "lora:2")
  ffa = _experiment(tmp_path, "ffa_lora:2", total_rounds=2)
  bytes_of = {e.config.trainable: sum(e.context.bytes_per_client.values()) for e in (lora, ffa)}
  # B alone, down and up: half of LoRA's factors; the upload's 4-byte client weight is the same.
  assert bytes_of["ffa_lora:2"] - 4 == (bytes_of["lora:2"] - 4) / 2
  assert bytes_of["ffa_lora:2"] <= 0.55 * bytes_of["lora:2"]
  a_before = ffa.task.frozen_lora_a(ffa.task.initial_weights())  # The seeded draw, as the run makes it.
  summary = ffa.run()
  model = ffa.task.keras_model(summary["model_weights"], merged=False)
  from tff_gpt.models import adapters, gpt2_lm

  a_after = [ad.lora_a.numpy() for ad in adapters.adapters_of(gpt2_lm.backbone_of(model))]
  for before, after in zip(a_before, a_after, strict=True):
    np.testing.assert_array_equal(before, after)
  rows = outputs.read_metrics(ffa.dirs)
  assert [float(r["lora_gap"]) < 1e-6 for r in rows] == [True, True]
  # The PEFT adapter holds the frozen A beside the trained B (the export takes both from the model).
  out = export.export_run(ffa.task, summary["model_weights"], 2, out_dir=str(tmp_path / "export"))
  peft = safetensors.numpy.load_file(os.path.join(out, "peft", "adapter_model.safetensors"))
  a_query = peft["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"][:2]
  np.testing.assert_array_equal(a_query, a_before[0].T)


@pytest.mark.full
def test_heterogeneous_ranks_are_drawn_per_client_and_a_run_resumes_exactly(tmp_path):
  ranked = dict(lora_client_ranks="2,4,8", total_rounds=2)
  for d in ("a", "b"):
    (tmp_path / d).mkdir()
  uninterrupted = _experiment(tmp_path / "a", "hetlora:8", **ranked)
  ranks = [uninterrupted.task.client_rank(c) for c in uninterrupted.task.train_data.client_ids]
  assert set(ranks) == {2, 4, 8}
  reference = uninterrupted.run()
  config = helpers.tiny_config(
    tmp_path / "b", experiment_name="het", trainable="hetlora:8", lora_client_ranks="2,4,8", total_rounds=1
  )
  first = trainer.FederatedExperiment(config)
  assert [first.task.client_rank(c) for c in first.task.train_data.client_ids] == ranks  # By (seed, client).
  first.run()
  resumed = trainer.FederatedExperiment(dataclasses.replace(config, total_rounds=2), progress=False).run()
  for got, want in zip(resumed["model_weights"].trainable, reference["model_weights"].trainable, strict=True):
    np.testing.assert_array_equal(got, want)  # docs/fine-tuning.md: "resumes exactly".
  assert resumed["eval_loss"] == reference["eval_loss"]
  rows = outputs.read_metrics(uninterrupted.dirs)
  assert all(float(r["lora_gap"]) > 1e-4 for r in rows)  # Averaging factors of mixed ranks is not exact.


@pytest.mark.parametrize(
  ("overrides", "message"),
  [
    (dict(trainable="lora:4", lora_client_ranks="2,4"), "--lora_client_ranks applies to --trainable=hetlora"),
    (dict(trainable="hetlora:4", lora_client_ranks="2,8"), "each rank must be in 1..4"),
    (dict(trainable="hetlora:4", lora_client_ranks="2:x"), "'2:x' is not RANK or RANK:WEIGHT"),
    (dict(trainable="hetlora:4", lora_client_ranks="@/no/such.json"), "/no/such.json does not exist"),
  ],
)
def test_bad_client_ranks_name_the_fix(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    helpers.tiny_config(tmp_path, **overrides).validate()


def test_flexlora_sets_the_server_factors_to_the_truncated_svd_of_the_clients_mean_product(tmp_path):
  experiment = _experiment(tmp_path, "flexlora:2", lora_client_ranks="1,2", client_learning_rate=2.0)
  loop, task = experiment.loop, experiment.task
  state = experiment.context.initial_state()
  new_state, metrics = loop.train_round(state, 1)
  singles = [_round(experiment, state, [c]) for c in experiment.context.clients_for_round(1)]
  weights = np.array([n for _, _, n in singles]) / sum(n for _, _, n in singles)
  ranks = [task.client_rank(c) for c in experiment.context.clients_for_round(1)]
  after = [np.asarray(w, np.float64) for w in new_state.global_model_weights.trainable]
  gap_sq = mean_sq = 0.0
  for i in range(0, len(after), 2):
    products = [w[i][:, :r] @ w[i + 1][:r] for r, (_, w, _) in zip(ranks, singles, strict=True)]
    mean_product = sum(p * x for p, x in zip(products, weights, strict=True))
    u, s, vt = np.linalg.svd(mean_product)
    truncated = (u[:, :2] * s[:2]) @ vt[:2]
    np.testing.assert_allclose(after[i] @ after[i + 1], truncated, atol=1e-5 * np.abs(truncated).max())
    # Strongest direction first: a rank-1 client keeps the first component.
    assert np.linalg.norm(after[i][:, 0]) * np.linalg.norm(after[i + 1][0]) >= np.linalg.norm(
      after[i][:, 1]
    ) * np.linalg.norm(after[i + 1][1])
    gap_sq += np.sum((truncated - mean_product) ** 2)
    mean_sq += np.sum(mean_product**2)
  assert metrics["lora_gap"] == pytest.approx(np.sqrt(gap_sq / mean_sq), rel=1e-3, abs=1e-7)
  assert set(ranks) == {1, 2}, ranks


def test_flexlora_refuses_a_server_step_of_its_own(tmp_path):
  config = helpers.tiny_config(tmp_path, trainable="flexlora:2", algorithm="fedadam")
  with pytest.raises(ValueError, match="--trainable=flexlora:2 sets the server's factors.*fedadam"):
    config.validate()


def test_ranks_keyed_by_client_come_from_a_file_that_names_every_client(tmp_path):
  ids = sorted(helpers.PATTERNS)
  table = {cid: 1 + i % 2 for i, cid in enumerate(ids)}
  (tmp_path / "ranks.json").write_text(json.dumps(table))
  experiment = _experiment(tmp_path, "hetlora:2", lora_client_ranks=f"@{tmp_path / 'ranks.json'}")
  assert {c: experiment.task.client_rank(c) for c in experiment.task.train_data.client_ids} == {
    c: table[c] for c in experiment.task.train_data.client_ids
  }
  del table[ids[0]]
  (tmp_path / "ranks.json").write_text(json.dumps(table))
  config = helpers.tiny_config(
    tmp_path, experiment_name="b", trainable="hetlora:2", lora_client_ranks=f"@{tmp_path / 'ranks.json'}"
  )
  with pytest.raises(
    ValueError, match=rf"has no rank for 1 of the \d+ training clients \(first: '{ids[0]}'\)"
  ):
    trainer.FederatedExperiment(config)
