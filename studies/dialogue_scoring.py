"""The dialogue study's one yardstick: each run's final model scored on the same held-out response tokens.

Keras on the final weights (`restore.load_latest_model`), the loss on response tokens only, over the
evaluation clients' held-out pairs, beside a few generated replies to read.
"""


def score(s, work: str, names: list[str], separator: str) -> dict:
  """Response loss of the unchanged preset and of each run's final model on the same held-out pairs.

  `s` is the study's `dialogue.Settings`; `names` are runs in `{work}/runs`; replies are generated for
  three held-out prompts (one when quick) after `separator`, greedy, up to 48 tokens.
  """
  import numpy as np

  from tff_gpt import generation, runtime
  from tff_gpt.data import pairs
  from tff_gpt.models import metrics, tff_model
  from tff_gpt.training import config as config_lib
  from tff_gpt.training import outputs, restore
  from tff_gpt.training.task import FederatedTask

  config = config_lib.ExperimentConfig(
    root_output_dir=f"{work}/runs",
    experiment_name="score",
    dataset="jsonl",
    dataset_path=f"{work}/dialogue_pairs.jsonl",
    examples="pairs",
    preset=f"{work}/preset",
    sequence_length=s.sequence_length,
    clients_per_eval=s.clients_per_eval,
  )
  out = {}
  with runtime.execution_context(max_concurrent_computation_calls=1):
    config.validate()
    task = FederatedTask(config, outputs.RunDirs.of(config.root_output_dir, config.experiment_name))
    models = {"unchanged": tff_model.keras_model_with_weights(task.model_config, task.initial_weights())}
    for name in names:
      models[name] = restore.load_latest_model(f"{work}/runs", name)[2]
    held_out = [
      pairs.split(task.test_data.texts[c][0]) for c in task.eval_client_ids[: 1 if s.rounds < 5 else 3]
    ]
    for name, model in models.items():
      loss, tokens = metrics.TokenLoss(), metrics.NumTokens()
      for client in task.eval_client_ids:
        for x, y in task.test_data.eval_dataset(client, batch_size=32):
          logits = model(x)
          loss.update_state(y, logits)
          tokens.update_state(y, logits)
      replies = [
        generation.reply(model, task.tokenizer, p, separator, max_new_tokens=48, seed=0) for p, _ in held_out
      ]
      out[name] = {
        "response_loss": float(loss.result()),
        "response_perplexity": float(np.exp(loss.result())),
        "response_tokens": int(tokens.result()),
        "replies": [
          {"prompt": p, "truth": t, "reply": r} for (p, t), r in zip(held_out, replies, strict=True)
        ],
      }
    out["pair_counts"] = task.pair_summary()
  return out
