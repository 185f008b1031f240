"""Pretrain centrally on some Shakespeare plays, fine-tune federatedly on the speakers of the others.

  .venv/bin/python -m studies.pretrain_finetune --out studies/results_pretrain_finetune.json
  .venv/bin/python -m studies.pretrain_finetune --quick      # tiny model, few rounds

The seed's scenario, offline. `experiments.pretrain` trains GPT-2 centrally
on the histories (public text, here), learns its BPE from them and writes a
preset, and writes the speakers of the other 27 plays as a JSON Lines corpus
(each role a client, with the same train/test split as federated
Shakespeare). Then, on those clients, with the same rounds, clients per round
and client batches (`experiments.run_experiment`, one process each):

- from scratch: the same model and tokenizer, random weights, all trained;
- pretrained, unchanged: the preset evaluated on the same held-out text;
- federated fine-tuning from the preset with `--trainable` all,
  last_blocks:1, lora:8 and bitfit.

Each row reports held-out perplexity, bytes communicated, peak memory of the
process tree (per-round samples), median seconds per round and a sample. The
table goes to stdout and `--out`, the curves to `--plot`.
"""

import dataclasses
import json
import os
import re
import tempfile

from studies import common, runs

HISTORIES = (
  "edward-iii,henry-iv-part-1,henry-iv-part-2,henry-v,henry-vi-part-1,henry-vi-part-2,"
  "henry-vi-part-3,henry-viii,king-john,richard-ii,richard-iii"
)
# (--trainable, client learning rate; None = the runs' default, Adam 3e-3).
FINE_TUNES = (("all", None), ("all", 3e-4), ("last_blocks:1", None), ("lora:8", None), ("bitfit", None))
PROMPT = "My lord,"


@dataclasses.dataclass(frozen=True)
class Settings(runs.Settings):
  fine_tunes: tuple = FINE_TUNES  # (--trainable, client learning rate or None) of each fine-tuned row.


def settings(quick: bool) -> Settings:
  if quick:
    return Settings(
      groups="hamlet,macbeth",
      model_size="tiny",
      bpe_vocab_size=400,
      epochs=1,
      sequence_length=32,
      rounds=2,
      clients=3,
      rounds_per_eval=2,
      clients_per_eval=5,
      fine_tunes=(("all", None), ("lora:2", None)),
    )
  return Settings(
    groups=HISTORIES,
    model_size="2x128",
    bpe_vocab_size=2000,
    epochs=6,
    sequence_length=64,
    rounds=40,
    clients=10,
    rounds_per_eval=10,
    clients_per_eval=60,
  )


def run_row(
  name: str, s: runs.Settings, work: str, extra: list[str], *, tokenizer="bpe", sequence_length=None
):
  """One federated run on the other plays (reused when it finished before); its row."""
  run = runs.federated(
    work,
    name,
    [
      "--dataset=jsonl",
      f"--dataset_path={work}/other_plays.jsonl",
      f"--tokenizer={tokenizer}",
      f"--sequence_length={sequence_length or s.sequence_length}",
      f"--total_rounds={s.rounds}",
      f"--clients_per_round={s.clients}",
      f"--rounds_per_eval={s.rounds_per_eval}",
      f"--clients_per_eval={s.clients_per_eval}",
      f"--rounds_per_checkpoint={s.rounds}",
      "--max_concurrent_computation_calls=1",
      f"--sample_prompt={PROMPT}",
      "--noexport",
      *extra,
    ],
  )
  return {
    "eval_loss": run.summary["eval_loss"],
    "eval_perplexity": run.summary["eval_perplexity"],
    "eval_accuracy": run.summary["eval_accuracy"],
    "eval_loss_per_char": run.summary.get("eval_loss_per_char"),
    "bytes_communicated": run.summary["bytes_communicated"],
    "peak_memory_mb": run.peak_memory_mb,
    "median_round_seconds": run.median_round_seconds,
    "curve": run.curve(),
    "loss_per_char_curve": run.curve("eval_loss_per_char", "bytes_communicated"),
    "sample": run.sample,
  }


def unchanged_row(s: runs.Settings, work: str, *, preset: str = "preset", **overrides) -> dict:
  """`{work}/{preset}` evaluated on the same clients' held-out text, and a GPT-2's sample (in process)."""
  from tff_gpt import generation, runtime
  from tff_gpt.models import tff_model
  from tff_gpt.training import config as config_lib
  from tff_gpt.training import trainer

  values = dict(
    root_output_dir=f"{work}/runs",
    experiment_name="unchanged",
    dataset="jsonl",
    dataset_path=f"{work}/other_plays.jsonl",
    tokenizer="bpe",
    preset=f"{work}/{preset}",
    sequence_length=s.sequence_length,
    clients_per_eval=s.clients_per_eval,
  )
  config = config_lib.ExperimentConfig(**values | overrides)
  with runtime.execution_context(max_concurrent_computation_calls=1):
    experiment = trainer.FederatedExperiment(config)
    weights = tff_model.initial_weights(
      experiment.task.model_config, seed=config.seed, preset=experiment.task.preset
    )
    result = experiment.evaluate(weights)
    sample = ""
    if config.gpt2_preset:  # Generation is GPT-2's.
      model = experiment.task.keras_model(weights)
      sample = generation.generate(model, experiment.task.tokenizer, PROMPT, seed=config.seed)
  return {
    "eval_loss": result["eval_loss"],
    "eval_perplexity": result["eval_perplexity"],
    "eval_accuracy": result["eval_accuracy"],
    "eval_loss_per_char": result["eval_loss_per_char"],
    "bytes_communicated": 0,
    "sample": sample,
  }


