"""What `benchmarks/peers.py` writes from a tff_gpt run for the Flower side to read (`flower_app/lm.py`).

The run is built, not trained: its initial model exported to Hugging Face's
format by the project's exporter (`initial/`, and `initial_export/` with
LoRA's initial adapters), each client's batches of each round in order
(`batches/r{round:04d}_c{client:03d}.npz`), the held-out batches
(`eval.npz`), and `plan.json` (rounds, clients, optimizer, trainable).
"""

import itertools
import json
import os
import shutil

import numpy as np


def _write_batches(path: str, dataset) -> int:
  """One client's batches as arrays (`ends`: where each batch ends); returns its sequences."""
  parts = {"token_ids": [], "padding_mask": [], "labels": []}
  for x, y in dataset:
    parts["token_ids"].append(x["token_ids"].numpy())
    parts["padding_mask"].append(x["padding_mask"].numpy())
    parts["labels"].append(y.numpy())
  ends = np.cumsum([len(p) for p in parts["labels"]])
  np.savez(path, ends=ends, **{k: np.concatenate(v) for k, v in parts.items()})
  return int(ends[-1]) if len(ends) else 0


def prepare(settings: dict, data_dir: str) -> dict:
  """The run's initial model (Hugging Face), every round's client batches, the held-out batches, plan.json."""
  from tff_gpt import runtime
  from tff_gpt.export import exporter
  from tff_gpt.training import config as config_lib
  from tff_gpt.training import trainer

  config = config_lib.ExperimentConfig(**settings)
  os.makedirs(os.path.join(data_dir, "batches"), exist_ok=True)
  with runtime.execution_context(**config.context_args()):
    experiment = trainer.FederatedExperiment(config, progress=False)
    run, task = experiment.context, experiment.task
    clients = {}
    for r in range(1, config.total_rounds + 1):
      ids = run.clients_for_round(r)
      for i, dataset in enumerate(run.client_datasets(r)):
        _write_batches(os.path.join(data_dir, "batches", f"r{r:04d}_c{i:03d}.npz"), dataset)
      clients[r] = ids
    evaluation = itertools.chain.from_iterable(task.eval_datasets(task.eval_client_ids))
    _write_batches(os.path.join(data_dir, "eval.npz"), evaluation)
    export = exporter.export_run(task, task.initial_weights(), 0, os.path.join(data_dir, "initial_export"))
  shutil.copytree(os.path.join(export, exporter.HUGGING_FACE_DIR), os.path.join(data_dir, "initial"))
  plan = dict(
    rounds=config.total_rounds,
    clients=[len(clients[r]) for r in sorted(clients)],
    client_ids={str(r): ids for r, ids in clients.items()},
    optimizer=config.client_optimizer,
    learning_rate=config.client_learning_rate,
    epsilon=1e-7,
    trainable=config.trainable,
    lora_alpha=config.lora_alpha,
    threads=1,
    concurrency=config.max_concurrent_computation_calls,
    seed=config.seed,
  )
  with open(os.path.join(data_dir, "plan.json"), "w") as f:
    json.dump(plan, f, indent=1)
  return plan
