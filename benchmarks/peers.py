"""Side by side with Flower: the same federated GPT-2 fine-tuning in tff_gpt and in Flower, alternating.

  scripts/setup_peers_venv.sh        # once: .venv-peers (Flower, PyTorch, transformers, PEFT)
  .venv/bin/python -m benchmarks.peers --out benchmarks/results_peers.json   # both sizes, 20 rounds
  .venv/bin/python -m benchmarks.peers --quick     # tiny model, 2 rounds: the losses agree (full test tier)

For each size, one tff_gpt run is prepared (`prepare`): its initial model
exported to Hugging Face's format (the project's export), and every batch of
every client of every round, and the held-out batches, written as arrays.
Then, `--repeats` times, alternating which goes first, each framework trains
the same rounds in a process of its own while the process tree's memory
(PSS: shared pages counted once) is sampled every 100 ms:

- tff_gpt: `experiments.run_experiment` with the run's flags (its metrics
  rows give each round's seconds, tokens and train loss);
- Flower: `benchmarks/flower_app` in `.venv-peers` (Flower's simulation
  engine on Ray, PyTorch, transformers, PEFT for LoRA), FedAvg weighted by
  examples, each round's clients and batches those of the tff_gpt run.

Both final models are then scored by the same PyTorch code on the same
held-out batches. Sizes: `2x128` trained whole, 10 clients a round of at most
64 sequences (client Adam 3e-3, the project's defaults); and `12x768h12`
(GPT-2 124M's shape, a character vocabulary: 85M parameters) with LoRA rank
8, 4 clients a round of at most 16 sequences (a step takes seconds on one
core). tff_gpt's LoRA adapts query and value; PEFT's adapts GPT-2's fused
`c_attn` (the same number of trained values: Hugging Face's GPT-2 has no
separate query and value to target), so the two LoRA runs start from the
same model but train differently parametrized adapters.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np

from benchmarks import peers_prepare, process_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS_PYTHON = os.path.join(REPO, ".venv-peers", "bin", "python")
SIZES = {
  "2x128": dict(model_size="2x128", trainable="all"),
  # At about 5 s a step on one core here, 4 clients of 2 batches a round (20 rounds in minutes, not hours).
  "12x768, LoRA 8": dict(
    model_size="12x768h12",
    trainable="lora:8",
    clients_per_round=4,
    max_elements_per_client=16,
    clients_per_eval=5,
  ),
}
QUICK = {
  "tiny": dict(model_size="tiny", trainable="all"),
  "tiny, LoRA 2": dict(model_size="tiny", trainable="lora:2"),
}
# With LoRA, Flower also runs tff_gpt's own adapters (query and value, its initial values) in PyTorch: its
# losses must agree with tff_gpt's as the whole model's do, which tells the adapters apart from the rest.
EXACT = "flower, tff_gpt's adapters"
COMMON = dict(
  dataset="shakespeare",
  sequence_length=80,
  client_batch_size=8,
  max_elements_per_client=64,
  client_optimizer="adam",
  client_learning_rate=0.003,
  max_concurrent_computation_calls=2,
  clients_per_eval=20,
  eval_batch_size=64,
  seed=0,
)


def run_settings(size: dict, rounds: int, clients: int, root: str, name: str) -> dict:
  return (
    dict(
      COMMON,
      total_rounds=rounds,
      clients_per_round=clients,
      rounds_per_eval=rounds,
      rounds_per_checkpoint=rounds,
      root_output_dir=root,
      experiment_name=name,
    )
    | size
  )


def as_flags(settings: dict) -> list[str]:
  """`experiments.run_experiment`'s flags for `settings` (no sample generated at the end)."""
  return [f"--{k}={v}" for k, v in settings.items()] + ["--sample_prompt="]


