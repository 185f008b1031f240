"""Compares aggregation algorithms on one federated task, with the same seed and clients.

  python -m experiments.compare_algorithms --comparison_name=shakespeare \\
    --total_rounds=50 --rounds_per_eval=10 \\
    --configuration=fedavg --configuration=fedadam \\
    --configuration='fedadam_tuned: --algorithm=fedadam --server_learning_rate=0.003,0.01,0.03' \\
    --configuration='dp: --flagfile=configs/dp.cfg'

A configuration is `NAME` (an algorithm, `algorithm+aggregator`, or
`char_lstm` for TFF's Shakespeare LSTM) or `NAME: FLAGS`, where FLAGS are
experiment flags (or a --flagfile) that override the common ones given to this
script. A comma-separated --client_learning_rate or --server_learning_rate in
FLAGS is a grid; the report keeps each configuration's best point, chosen on
validation clients (--validation_clients) apart from the reported test
clients. --seeds=0,1,2 runs every grid point with each seed and reports means,
intervals and paired differences from --reference. Re-running the command
skips finished runs and resumes interrupted ones.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from experiments import flags_common  # noqa: E402
from tff_gpt import (
  comparison,  # noqa: E402
  runtime,  # noqa: E402
)

flags_common.define_experiment_flags()
flags.DEFINE_string(
  "comparison_name", "compare", "Directory under --root_output_dir for all runs and the report."
)
flags.DEFINE_multi_string(
  "configuration",
  ["fedavg", "fedavgm", "fedadam", "fedyogi", "fedprox", "char_lstm"],
  "A configuration: NAME, or 'NAME: --flag=value ...' (repeat the flag for each).",
)
flags.DEFINE_float("target_loss", None, "Report the first round whose eval loss is at or below this.")
flags.DEFINE_list(
  "seeds",
  [],
  "Seeds every configuration and grid point runs with (e.g. 0,1,2): each seed fixes the client sample of "
  "each round, the initial weights and the data order, the same for every configuration (paired runs); the "
  "report gives means, 95% t-intervals and paired differences. Empty: --seed alone.",
)
flags.DEFINE_enum(
  "select_on",
  None,
  ["validation", "test"],
  "Clients that choose each configuration's grid point and count rounds to target: validation (needs "
  "--validation_clients; the default with it) or test, the reported clients (the default without, and how "
  "many published tables were tuned).",
)
flags.DEFINE_string(
  "reference",
  None,
  "Configuration the others are differenced from, seed by seed (default: fedavg, or the first).",
)
flags.DEFINE_integer(
  "parallel_runs",
  1,
  "Runs trained at once, each in a process of its own: 2 finish a comparison in about 0.71 of the time on "
  "2 cores (BENCHMARKS.md, two runs side by side); each run needs its own memory, so keep 1 for GPT-2 124M.",
  lower_bound=1,
)
FLAGS = flags.FLAGS


def run() -> dict:
  """Runs the comparison the flags describe; returns the report's paths and rows."""
  configurations = [comparison.parse_configuration(spec) for spec in FLAGS.configuration]
  try:
    base = flags_common.config_from_flags()
    base.validate()
    seeds = _seeds()
    select_on = FLAGS.select_on or ("validation" if base.validation_clients else "test")
    if select_on == "validation" and not base.validation_clients:
      raise ValueError(
        "--select_on=validation needs validation clients: pass --validation_clients=N (or --select_on=test "
        "to choose on the reported clients)."
      )
    names = [c.name for c in configurations]
    if FLAGS.reference and FLAGS.reference not in names:
      raise ValueError(f"--reference={FLAGS.reference} is not a configuration; they are {names}.")
    comparison_dir = os.path.join(base.root_output_dir, FLAGS.comparison_name)
    for configuration in configurations:  # Every setting is checked before the first round.
      comparison.grid_configs(base, configuration, comparison_dir, seeds)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  records = comparison.run_comparison(
    base, configurations, comparison_dir=comparison_dir, seeds=seeds, parallel_runs=FLAGS.parallel_runs
  )
  report = comparison.write_report(
    records, comparison_dir, target_loss=FLAGS.target_loss, select_on=select_on, reference=FLAGS.reference
  )
  with open(report["markdown"]) as f:
    print("\n" + f.read())
  print(f"Report: {report['csv']}, {report['markdown']}, {report['plot']}")
  return report


def _seeds() -> list[int]:
  try:
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError:
    raise ValueError(f"--seeds must be integers, e.g. 0,1,2; got {FLAGS.seeds}.") from None
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"--seeds has a seed twice: {FLAGS.seeds}.")
  return seeds


def main(argv):
  flags_common.check_main_args(argv)
  try:
    run()
  except KeyboardInterrupt:
    runtime.shutdown()
    print(
      "Interrupted. Run the same command again: finished runs are skipped, the rest resume.", file=sys.stderr
    )
    sys.exit(130)


if __name__ == "__main__":
  flags_common.run(main)