def table(rows: dict) -> str:
  lines = [
    "| start | trained | held-out perplexity | accuracy | MB communicated | peak memory (MB) | s/round |",
    "|---|---|---|---|---|---|---|",
  ]
  for name, r in rows.items():
    start, trained = name.split(" / ")
    memory = f"{r['peak_memory_mb']:.0f}" if "peak_memory_mb" in r else "-"
    seconds = f"{r['median_round_seconds']:.2f}" if "median_round_seconds" in r else "-"
    lines.append(
      f"| {start} | {trained} | {r['eval_perplexity']:.2f} | {r['eval_accuracy']:.3f} | "
      f"{r['bytes_communicated'] / 2**20:.1f} | {memory} | {seconds} |"
    )
  return "\n".join(lines)


def plot(rows: dict, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for name, r in rows.items():
    if "curve" in r:
      rounds, ppl = zip(*r["curve"], strict=True)
      axes[0].plot(rounds, ppl, marker="o", label=name)
    else:
      axes[0].axhline(r["eval_perplexity"], linestyle="--", color="gray", label=name)
  axes[0].set(
    xlabel="round", ylabel="held-out perplexity", yscale="log", title="Fine-tuning on the other plays"
  )
  axes[0].legend(fontsize=8)
  trained = {n: r for n, r in rows.items() if r["bytes_communicated"]}
  axes[1].scatter(
    [r["bytes_communicated"] / 2**20 for r in trained.values()],
    [r["eval_perplexity"] for r in trained.values()],
  )
  for n, r in trained.items():
    axes[1].annotate(n, (r["bytes_communicated"] / 2**20, r["eval_perplexity"]), fontsize=8)
  axes[1].set(
    xlabel="MB communicated (all rounds)",
    ylabel="final held-out perplexity",
    xscale="log",
    title="Perplexity against bytes",
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def pretrain(
  s: runs.Settings,
  work: str,
  *,
  model="gpt2",
  preset="preset",
  rest_jsonl=True,
  sequence_length=None,
  learning_rate=None,
  epochs=None,
) -> dict:
  """`model` pretrained centrally on the groups' text into `{work}/{preset}` (reused when there).

  GPT-2 learns its BPE from that text; the LSTM reads characters; both train `s.epochs` (or
  `epochs`) at AdamW `learning_rate` (None: `experiments.pretrain`'s default). `rest_jsonl` also
  writes the other groups' clients to `{work}/other_plays.jsonl`. Returns what
  `experiments.pretrain` reported.
  """
  if os.path.exists(f"{work}/{preset}/pretrain.json"):
    print(f"Reusing the pretrained {model} in {work}/{preset}.")
  else:
    args = [f"--model={model}", f"--groups={s.groups}", f"--epochs={epochs or s.epochs}"]
    if learning_rate is not None:
      args.append(f"--learning_rate={learning_rate}")
    args += [f"--sequence_length={sequence_length or s.sequence_length}", f"--preset_dir={work}/{preset}"]
    if model == "gpt2":
      args += [f"--bpe_vocab_size={s.bpe_vocab_size}", f"--model_size={s.model_size}"]
    if rest_jsonl:
      args.append(f"--rest_jsonl={work}/other_plays.jsonl")
    print(runs.python("experiments.pretrain", args).strip().splitlines()[-1])
  with open(f"{work}/{preset}/pretrain.json") as f:
    return json.load(f)


def main(argv=None) -> dict:
  parser = common.parser(
    __doc__, work_dir="Where the preset and runs go (default: a temp dir). Reusing one skips what is done."
  )
  parser.add_argument("--plot", default="", help="Write the curves as PNG here.")
  parser.add_argument(
    "--keep_rows",
    action="store_true",
    help="Keep the rows already in --out and measure only the missing ones (same --work_dir).",
  )
  args = parser.parse_args(argv)
  s = settings(args.quick)
  work = args.work_dir or tempfile.mkdtemp(prefix="pretrain_finetune-")
  pretrained = pretrain(s, work)
  vocab = [
    f"--vocab_file={work}/preset/assets/tokenizer/vocabulary.json",
    f"--merges_file={work}/preset/assets/tokenizer/merges.txt",
  ]
  rows = {}
  if args.keep_rows and os.path.exists(args.out):  # Rows measured before, by an earlier call.
    with open(args.out) as f:
      rows = json.load(f)["rows"]
  if "random / all" not in rows:
    rows["random / all"] = run_row("scratch", s, work, [*vocab, f"--model_size={s.model_size}"])
  if "pretrained / nothing (unchanged)" not in rows:
    rows["pretrained / nothing (unchanged)"] = unchanged_row(s, work)
  for mode, lr in s.fine_tunes:
    name, label, extra = re.sub(r"\W", "_", mode), mode, []
    if lr is not None:
      name, label, extra = f"{name}_lr{lr:g}", f"{mode}, client lr {lr:g}", [f"--client_learning_rate={lr}"]
    if f"pretrained / {label}" not in rows:
      rows[f"pretrained / {label}"] = run_row(
        name, s, work, [f"--preset={work}/preset", f"--trainable={mode}", *extra]
      )
  print(table(rows))
  for name, r in rows.items():
    print(f"\n[{name}] {r['sample'][:300]!r}")
  if args.plot:
    plot(rows, args.plot)
  return common.write(
    {"settings": s.to_dict(), "pretraining": pretrained, "rows": rows, "work_dir": work}, args.out
  )


if __name__ == "__main__":
  main()