def run_tff(settings: dict, plan: dict, log: str) -> dict:
  from tff_gpt.training import outputs

  shutil.rmtree(os.path.join(settings["root_output_dir"]), ignore_errors=True)
  env = dict(os.environ, PYTHONPATH=REPO)
  command = [sys.executable, "-m", "experiments.run_experiment", *as_flags(settings)]
  figures = process_tree.measured(command, log, env)
  dirs = outputs.RunDirs.of(settings["root_output_dir"], settings["experiment_name"])
  sampled = {str(r): ids for r, ids in outputs.read_sampled_clients(dirs).items()}
  if sampled != plan["client_ids"]:
    sys.exit("error: the timed tff_gpt run sampled other clients than the prepared one.")
  rows = outputs.read_metrics(dirs)
  rounds = [
    {
      "round": int(r["round_num"]),
      "seconds": float(r["round_seconds"]),
      "tokens": int(r["train_tokens"]),
      "train_loss": float(r["train_loss"]),
    }
    for r in rows
  ]
  final = os.path.join(dirs.results, "export", "huggingface")
  return dict(figures, rounds=rounds, own_eval_loss=float(rows[-1]["eval_loss"]), final=final)


def run_flower(data_dir: str, log: str, adapters: str = "peft") -> dict:
  """The Flower app on `data_dir`; with LoRA, PEFT's adapters or tff_gpt's own (`flower_app.lm.adapters`)."""
  final = os.path.join(data_dir, f"flower_final_{adapters}")
  rounds_file = os.path.join(data_dir, f"flower_rounds_{adapters}.json")
  shutil.rmtree(final, ignore_errors=True)
  if os.path.exists(rounds_file):
    os.remove(rounds_file)
  env = dict(os.environ, PYTHONPATH=REPO, RAY_DEDUP_LOGS="0", PEERS_ADAPTERS=adapters)
  command = [PEERS_PYTHON, "-m", "benchmarks.flower_app.run", "--data", data_dir]
  figures = process_tree.measured(command, log, env)
  with open(rounds_file) as f:
    rounds = json.load(f)
  return dict(figures, rounds=rounds, final=final)


def run_side(side: str, timed: dict, plan: dict, data: str, log: str) -> dict:
  if side == "tff_gpt":
    return run_tff(timed, plan, log)
  return run_flower(data, log, "tff_gpt" if side == EXACT else "peft")


