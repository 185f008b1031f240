"""LoRA, FFA-LoRA and heterogeneous ranks (HetLoRA, FlexLoRA) on the federated dialogue task, at equal rounds.

  .venv/bin/python -m studies.lora_variants --work_dir /tmp/dialogue --out studies/results_lora_variants.json
  .venv/bin/python -m studies.lora_variants --quick     # tiny model, few rounds (the tests run it)
  .venv/bin/python -m studies.lora_variants --work_dir /tmp/dialogue --seeds 0,1,2 --keep_rows \
      --out studies/results_lora_variants.json          # seeds 1 and 2 beside the rows --out holds

The task is `studies.dialogue`'s (central pretraining on the histories, then
federated fine-tuning on the other plays' dialogue, loss on the responses;
a work directory it made is reused, preset included). Each variant runs the
same rounds, clients and local epochs at rank 8 (`lora:8`, `ffa_lora:8`,
`hetlora:8` and `flexlora:8` with client ranks 2, 4 and 8 equally likely) and, at every
evaluation, TFF's personalization evaluation on 20 clients. Each row: held-out
response perplexity, bytes communicated, the exactness gap of the round's
aggregate (median over rounds, and the last), and the global against the
personalized held-out loss of the personalization clients.
"""

import dataclasses
import os
import statistics
import tempfile

from studies import common, dialogue, runs


