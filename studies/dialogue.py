"""Federated dialogue: pretrain centrally, then federated LoRA on Shakespeare's dialogue, loss on responses.

  .venv/bin/python -m studies.dialogue --out studies/results_dialogue.json --work_dir /tmp/dialogue
  .venv/bin/python -m studies.dialogue --quick      # tiny model, few rounds (the tests run it)
  .venv/bin/python -m studies.dialogue --seeds 0,1,2 --keep_rows --out studies/results_dialogue.json \
      --work_dir /tmp/dialogue   # SEEDED_ROWS over seeds, the rows --out holds kept

`experiments.pretrain` trains GPT-2 centrally on the histories' text (as
`studies.pretrain_finetune` does, with longer sequences). The other plays'
dialogue is written as JSON Lines: each speech a response, the speech before
it (with its speaker's name) the prompt, the responding role the client
(`shakespeare.dialogue_pairs`). The same pairs are also written as plain text,
`prompt + separator + response` per example, so both files deal the same
examples into the same train/test split. Rows, each scored on the same
held-out pairs' response tokens (response perplexity, by Keras on the final
weights; the pair runs' own federated evaluation agrees):

the preset unchanged; federated LoRA on the pairs with the loss on the
responses (`--examples=pairs`) and on the same pairs as plain text; full
fine-tuning on the pairs (client Adam 3e-4); the LoRA recipe search, one
change each (client rate, local epochs, rank, server momentum, FFA-LoRA).
"""

import dataclasses
import glob
import json
import os
import tempfile

from studies import common, dialogue_scoring, pretrain_finetune, runs

SEPARATOR = "\n\n### Response:\n"


@dataclasses.dataclass(frozen=True)
class Settings(runs.Settings):
  plays: tuple | None = None  # The plays whose dialogue is fine-tuned on; None: every play not pretrained on.
  rank: int = 8  # LoRA's rank.
  personalization_clients: int | None = (
    None  # studies.lora_variants: clients personalized at each evaluation.
  )


def settings(quick: bool) -> Settings:
  if quick:
    return Settings(
      groups="hamlet,macbeth",
      plays=("othello",),
      model_size="tiny",
      bpe_vocab_size=400,
      epochs=1,
      sequence_length=48,
      rounds=2,
      clients=3,
      rounds_per_eval=2,
      clients_per_eval=5,
      rank=2,
    )
  return Settings(
    groups=pretrain_finetune.HISTORIES,
    model_size="2x128",
    bpe_vocab_size=2000,
    epochs=6,
    sequence_length=128,
    rounds=40,
    clients=10,
    rounds_per_eval=10,
    clients_per_eval=60,
  )