def heldout(data_dir: str, models: dict) -> dict:
  """Held-out loss of each Hugging Face model directory, by the same PyTorch code."""
  specs = [f"{name}={path}" for name, path in models.items()]
  command = [PEERS_PYTHON, "-m", "benchmarks.flower_app.run", "--data", data_dir, "--evaluate", *specs]
  env = dict(os.environ, PYTHONPATH=REPO)
  out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
  if out.returncode != 0:
    sys.exit(f"error: scoring the final models failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def round_fit(rounds: list[dict]) -> dict:
  """Seconds a round as fixed + per-token cost (least squares over rounds after the first): where the
  time goes, from the run itself (rounds differ in tokens as their clients do)."""
  if len(rounds) < 3:
    return {}
  slope, fixed = np.polyfit([r["tokens"] for r in rounds], [r["seconds"] for r in rounds], 1)
  return {"fixed_seconds_per_round": float(fixed), "seconds_per_1k_tokens": float(slope) * 1000}


def side_figures(runs: list[dict]) -> dict:
  """Medians over repeats: seconds a round after the first, the first, tokens a second, peak memory."""

  def per_run(run):
    later = run["rounds"][1:] or run["rounds"]
    return {
      "first_round_seconds": run["rounds"][0]["seconds"],
      "round_seconds": statistics.median(r["seconds"] for r in later),
      "tokens_per_second": statistics.median(r["tokens"] / r["seconds"] for r in later),
      "peak_pss_mb": run["peak_pss_mb"],
      "peak_root_pss_mb": run["peak_root_pss_mb"],  # tff_gpt's Python process; Flower's driver and server.
      "wall_seconds": run["wall_seconds"],
      **round_fit(later),
    }

  each = [per_run(run) for run in runs]
  return {k: statistics.median(e[k] for e in each) for k in each[0]} | {"repeats": each}


def compare(label: str, size: dict, args, work: str) -> dict:
  """Prepares one size, runs both frameworks `args.repeats` times alternating, scores both final models."""
  slug = label.split(",")[0].replace(" ", "")
  data = os.path.join(work, slug, "data")
  shutil.rmtree(os.path.join(work, slug), ignore_errors=True)
  prepared = run_settings(size, args.rounds, args.clients, os.path.join(work, slug, "prepare"), "peers")
  print(f"{label}: preparing the tff_gpt run's batches and initial model...", flush=True)
  plan = peers_prepare.prepare(prepared, data)
  timed = dict(prepared, root_output_dir=os.path.join(work, slug, "tff"))
  sides = ("tff_gpt", "flower") + ((EXACT,) if size["trainable"].startswith("lora") else ())
  runs = {side: [] for side in sides}
  for rep in range(args.repeats):
    for side in sides if rep % 2 == 0 else sides[::-1]:
      log = os.path.join(work, slug, f"{side}_{rep}.log")
      runs[side].append(run_side(side, timed, plan, data, log))
      last = runs[side][-1]
      print(f"  {side} #{rep + 1}: {last['wall_seconds']:.0f} s, peak {last['peak_pss_mb']:,.0f} MB")
  finals = {"initial": os.path.join(data, "initial")} | {s: runs[s][-1]["final"] for s in runs}
  figures = {side: side_figures(r) for side, r in runs.items()}
  tff, flower = figures["tff_gpt"], figures["flower"]
  return {
    "size": label,
    "settings": {k: v for k, v in timed.items() if k not in ("root_output_dir", "experiment_name")},
    **figures,
    "throughput_ratio": tff["tokens_per_second"] / flower["tokens_per_second"],
    "memory_ratio": tff["peak_pss_mb"] / flower["peak_pss_mb"],
    "train_loss": {s: [r["train_loss"] for r in runs[s][0]["rounds"]] for s in runs},
    "rounds": {s: [{k: r[k] for k in ("seconds", "tokens")} for r in runs[s][0]["rounds"]] for s in runs},
    "heldout_loss": {k: v["loss"] for k, v in heldout(data, finals).items()},
    "tff_gpt_own_eval_loss": runs["tff_gpt"][-1]["own_eval_loss"],
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="The tiny model, 2 rounds of 3 clients, once.")
  parser.add_argument("--sizes", default=";".join(SIZES), help=f"Of {list(SIZES)}, separated by ';'.")
  parser.add_argument("--rounds", type=int, default=20)
  parser.add_argument("--clients", type=int, default=10, help="Clients a round.")
  parser.add_argument("--repeats", type=int, default=2, help="Runs of each framework, alternating.")
  parser.add_argument("--work_dir", default="/tmp/tff_gpt_peers")
  parser.add_argument("--out", default=None, help="Write the figures as JSON here.")
  args = parser.parse_args(argv)
  if not os.path.exists(PEERS_PYTHON):
    sys.exit("error: no .venv-peers here; run scripts/setup_peers_venv.sh first (Flower, PyTorch, PEFT).")
  sizes = QUICK if args.quick else {k: SIZES[k] for k in args.sizes.split(";")}
  if args.quick:
    args.rounds, args.clients, args.repeats = 2, 3, 1
  rows = [compare(label, size, args, args.work_dir) for label, size in sizes.items()]
  for row in rows:
    print(row_line(row))
  result = {"rows": rows, "rounds": args.rounds, "repeats": args.repeats}
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return result


def row_line(row: dict) -> str:
  t, f, loss = row["tff_gpt"], row["flower"], row["heldout_loss"]
  return (
    f"{row['size']}: tff_gpt {t['tokens_per_second']:,.0f} tok/s, Flower {f['tokens_per_second']:,.0f} "
    f"({row['throughput_ratio']:.2f}x); s/round {t['round_seconds']:.2f} vs {f['round_seconds']:.2f} (first "
    f"{t['first_round_seconds']:.1f} vs {f['first_round_seconds']:.1f}); peak {t['peak_pss_mb']:,.0f} vs "
    f"{f['peak_pss_mb']:,.0f} MB ({row['memory_ratio']:.2f}x); held-out loss {loss['tff_gpt']:.4f} vs "
    f"{loss['flower']:.4f} (initial {loss['initial']:.4f})"
  )


if __name__ == "__main__":
  main()
