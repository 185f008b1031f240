"""Federated fine-tuning of GPT-2 124M by `--trainable` mode: memory, speed, bytes.

  .venv/bin/python -m benchmarks.peft --out benchmarks/results_peft.json   # GPT-2 124M, every mode
  .venv/bin/python -m benchmarks.peft --quick                              # tiny model (the tests run it)

Random GPT-2 124M weights (vocabulary 50,257, as GPT-2's) are saved as a
local KerasNLP preset and stand in for the pretrained ones. The task is the
issue's: sequences of 128 characters of federated Shakespeare, batches of 4,
10 clients a round with 4 batches each (clients with at least 16
sequences), client Adam 3e-3, server SGD 1.0 (weighted FedAvg),
`max_concurrent_computation_calls=1`.

Each mode runs in its own process, so that its peak memory is its own. In
that process, side by side:

- federated: the time to build the learning process, the first round and a
  later round (tokens/s), peak resident memory of the process tree (this
  process and TFF's worker) sampled every 20 ms, and the bytes each client
  receives and sends per round, from the process's types;
- central: a compiled Keras train step (the same loss and Adam) over the same
  trained subset and exactly the same batches, in the same process (after the
  federated part, whose memory it would otherwise inflate);
- the time to read the frozen-weights bundle once, the per-client cost the
  frozen weights add (`tff_gpt.models.frozen`).
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

from tff_gpt import runtime
from tff_gpt.runtime import host

# Before TensorFlow runs anything: the central loops here and TFF's worker get the same thread pools.
host.configure()
THREADS = {k: os.environ.get(k) for k in (host.INTRA_OP, host.INTER_OP)}

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_federated as tff  # noqa: E402

from benchmarks.measure import PeakMemory, count_tokens  # noqa: E402
from tff_gpt.algorithms import registry  # noqa: E402
from tff_gpt.central import step as central_step  # noqa: E402
from tff_gpt.data import datasets, preprocessing, tokenizers  # noqa: E402
from tff_gpt.models import frozen, gpt2_lm, presets, tff_model  # noqa: E402

MODES = ("all", "last_blocks:1", "bitfit", "lora:8")
QUICK_MODES = ("all", "last_blocks:1", "bitfit", "lora:2")


def settings(quick: bool) -> dict:
  if quick:
    return dict(size="tiny", vocabulary_size=90, sequence_length=16, batch_size=4, batches=2, clients=3)
  return dict(
    size="gpt2_124m", vocabulary_size=50257, sequence_length=128, batch_size=4, batches=4, clients=10
  )


def model_config(s: dict) -> dict:
  return gpt2_lm.model_config(
    s["size"], vocabulary_size=s["vocabulary_size"], max_sequence_length=max(s["sequence_length"], 1024)
  )


def write_preset(s: dict, directory: str) -> str:
  """Random weights of the benchmarked model, saved as a local preset."""
  tf.keras.utils.set_random_seed(0)
  import keras_nlp

  presets.save_preset(keras_nlp.models.GPT2Backbone(**model_config(s)), None, directory)
  return directory


def client_datasets(s: dict, round_num: int) -> list:
  """`clients` Shakespeare clients with at least `batches` full batches, `batches` batches each."""
  corpus = datasets.load_corpus("shakespeare")
  data = preprocessing.TokenizedClients(
    corpus.texts("train"), tokenizers.CharTokenizer(), sequence_length=s["sequence_length"]
  )
  needed = s["batches"] * s["batch_size"]
  eligible = [cid for cid in data.client_ids if len(data.sequences(cid)["labels"]) >= needed]
  sample = tff.simulation.build_uniform_sampling_fn(eligible, replace=False, random_seed=0)
  return [
    data.train_dataset(cid, round_num=round_num, seed=0, batch_size=s["batch_size"], max_elements=needed)
    for cid in sample(round_num, s["clients"])
  ]


def _nbytes(types) -> int:
  return sum(int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize for t in types)


def federated(s: dict, mode: str, preset: str, work_dir: str, rounds) -> dict:
  config = model_config(s)
  frozen_dir = os.path.join(work_dir, "frozen_weights")
  start = time.perf_counter()
  weights = tff_model.initial_weights(config, seed=0, trainable=mode, preset=preset, frozen_dir=frozen_dir)
  initial_s = time.perf_counter() - start
  model_fn = tff_model.build_model_fn(
    config, sequence_length=s["sequence_length"], trainable=mode, frozen_dir=frozen_dir
  )
  start = time.perf_counter()
  process = tff.learning.algorithms.build_weighted_fed_avg(
    model_fn,
    client_optimizer_fn=tff.learning.optimizers.build_adam(3e-3),
    server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0),
    loop_implementation=registry.LOOP_IMPLEMENTATION,
  )
  build_s = time.perf_counter() - start
  trained = process.get_model_weights.type_signature.result
  trained_bytes = _nbytes(list(trained.trainable) + list(trained.non_trainable))
  state = process.set_model_weights(process.initialize(), weights)
  del weights
  gc.collect()
  seconds = []
  with PeakMemory() as memory:
    for round_num in rounds:
      start = time.perf_counter()
      state = process.next(state, client_datasets(s, round_num)).state
      seconds.append(time.perf_counter() - start)
  return {
    "initial_weights_s": initial_s,
    "build_process_s": build_s,
    "round_s": seconds,
    "peak_mb": memory.peak,
    "trained_parameters": sum(int(np.prod(t.shape)) for t in trained.trainable),
    "client_download_bytes": trained_bytes,
    "client_upload_bytes": trained_bytes + 4,  # The update, and the client weight.
    "frozen_dir": frozen_dir,
  }


def central_seconds(s: dict, mode: str, preset: str, batches: list) -> tuple[float, int]:
  """Seconds of a compiled train step over `batches` (after a one-batch warm-up); total parameters."""
  model, trained, _ = tff_model.build_lm(model_config(s), trainable=mode, preset=preset)
  optimizer = tf.keras.optimizers.Adam(3e-3)
  step = tf.function(central_step.train_step(model, trained, central_step.keras_update(optimizer, trained)))

  step(*batches[0]).numpy()  # Warm-up: tracing and the optimizer's slots.
  start = time.perf_counter()
  for x, y in batches:
    step(x, y)
  step(*batches[-1]).numpy()  # Waits for the queued steps; one extra step, subtracted below.
  seconds = (time.perf_counter() - start) * len(batches) / (len(batches) + 1)
  return seconds, model.count_params()


def frozen_read_seconds(s: dict, mode: str, frozen_dir: str) -> float:
  """Seconds to read the whole frozen bundle once (what each client adds), after one warm read."""
  layout = tff_model.frozen_layout(model_config(s), trainable=mode)
  if not layout.specs:
    return 0.0
  reader = frozen.Reader(frozen_dir, layout)

  def read():
    for index in layout.specs:
      reader.read(index).numpy()

  read()
  start = time.perf_counter()
  read()
  return time.perf_counter() - start


def run_mode(mode: str, quick: bool, preset: str, clients: int | None = None) -> dict:
  """One mode, federated then central, in this process."""
  s = settings(quick)
  s["clients"] = clients or s["clients"]
  rounds = (1, 2)
  context = runtime.execution_context(max_concurrent_computation_calls=1)
  with tempfile.TemporaryDirectory() as work_dir, context:
    fed = federated(s, mode, preset, work_dir, rounds)
    frozen_s = frozen_read_seconds(s, mode, fed.pop("frozen_dir"))
  batches = [b for ds in client_datasets(s, rounds[-1]) for b in ds]
  tokens = count_tokens(client_datasets(s, rounds[-1]))
  central_s, parameters = central_seconds(s, mode, preset, batches)
  later = fed["round_s"][-1]
  full_bytes = 4 * parameters
  exchanged = fed["client_download_bytes"] + fed["client_upload_bytes"]
  return dict(
    fed,
    mode=mode,
    parameters=parameters,
    tokens_per_round=tokens,
    first_round_s=fed["round_s"][0],
    later_round_s=later,
    first_over_later=fed["round_s"][0] / later,
    federated_tokens_per_s=tokens / later,
    central_tokens_per_s=tokens / central_s,
    federated_over_central=central_s / later,
    frozen_read_s=frozen_s,
    clients=s["clients"],
    frozen_read_s_per_round=frozen_s * s["clients"],
    bytes_per_client_round=exchanged,
    full_model_bytes_per_client_round=2 * full_bytes + 4,
    bytes_fraction_of_full=exchanged / (2 * full_bytes + 4),
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="Tiny model, 3 clients (~2 min).")
  parser.add_argument("--modes", default=None, help="Comma-separated --trainable modes (default: all four).")
  parser.add_argument("--out", default=None, help="Write the figures as JSON here.")
  parser.add_argument(
    "--clients", type=int, default=None, help="Clients per round (default 10; all of 124M fits 2 in 24 GB)."
  )
  parser.add_argument("--one_mode", default=None, help=argparse.SUPPRESS)  # Child process: one mode.
  parser.add_argument("--preset", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--row_out", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one_mode:
    row = run_mode(args.one_mode, args.quick, args.preset, args.clients)
    with open(args.row_out, "w") as f:
      json.dump(row, f, default=float)
    return
  modes = args.modes.split(",") if args.modes else (QUICK_MODES if args.quick else MODES)
  started = time.perf_counter()
  s = settings(args.quick)
  s["clients"] = args.clients or s["clients"]
  results = {"mode": "quick" if args.quick else "full", "settings": s, "cpus": os.cpu_count(), **THREADS}
  results["rows"] = []
  with tempfile.TemporaryDirectory() as tmp:
    preset = write_preset(s, os.path.join(tmp, "preset"))
    for mode in modes:
      print(f"== --trainable={mode} ==", flush=True)
      row_out, log = os.path.join(tmp, "row.json"), os.path.join(tmp, "log.txt")
      command = [sys.executable, "-m", "benchmarks.peft", f"--one_mode={mode}", f"--preset={preset}"]
      command += [f"--row_out={row_out}"] + (["--quick"] if args.quick else [])
      command += [f"--clients={args.clients}"] if args.clients else []
      with open(log, "w") as f:  # A file, not a pipe: TFF's worker inherits the child's stdout.
        status = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT).returncode
      if status != 0:
        with open(log) as f:
          sys.stderr.write(f.read()[-4000:])
        raise SystemExit(f"--trainable={mode} failed with status {status}.")
      with open(row_out) as f:
        row = json.load(f)
      print(json.dumps(row, indent=1), flush=True)
      results["rows"].append(row)
  results["total_seconds"] = time.perf_counter() - started
  print(f"\nAll modes in {results['total_seconds']:.0f} s.")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1, default=float)


if __name__ == "__main__":
  main()