def variants(s: dialogue.Settings) -> dict:
  """`{row label: (run name, flags)}`: one change each from LoRA at the dialogue study's best settings."""
  r = s.rank
  common = [
    "--dataset_path={work}/dialogue_pairs.jsonl",
    "--examples=pairs",
    "--client_epochs_per_round=4",
    f"--personalization_clients={s.personalization_clients}",
  ]
  low = ",".join(str(k) for k in (max(1, r // 4), max(1, r // 2), r))
  return {
    f"LoRA, rank {r}": ("variants_lora", [*common, f"--trainable=lora:{r}"]),
    f"FFA-LoRA, rank {r}": ("variants_ffa", [*common, f"--trainable=ffa_lora:{r}"]),
    f"HetLoRA, client ranks {low} of {r}": (
      "variants_het",
      [*common, f"--trainable=hetlora:{r}", f"--lora_client_ranks={low}"],
    ),
    f"FlexLoRA, client ranks {low} of {r}": (
      "variants_flex",
      [*common, f"--trainable=flexlora:{r}", f"--lora_client_ranks={low}"],
    ),
  }


def gap_and_personalization(work: str, name: str) -> dict:
  """The run's exactness gap per round and its last personalization figures, from its metrics CSV."""
  run = runs.RunResult.read(work, name)
  gaps = run.column("lora_gap")
  last = [r for r in run.rows if r.get("personalization_gain_median")][-1]
  keys = (
    "global_loss_mean",
    "personalized_loss_mean",
    "gain_median",
    "gain_p10",
    "gain_p90",
    "fraction_improved",
  )
  return {
    "lora_gap_median": statistics.median(gaps),
    "lora_gap_last": gaps[-1],
    "personalization": {k: float(last[f"personalization_{k}"]) for k in keys},
  }


def personalize_again(work: str, names: list[str], rates: tuple, clients: int, steps: int) -> dict:
  """`{run: {rate: summary}}`: TFF's personalization evaluation of each run's final weights, at other rates.

  The runs personalize at `--personalization_learning_rate` as they go; this measures the same clients
  and steps at each of `rates` on the final model, to see whether the rate or the model decides the gain.
  """
  from tff_gpt import runtime
  from tff_gpt.training import personalization, restore

  out = {name: {} for name in names}
  if not rates:
    return out
  with runtime.execution_context(max_concurrent_computation_calls=1):
    for name in names:
      task = restore.open_run(os.path.join(work, "runs"), name)
      weights, _ = restore.latest_weights(task)
      for rate in rates:
        p = personalization.Personalization(clients, steps, rate, task.config.client_batch_size)
        out[name][str(rate)] = personalization.evaluate(task, weights, p)[0]
        print(f"{name}: personalization at {rate}: {out[name][str(rate)]}", flush=True)
  return out


def table(rows: dict) -> str:
  lines = [
    "| variant | response perplexity | MB communicated | gap (median, last) | global -> personalized loss "
    "(median gain) |",
    "|---|---|---|---|---|",
  ]
  for label, r in rows.items():
    p = r["personalization"]
    lines.append(
      f"| {label} | {r['response_perplexity']:.2f} | {r['bytes_communicated'] / 2**20:.1f} | "
      f"{r['lora_gap_median']:.2g}, {r['lora_gap_last']:.2g} | {p['global_loss_mean']:.3f} -> "
      f"{p['personalized_loss_mean']:.3f} ({p['gain_median']:+.3f}) |"
    )
  return "\n".join(lines)


def main(argv=None) -> dict:
  parser = common.parser(__doc__, work_dir="studies.dialogue's work directory (made when missing).")
  parser.add_argument("--seeds", default="0", help="Comma-separated seeds of every variant's run.")
  parser.add_argument("--keep_rows", action="store_true", help=runs.KEEP_ROWS_HELP)
  args = parser.parse_args(argv)
  s = dataclasses.replace(dialogue.settings(args.quick), personalization_clients=3 if args.quick else 20)
  work = args.work_dir or tempfile.mkdtemp(prefix="dialogue-")
  done = runs.kept_results(args.out) if args.keep_rows else {}
  kept = runs.kept_rows(done)
  pretrained, _ = dialogue.prepare(s, work)
  held_out = pretrained["epochs"][-1]["eval_loss"]
  if done:  # Files written before this key: the preset is the dialogue study's (the same work directory).
    recorded = done.get("preset_held_out_loss")
    if recorded is None:
      recorded = common.read("results_dialogue.json")["pretraining"]["epochs"][-1]["eval_loss"]
    runs.same_preset(recorded, held_out, "the preset")
  planned = {
    label: (name, [f.format(work=work) for f in flags]) for label, (name, flags) in variants(s).items()
  }
  seeds = [int(x) for x in args.seeds.split(",")]
  by_seed = dialogue.rows_over_seeds(s, work, planned, seeds, kept)
  by_seed.pop("pair_counts")
  for seed, rows in by_seed.items():
    by_seed[seed] = {label: {k: v for k, v in r.items() if k != "replies"} for label, r in rows.items()}
    for label, (name, _) in planned.items():
      if "lora_gap_median" not in by_seed[seed][label]:
        by_seed[seed][label] |= gap_and_personalization(work, runs.seeded(name, seed))
  result_rows = by_seed[seeds[0]]
  print(table({k: v for k, v in result_rows.items() if "lora_gap_median" in v}))
  unchanged = result_rows["pretrained, unchanged"]["response_perplexity"]
  print(f"pretrained, unchanged: response perplexity {unchanged:.2f}")
  rates = () if args.quick else (0.001, 0.01)  # Quick: the runs' own personalization only.
  names = [
    runs.seeded(n, seeds[0])
    for label, (n, _) in planned.items()
    if "personalization_at" not in result_rows[label]
  ]
  again = personalize_again(work, names, rates, s.personalization_clients, 20)
  for label, (name, _) in planned.items():
    result_rows[label].setdefault("personalization_at", again.get(runs.seeded(name, seeds[0])))
  result = {"settings": s.to_dict(), "preset_held_out_loss": held_out, "rows": result_rows, "work_dir": work}
  if len(seeds) > 1:
    result |= over_seeds(by_seed)
    print(result["seeds_table"])
  return common.write(result, args.out)


def over_seeds(by_seed: dict) -> dict:
  """Every row's response loss over the seeds of `by_seed` (`{seed: {label: row}}`), each variant paired
  with the LoRA row of its seed."""
  base = next(label for label in by_seed[next(iter(by_seed))] if label.startswith("LoRA, rank"))
  summary = runs.over_seeds(by_seed, "response_loss", lambda label: base)
  return {
    "rows_by_seed": {str(seed): rows for seed, rows in by_seed.items()},
    "over_seeds": summary,
    "seeds_table": runs.seeds_table(summary, "response loss (nats per token)"),
  }


if __name__ == "__main__":
  main()
