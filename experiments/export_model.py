"""Exports a run's latest checkpoint for Colab (no TFF, no Keras 2 needed there).

  python -m experiments.export_model --root_output_dir=runs --experiment_name=shakespeare_fedavg

Writes `results/<name>/export/` (or --export_dir): keras_hub/, huggingface/,
peft/ (LoRA), saved_model/, config.json, tokenizer assets, heldout.jsonl and
tff_gpt_export.py (its README.md says who loads each). Runs
export themselves at the end; this is for checkpoints of unfinished runs.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

from experiments import flags_common  # noqa: E402
from tff_gpt import export, runtime  # noqa: E402
from tff_gpt.training import restore  # noqa: E402

flags_common.define_experiment_flags(names=("root_output_dir", "experiment_name"))
flags.DEFINE_string("export_dir", None, "Where to write the export; default results/<name>/export.")
FLAGS = flags.FLAGS


def export_latest() -> str:
  """Exports the run's latest checkpoint from its stored settings: no training process, no memory check;
  the corpus is read for the evaluation clients' held-out text only."""
  task = restore.open_run(FLAGS.root_output_dir, FLAGS.experiment_name)
  with runtime.execution_context(**task.config.context_args()):
    weights, round_num = restore.latest_weights(task)
    path = export.export_run(task, weights, round_num, FLAGS.export_dir)
  print(f"Exported round {round_num} of {task.config.experiment_name} to {path}")
  return path


def main(argv):
  flags_common.check_main_args(argv)
  export_latest()


if __name__ == "__main__":
  flags_common.run(main)
