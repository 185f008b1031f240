"""What a finished run reports: its summary (results/<name>/summary.json) and its export."""

import os

from tff_gpt import export
from tff_gpt.models import registry
from tff_gpt.training import audit, outputs, write_failures

_EVALUATED = ("eval_", "val_", "personalization_")  # What an evaluation adds to a metrics row.


def summarize(run, evaluate, final_state, last_metrics: dict, *, memory_estimate_mb: float) -> dict:
  """Writes and returns the summary of `run` (a `run.Run`) after its rounds left `final_state`.

  The held-out figures are the last round's, or, when every round had run
  before, a fresh evaluation of the final weights. With `--export`, a GPT-2
  run also writes its export and names it. The returned summary also holds
  the final weights under "model_weights" (not written).
  """
  config, task, dirs = run.config, run.task, run.dirs
  weights = run.process.get_model_weights(final_state)
  evaluated = {k: v for k, v in last_metrics.items() if k.startswith(_EVALUATED)} or evaluate(weights)
  final = {k: v for k, v in evaluated.items() if k.startswith(("eval_", "val_"))}
  rows = outputs.read_metrics(dirs)
  summary = dict(
    final,
    **run.settings_summary(),
    bytes_communicated=run.bytes_communicated(config.total_rounds),
    train_seconds=outputs.seconds_spent(rows),
    unigram_perplexity=task.unigram_perplexity(),
    memory_estimate_mb=round(memory_estimate_mb),
    memory_peak_mb=round(max((float(r["memory_mb"]) for r in rows if r.get("memory_mb")), default=0.0)),
    eval_clients=len(task.eval_client_ids),
    validation_clients=len(task.validation_client_ids),
    checkpoints=dirs.checkpoints,
    metrics_csv=dirs.metrics_csv,
    logdir=dirs.logdir,
  )
  if (pair_counts := task.pair_summary()) is not None:
    summary["pairs"] = pair_counts
  if evaluate.personalized_clients:
    summary["personalization"] = {
      k.removeprefix("personalization_"): v for k, v in evaluated.items() if k.startswith("personalization_")
    }
    summary["personalization_csv"] = dirs.personalization_csv
    outputs.write_rows(dirs.personalization_csv, evaluate.personalized_clients)
  if evaluate.classified_clients:
    summary["classification_by_client"] = evaluate.classified_clients
  if evaluate.rouge_clients:
    summary["rouge_by_client"] = evaluate.rouge_clients
  if config.canaries or config.membership_clients:  # The memorization audit (training/audit.py).
    summary.update(audit.measure(run, weights, progress=evaluate.progress))
    if config.canaries:
      summary["canaries_csv"] = os.path.join(dirs.results, audit.ROWS_FILE)
  if config.differentially_private:
    summary.update(dp_epsilon=run.dp_epsilon(config.total_rounds), dp_delta=config.dp_delta)
  if config.export and registry.MODELS[config.model].is_gpt2:
    with write_failures.guard("the export", dirs.results, resume_after=config.total_rounds):
      summary["export"] = export.export_run(task, weights, config.total_rounds)
  with write_failures.guard("the summary", dirs.summary, resume_after=config.total_rounds):
    outputs.write_json(dirs.summary, summary)
  return dict(summary, model_weights=weights)


def add_to_summary(dirs: outputs.RunDirs, **values) -> None:
  """Adds `values` (e.g. the sample an entry point generated after the run) to the run's summary.json."""
  outputs.write_json(dirs.summary, dict(outputs.read_json(dirs.summary), **values))


def format_pairs(counts: dict) -> str:
  """One line: how the length rule treated each split's prompt and response pairs (loss on responses)."""
  parts = [
    f"{split} {c['pairs']} pairs ({c['prompts_cut']} prompts cut, {c['responses_cut']} responses cut, "
    f"{c['responses_dropped']} dropped)"
    for split, c in counts.items()
  ]
  return "prompt and response pairs, loss on responses: " + "; ".join(parts)


def format_summary(summary: dict) -> str:
  """The end-of-run summary a person reads."""
  lines = [
    f"Finished {summary['rounds']} rounds of {summary['algorithm']} ({summary['aggregator']} aggregator), "
    f"{summary['bytes_communicated'] / 2**20:.1f} MB communicated.",
    f"  test loss {summary['eval_loss']:.4f}, perplexity {summary['eval_perplexity']:.2f} "
    f"(unigram baseline {summary['unigram_perplexity']:.2f}), next-token accuracy "
    f"{summary['eval_accuracy']:.4f}, on {summary['eval_clients']} clients' held-out text",
  ]
  if summary.get("tokenizer", "char") != "char" and "eval_loss_per_char" in summary:
    lines.append(f"  {summary['eval_loss_per_char']:.4f} nats per character (comparable across tokenizers)")
  if "pairs" in summary:
    lines.append("  " + format_pairs(summary["pairs"]))
  if "personalization" in summary:
    p = summary["personalization"]
    lines.append(
      f"  personalized on {p['clients']} clients: held-out loss {p['global_loss_mean']:.4f} -> "
      f"{p['personalized_loss_mean']:.4f}, median gain {p['gain_median']:.4f} nats/token, "
      f"{100 * p['fraction_improved']:.0f}% of clients improved ({summary['personalization_csv']})"
    )
  if "eval_label_accuracy" in summary:
    lines.append(
      f"  likeliest class: accuracy {summary['eval_label_accuracy']:.4f}, "
      f"macro-F1 {summary['eval_macro_f1']:.4f} (per client: classification_by_client in summary.json)"
    )
  if "eval_rougeL" in summary:
    lines.append(
      f"  greedy responses: ROUGE-1 {summary['eval_rouge1']:.4f}, ROUGE-2 {summary['eval_rouge2']:.4f}, "
      f"ROUGE-L {summary['eval_rougeL']:.4f} (per client: rouge_by_client in summary.json)"
    )
  if "canary_exposure" in summary:
    by = ", ".join(f"x{k}: {v['mean_exposure']:.2f}" for k, v in summary["canary_exposure"].items())
    lines.append(
      f"  canary exposure (bits of {summary['canary_space_bits']:.1f}; x0 = never planted): {by} "
      f"({summary['canaries_csv']})"
    )
  if "auc" in summary.get("membership", {}):
    m = summary["membership"]
    lines.append(
      f"  membership attack on {m['members']} + {m['non_members']} clients: AUC {m['auc']:.3f}, "
      f"TPR {m['tpr_at_1pct_fpr']:.3f} at 1% FPR"
    )
  if "dp_epsilon" in summary:
    lines.append(f"  privacy: ({summary['dp_epsilon']:.3g}, {summary['dp_delta']:g})-DP at the client level")
  lines.append(f"  checkpoints: {summary['checkpoints']}")
  if "export" in summary:
    lines.append(f"  export:      {summary['export']}")
  lines.append(f"  metrics:     {summary['metrics_csv']}")
  lines.append(f"  tensorboard: {summary['logdir']}")
  return "\n".join(lines)
