"""The BPE tokenizer's one trace, with and without AutoGraph: what every BPE run pays at start-up.

  .venv/bin/python -m benchmarks.bpe_trace --out benchmarks/results_bpe_trace.json

Each measurement is a fresh process that loads the shipped Shakespeare BPE
(`configs/bpe/shakespeare_384`) and times its first `encode` (the trace of
`keras_tokenizer.tokenize` and one call) and a second one. Settings alternate,
`--repeats` times each; figures are medians in seconds.

- "current": `BPETokenizer` as it is (`tf.function(..., autograph=False)`).
- "autograph": the same `tf.function` with AutoGraph, the code before 2026-12-08.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ("autograph", "current")
BPE = os.path.join(REPO, "configs", "bpe", "shakespeare_384")

CHILD = r"""
import json, sys, time
import tensorflow as tf
from tff_gpt.data import tokenizers
tok = tokenizers.load_bpe(sys.argv[2] + "/vocab.json", sys.argv[2] + "/merges.txt")
if sys.argv[1] == "autograph":
  spec = [tf.TensorSpec([None], tf.string)]
  tok._tokenize = tf.function(tok.keras_tokenizer.tokenize, input_signature=spec)
texts = ["To be, or not to be: that is the question.", "Whether 'tis nobler in the mind to suffer"]
start = time.perf_counter()
first = tok.encode(texts)
traced = time.perf_counter()
again = tok.encode(texts[::-1] * 3)
print(json.dumps({"first_encode_s": traced - start, "second_encode_s": time.perf_counter() - traced}))
"""


def measure(setting: str) -> dict:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
  out = subprocess.run(
    [sys.executable, "-c", CHILD, setting, BPE], env=env, capture_output=True, text=True, check=True, cwd=REPO
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  runs = {s: [] for s in SETTINGS}
  for i in range(args.repeats):
    for setting in SETTINGS[i % 2 :] + SETTINGS[: i % 2]:  # The order alternates.
      runs[setting].append(measure(setting))
      print(setting, runs[setting][-1], flush=True)
  median = {s: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for s, rows in runs.items()}
  result = {"repeats": args.repeats, "median": median, "runs": runs}
  ratio = median["current"]["first_encode_s"] / median["autograph"]["first_encode_s"]
  print(
    f"first encode: autograph {median['autograph']['first_encode_s']:.2f} s, current "
    f"{median['current']['first_encode_s']:.2f} s ({ratio:.2f}x)"
  )
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