def write_dialogue(s: Settings, work: str) -> dict:
  """The dialogue of the plays not pretrained on, as pairs and as plain text; counts."""
  from tff_gpt.data import pairs, shakespeare

  plays_dir = shakespeare.find_plays_dir()
  skip = set(s.groups.split(","))
  pairs_rows, text_rows = [], []
  for path in sorted(glob.glob(os.path.join(plays_dir, "**", "*.md"), recursive=True)):
    play = shakespeare.play_name(path)
    if play in skip or (s.plays and play not in s.plays):
      continue
    with open(path, encoding="utf-8") as f:
      roles = shakespeare.dialogue_pairs(f.read(), SEPARATOR)
    for role, examples in roles.items():
      if len(examples) < 2:
        continue
      for example in examples:
        prompt, response = pairs.split(example)
        client = f"{play}:{role}"
        pairs_rows.append({"client_id": client, "prompt": prompt, "response": response})
        text_rows.append({"client_id": client, "text": prompt + SEPARATOR + response})
  for name, rows in (("dialogue_pairs.jsonl", pairs_rows), ("dialogue_text.jsonl", text_rows)):
    with open(os.path.join(work, name), "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
  return {"pairs": len(pairs_rows), "clients": len({r["client_id"] for r in pairs_rows})}


def run_row(name: str, s: Settings, work: str, extra: list[str]) -> dict:
  """One federated run from the preset (reused when it finished before, in `work`); its row's figures."""
  flags = [
    "--dataset=jsonl",
    f"--preset={work}/preset",
    f"--sequence_length={s.sequence_length}",
    f"--clients_per_eval={s.clients_per_eval}",
    f"--total_rounds={s.rounds}",
    f"--clients_per_round={s.clients}",
    f"--rounds_per_eval={s.rounds_per_eval}",
    f"--rounds_per_checkpoint={s.rounds}",
    "--max_concurrent_computation_calls=1",
    "--sample_prompt=",
    "--noexport",
    *extra,
  ]
  run = runs.federated(work, name, flags)
  return {
    "run_eval_perplexity": run.summary["eval_perplexity"],
    "bytes_communicated": run.summary["bytes_communicated"],
    "median_round_seconds": run.median_round_seconds,
    "train_seconds": run.summary["train_seconds"],
    "curve": run.curve(),
  }


def table(rows: dict) -> str:
  lines = [
    "| row | held-out response perplexity | vs unchanged | MB communicated | s/round |",
    "|---|---|---|---|---|",
  ]
  base = rows["pretrained, unchanged"]["response_perplexity"]
  for name, r in rows.items():
    mb = f"{r['bytes_communicated'] / 2**20:.1f}" if "bytes_communicated" in r else "0"
    seconds = f"{r['median_round_seconds']:.2f}" if "median_round_seconds" in r else "-"
    change = f"{100 * (r['response_perplexity'] / base - 1):+.1f}%"
    lines.append(f"| {name} | {r['response_perplexity']:.2f} | {change} | {mb} | {seconds} |")
  return "\n".join(lines)


def rows_to_run(s: Settings, work: str, quick: bool) -> dict:
  """`{row label: (run name, its flags)}`."""
  pairs_file, text_file = (
    f"--dataset_path={work}/dialogue_pairs.jsonl",
    f"--dataset_path={work}/dialogue_text.jsonl",
  )
  lora = f"--trainable=lora:{s.rank}"
  e4 = "--client_epochs_per_round=4"
  on_pairs = [pairs_file, "--examples=pairs"]
  planned = {
    "federated LoRA, loss on responses": ("lora_pairs", [*on_pairs, lora]),
    "federated LoRA, same pairs as plain text": ("lora_text", [text_file, lora]),
  }
  if not quick:  # Full fine-tuning, and the recipe search: each row one change from the first.
    planned |= {
      "federated full fine-tuning, loss on responses": (
        "all_pairs",
        [*on_pairs, "--trainable=all", "--client_learning_rate=3e-4"],
      ),
      "LoRA, client lr 1e-2": ("lora_pairs_lr01", [*on_pairs, lora, "--client_learning_rate=0.01"]),
      "LoRA, client lr 1e-3": ("lora_pairs_lr001", [*on_pairs, lora, "--client_learning_rate=0.001"]),
      "LoRA, 4 local epochs": ("lora_pairs_e4", [*on_pairs, lora, e4]),
      "LoRA rank 16 (alpha 32), 4 local epochs": (
        "lora16_e4",
        [*on_pairs, "--trainable=lora:16", "--lora_alpha=32", e4],
      ),
      "LoRA, 4 local epochs, FedAvgM": ("lora8_e4_avgm", [*on_pairs, lora, e4, "--algorithm=fedavgm"]),
      "FFA-LoRA, 4 local epochs": ("ffa_pairs_e4", [*on_pairs, f"--trainable=ffa_lora:{s.rank}", e4]),
      "LoRA, 8 local epochs": ("lora_pairs_e8", [*on_pairs, lora, "--client_epochs_per_round=8"]),
      "LoRA, 4 local epochs, 20 clients a round": (
        "lora_pairs_e4_c20",
        [*on_pairs, lora, e4, "--clients_per_round=20"],
      ),
    }
  return planned


def prepare(s: Settings, work: str) -> tuple[dict, dict]:
  """The preset pretrained and the dialogue corpora written in `work` (unless there): their figures."""
  pretrained = pretrain_finetune.pretrain(s, work, rest_jsonl=False)
  return pretrained, write_dialogue(s, work)


BASE_ROW = "federated LoRA, loss on responses"  # What rows over seeds are compared with.
# The rows the first conclusion rests on, run at every seed of --seeds (the others at the first only;
# studies.lora_variants runs LoRA and FFA-LoRA at 4 local epochs over seeds).
SEEDED_ROWS = (BASE_ROW, "federated LoRA, same pairs as plain text")


def rows_over_seeds(
  s: Settings, work: str, planned: dict, seeds: list[int], kept: dict | None = None
) -> dict:
  """`{seed: {label: row}}`: every planned run once per seed (seed 0's under the names runs had before
  seeds, others' ending in `_s<seed>`), each scored on the same held-out pairs (`score`). A seed whose
  rows `kept` (`runs.kept_rows`) holds, every planned label and the unchanged preset's, is not run."""
  kept = kept or {}
  labels = ["pretrained, unchanged", *planned]
  todo = [seed for seed in seeds if not all(label in kept.get(seed, {}) for label in labels)]
  names = {seed: {label: runs.seeded(name, seed) for label, (name, _) in planned.items()} for seed in todo}
  runs_ = {
    seed: {
      label: run_row(names[seed][label], s, work, [*extra, f"--seed={seed}"])
      for label, (_, extra) in planned.items()
    }
    for seed in todo
  }
  scores = dialogue_scoring.score(
    s, work, [name for by_label in names.values() for name in by_label.values()], SEPARATOR
  )
  out = {seed: {label: kept[seed][label] for label in labels} for seed in seeds if seed not in todo}
  for seed in todo:
    out[seed] = {"pretrained, unchanged": scores["unchanged"]} | {
      label: {**runs_[seed][label], **scores[names[seed][label]]} for label in planned
    }
  return {seed: out[seed] for seed in seeds} | {"pair_counts": scores["pair_counts"]}


def main(argv=None) -> dict:
  parser = common.parser(__doc__, work_dir="Where the preset and runs go; reusing one skips what is done.")
  parser.add_argument(
    "--seeds", default="0", help="Comma-separated seeds: all rows at the first, SEEDED_ROWS at every one."
  )
  parser.add_argument("--keep_rows", action="store_true", help=runs.KEEP_ROWS_HELP)
  args = parser.parse_args(argv)
  s = settings(args.quick)
  work = args.work_dir or tempfile.mkdtemp(prefix="dialogue-")
  os.makedirs(work, exist_ok=True)
  done = runs.kept_results(args.out) if args.keep_rows else {}
  kept = runs.kept_rows(done)
  pretrained, data = prepare(s, work)
  if done:
    held_out = [p["epochs"][-1]["eval_loss"] for p in (done["pretraining"], pretrained)]
    runs.same_preset(*held_out, "the dialogue preset")
  seeds = [int(x) for x in args.seeds.split(",")]
  planned = rows_to_run(s, work, args.quick)
  first = rows_over_seeds(s, work, planned, seeds[:1], kept)
  pair_counts = first.pop("pair_counts")
  result_rows = first[seeds[0]]
  print(table(result_rows))
  for name, r in result_rows.items():
    print(f"\n[{name}]")
    for reply in r.get("replies", [])[:2]:
      print(
        f"  prompt {reply['prompt'][-80:]!r}\n  reply  {reply['reply'][:120]!r}\n"
        f"  truth  {reply['truth'][:120]!r}"
      )
  result = {
    "settings": s.to_dict(),
    "pretraining": pretrained,
    "dialogue": data,
    "pair_counts": pair_counts,
    "rows": result_rows,
    "work_dir": work,
  }
  if len(seeds) > 1:
    seeded_rows = {label: run for label, run in planned.items() if label in SEEDED_ROWS}
    by_seed = rows_over_seeds(s, work, seeded_rows, seeds, kept | first)
    by_seed.pop("pair_counts")
    plain = {
      seed: {k: {f: v for f, v in r.items() if f != "replies"} for k, r in rows.items()}
      for seed, rows in by_seed.items()
    }
    result["rows_by_seed"] = {str(seed): rows for seed, rows in plain.items()}
    result["over_seeds"] = runs.over_seeds(plain, "response_loss", lambda label: BASE_ROW)
    result["seeds_table"] = runs.seeds_table(result["over_seeds"], "response loss (nats per token)")
    print(result["seeds_table"])
  return common.write(result, args.out)


if __name__ == "__main__":
  main()
