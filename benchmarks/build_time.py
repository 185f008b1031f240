"""Time to build a federated experiment and run its first round, with and without AutoGraph on GPT-2.

  .venv/bin/python -m benchmarks.build_time --out benchmarks/results_build_time.json

Each measurement is a fresh process (imports, then `FederatedExperiment`
construction, which builds TFF's iterative process, then one round and its
evaluation) on the embedded Shakespeare. "autograph" is the code before
`gpt2_lm.without_autograph`: the child replaces TensorFlow's
`do_not_convert` with the identity before importing the project, so Keras
hands every keras-nlp layer to AutoGraph as it did. The two settings
alternate, `--repeats` times each; figures are medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
start = time.perf_counter()
import tensorflow as tf
if sys.argv[1] == "autograph":
  tf.autograph.experimental.do_not_convert = lambda func=None: func
from tensorflow.python.autograph.impl import api
conversions = [0]
convert = api._convert_actual
def counted(entity, program_ctx):
  conversions[0] += 1
  return convert(entity, program_ctx)
api._convert_actual = counted
from tff_gpt import runtime
from tff_gpt.training import config as config_lib, trainer
imported = time.perf_counter()
config = config_lib.ExperimentConfig(
  root_output_dir=sys.argv[3], experiment_name="build", model_size=sys.argv[2], total_rounds=1,
  clients_per_round=10, clients_per_eval=10, export=False)
with runtime.execution_context():
  experiment = trainer.FederatedExperiment(config)
  built = time.perf_counter()
  experiment.run(progress=False)
  ran = time.perf_counter()
print(json.dumps(dict(import_s=imported - start, build_s=built - imported, first_round_and_eval_s=ran - built,
                      total_s=ran - start, autograph_conversions=conversions[0])))
"""


def measure(setting: str, model_size: str) -> dict:
  with tempfile.TemporaryDirectory() as out:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
      [sys.executable, "-c", CHILD, setting, model_size, out],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      check=False,
    )
  if result.returncode != 0:
    raise RuntimeError(f"{setting}/{model_size} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_sizes", nargs="+", default=["tiny", "small"])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  results = {}
  for size in args.model_sizes:
    runs = {"autograph": [], "without_autograph": []}
    order = ["autograph", "without_autograph"]
    for i in range(args.repeats):
      for setting in order if i % 2 == 0 else order[::-1]:
        runs[setting].append(measure(setting, size))
        print(size, setting, json.dumps({k: round(v, 2) for k, v in runs[setting][-1].items()}), flush=True)
    medians = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in runs.items()}
    results[size] = dict(
      runs=runs,
      median=medians,
      build_ratio=medians["without_autograph"]["build_s"] / medians["autograph"]["build_s"],
      total_ratio=medians["without_autograph"]["total_s"] / medians["autograph"]["total_s"],
    )
    print(size, json.dumps({k: v for k, v in results[size].items() if k != "runs"}, indent=1), flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
