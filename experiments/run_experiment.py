"""Trains GPT-2 federatedly with one `tff.learning` algorithm (FedAvg by default).

  python -m experiments.run_experiment --experiment_name=demo --total_rounds=60
  python -m experiments.run_experiment --algorithm=fedadam --aggregator=robust

Re-running the same command resumes after the last checkpoint. The logic lives
in `tff_gpt.training`; this file only turns flags into a config.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from experiments import flags_common  # noqa: E402
from tff_gpt import generation, runtime  # noqa: E402
from tff_gpt.data import pairs  # noqa: E402
from tff_gpt.models import registry  # noqa: E402
from tff_gpt.training import report, trainer  # noqa: E402

flags_common.define_experiment_flags()
flags.DEFINE_string(
  "sample_prompt",
  "ROMEO:",
  "Prompt of the sample printed at the end; empty for none. Runs on pairs answer a held-out prompt.",
)
FLAGS = flags.FLAGS


def run() -> dict:
  """Runs the experiment the flags describe; returns its summary."""
  try:
    config = flags_common.config_from_flags()
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  with runtime.execution_context(**config.context_args()):
    experiment = trainer.FederatedExperiment(config)  # Validates the config before any worker starts.
    print(experiment.task.corpus.summary_text())
    if (pair_counts := experiment.task.pair_summary()) is not None:
      print(report.format_pairs(pair_counts))
    summary = experiment.run()
  print(report.format_summary(summary))
  if registry.MODELS[config.model].is_gpt2 and config.classify_with != "head":  # A classifier writes no text.
    summary["sample"] = _sample(experiment.task, summary["model_weights"], seed=config.seed)
    report.add_to_summary(experiment.dirs, sample=summary["sample"])
  return summary


def _sample(task, model_weights, *, seed: int) -> str | None:
  """Prints (and returns) a sample: text after --sample_prompt, or a reply to a held-out prompt (pairs)."""
  model = task.keras_model(model_weights)
  if task.config.examples != "text":
    prompt, truth = pairs.split(task.test_data.texts[task.eval_client_ids[0]][0])
    text = generation.reply(model, task.tokenizer, prompt, task.config.example_format().separator, seed=seed)
    print(
      f"Reply to a held-out prompt (top-k):\n{prompt}\n--- reply:\n{text}\n--- held-out response:\n{truth}"
    )
    return text
  if not FLAGS.sample_prompt:
    return None
  text = generation.generate(model, task.tokenizer, FLAGS.sample_prompt, seed=seed)
  print(f"Sample (top-k, prompt {FLAGS.sample_prompt!r}):\n{text}")
  return text


def main(argv):
  flags_common.check_main_args(argv)
  interrupted = False
  try:
    run()
  except KeyboardInterrupt:
    interrupted = True
  if interrupted:
    runtime.shutdown()  # Again, now that the traceback no longer holds TFF's executor.
    print("Interrupted. Run the same command again to resume after the last checkpoint.", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
  flags_common.run(main)
