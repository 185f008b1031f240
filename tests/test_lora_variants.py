"""LoRA variants: FFA-LoRA (A frozen, B alone trained and sent) and the exactness gap of averaging factors."""

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


@pytest.mark.parametrize("trainable", ["lora:2", "ffa_lora:2"])
def test_the_gap_is_the_distance_from_the_aggregate_to_the_mean_of_the_clients_products(tmp_path, trainable):
  """Each client's factors come from a one-client FedAvg round (server rate 1): TFF's own client update."""
  experiment = _experiment(tmp_path, trainable, client_learning_rate=2.0)
  loop, task = experiment.loop, experiment.task
  state = loop.initial_state()
  clients = task.train_data.client_ids[:3]
  frozen_a = (
    task.frozen_lora_a(experiment.process.get_model_weights(state)) if trainable.startswith("ffa") else None
  )
  singles = [_round(experiment, state, [c]) for c in clients]
  result, after, _ = _round(experiment, state, clients)
  gap = lora_gap.gap(
    task.lora_kind, state.global_model_weights.trainable, after, result.metrics["aggregator"], frozen_a
  )
  weights = np.array([n for _, _, n in singles])
  weights /= weights.sum()
  gap_sq = mean_sq = 0.0
  for i in range(len(frozen_a) if frozen_a else len(after) // 2):
    if frozen_a:
      products = [frozen_a[i] @ w[i] for _, w, _ in singles]
      aggregate = frozen_a[i] @ after[i]
    else:
      products = [w[2 * i] @ w[2 * i + 1] for _, w, _ in singles]
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
  bytes_of = {e.config.trainable: sum(e.loop.bytes_per_client.values()) for e in (lora, ffa)}
  # B alone, down and up: half of LoRA's factors; the upload's 4-byte client weight is the same.
  assert bytes_of["ffa_lora:2"] - 4 == (bytes_of["lora:2"] - 4) / 2
  assert bytes_of["ffa_lora:2"] <= 0.55 * bytes_of["lora:2"]
  a_before = ffa.task.frozen_lora_a(ffa.task.initial_weights())  # The seeded draw, as the run makes it.
  summary = ffa.run(progress=False)
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
