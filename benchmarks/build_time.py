"""Time to build a federated experiment and run its first round, against the code before two build speedups.

  .venv/bin/python -m benchmarks.build_time --out benchmarks/results_build_time.json

Each measurement is a fresh process (imports, then `FederatedExperiment`
construction, which builds TFF's iterative process, then one round and its
evaluation) on the embedded Shakespeare. Settings:

- "current": the project as it is.
- "session_constants": the code before `gpt2_lm.constants_kept_in_graph`:
  the child replaces it with a null context, so Keras evaluates the
  constants of every op layer of GPT-2's functional graph in a session.
- "autograph": the code before `gpt2_lm.without_autograph` too: the child
  also replaces TensorFlow's `do_not_convert` with the identity before
  importing the project, so Keras hands every keras-nlp layer to AutoGraph.

The settings alternate (their order rotates), `--repeats` times each;
figures are medians. Each run also counts AutoGraph's conversions and Keras's
session functions (`keras.backend.function`, what evaluates a constant).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ("autograph", "session_constants", "current")

CHILD = r"""
import contextlib, json, sys, time
start = time.perf_counter()
import tensorflow as tf
if sys.argv[1] == "autograph":
  tf.autograph.experimental.do_not_convert = lambda func=None: func
from tensorflow.python.autograph.impl import api
from keras.src import backend
conversions, session_functions = [0], [0]
convert, function = api._convert_actual, backend.function
def counted(entity, program_ctx):
  conversions[0] += 1
  return convert(entity, program_ctx)
def counted_function(*args, **kwargs):
  session_functions[0] += 1
  return function(*args, **kwargs)
api._convert_actual, backend.function = counted, counted_function
from tff_gpt import runtime
from tff_gpt.models import gpt2_lm
from tff_gpt.training import config as config_lib, trainer
if sys.argv[1] != "current":
  gpt2_lm.constants_kept_in_graph = contextlib.nullcontext
imported = time.perf_counter()
config = config_lib.ExperimentConfig(
  root_output_dir=sys.argv[3], experiment_name="build", model_size=sys.argv[2], total_rounds=1,
  clients_per_round=10, clients_per_eval=10, export=False)
if sys.argv[2] == "gpt2_124m":  # One client computation at a time, as 124M runs need on 24 GB (README).
  config.max_concurrent_computation_calls = 1
with runtime.execution_context(**config.context_args()):
  experiment = trainer.FederatedExperiment(config, progress=False)
  built = time.perf_counter()
  if sys.argv[4] == "round":
    experiment.run()
  ran = time.perf_counter()
print(json.dumps(dict(import_s=imported - start, build_s=built - imported, first_round_and_eval_s=ran - built,
                      total_s=ran - start, autograph_conversions=conversions[0],
                      keras_session_functions=session_functions[0])))
"""


def measure(setting: str, model_size: str, build_only: bool = False) -> dict:
  with tempfile.TemporaryDirectory() as out:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
      [sys.executable, "-c", CHILD, setting, model_size, out, "build" if build_only else "round"],
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
  parser.add_argument("--model_sizes", nargs="+", default=["tiny", "2x128"])
  parser.add_argument(
    "--build_only", action="store_true", help="Time the import and build only, no round (GPT-2 124M)."
  )
  parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  results = {}
  for size in args.model_sizes:
    order = list(args.settings)
    runs = {setting: [] for setting in order}
    for i in range(args.repeats):
      for setting in order[i % len(order) :] + order[: i % len(order)]:
        runs[setting].append(measure(setting, size, args.build_only))
        print(size, setting, json.dumps({k: round(v, 2) for k, v in runs[setting][-1].items()}), flush=True)
    medians = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in runs.items()}
    results[size] = dict(runs=runs, median=medians)
    if "current" in medians:
      for before in set(medians) - {"current"}:
        for figure in ("build_s", "total_s"):
          ratio = medians["current"][figure] / medians[before][figure]
          results[size][f"{figure}_current_over_{before}"] = ratio
    print(size, json.dumps({k: v for k, v in results[size].items() if k != "runs"}, indent=1), flush=True)
  if args.out:  # Sizes measured before (another --model_sizes call) are kept.
    kept = {}
    if os.path.exists(args.out):
      with open(args.out) as f:
        kept = json.load(f)
    with open(args.out, "w") as f:
      json.dump({**kept, **results}, f, indent=1)


if __name__ == "__main__":
  main()
