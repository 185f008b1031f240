"""Prints the docs' generated results tables, each made from the results file it summarizes.

  .venv/bin/python scripts/headline_table.py            # prints every table
  .venv/bin/python scripts/headline_table.py --write    # replaces each in its page

Each table sits in its page between `<!-- NAME: scripts/headline_table.py -->`
and `<!-- end of NAME -->`; `tests/test_docs.py` fails when a page's table
differs from what this prints.
"""

import csv
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADLINE_SOURCE = "studies/results_gpt2_vs_lstm_300_rounds.csv"
HEADLINE_COLUMNS = (
  ("configuration", "configuration"),
  ("model", "model"),
  ("tokenizer", "tokenizer"),
  ("client_lr", "client lr"),
  ("final_loss_per_char", "held-out loss per char, round 300"),
  ("final_accuracy", "next-token accuracy (own tokens)"),
  ("mb_communicated", "MB communicated"),
)
# The comparison's report (runs/shakespeare/report/comparison.md), copied with its CSVs and plot.
COMPARISON_SOURCE = "studies/results_compare_shakespeare.md"
COMPARISON_MADE = (
  "2026-12-03; the runs trained at commits 8b04eb2 and 2bb6e1b, which train alike, the report rewritten by "
  "the commit that added this file"
)
SAME_START_SOURCE = "studies/results_same_start.json"  # Written by `studies.same_start --out`.
SAME_START_ARGS = "--work_dir /tmp/same_start --plot docs/same_start.png"
SAME_START_MADE = (
  "2026-12-03; the rows at commit c9ff556, then with `--keep_rows` the central ceilings at 8562229 and "
  "the rows of client Adam 1e-4 and 4 local epochs at bc3b062; seeds 1 and 2 of GPT-2's pretrained rows "
  "2026-12-07 at 19cdcef with `--seeds 0,1,2 --keep_rows`, the GPT-2 preset pretrained again to 9e-7 of "
  "its held-out loss"
)


def headline_table() -> str:
  """README.md's: GPT-2 against the LSTM over 300 rounds."""
  with open(os.path.join(REPO, HEADLINE_SOURCE), newline="") as f:
    rows = list(csv.DictReader(f))
  return "\n".join(
    [
      "| " + " | ".join(title for _, title in HEADLINE_COLUMNS) + " |",
      "|" + "---|" * len(HEADLINE_COLUMNS),
      *("| " + " | ".join(row[key] for key, _ in HEADLINE_COLUMNS) + " |" for row in rows),
      "",
      f"Source: [`{HEADLINE_SOURCE}`]({HEADLINE_SOURCE}), written by `.venv/bin/python -m "
      "experiments.compare_algorithms --flagfile=configs/gpt2_vs_lstm_300_rounds.flags` (2026-11-27, commits "
      "20b999f and fbf73bd; the runs and their reading in "
      "[docs/results.md](docs/results.md#gpt-2-against-the-lstm-over-300-rounds)).",
    ]
  )


def comparison_table() -> str:
  """docs/results.md's: the algorithm comparison over seeds, as its report wrote it."""
  with open(os.path.join(REPO, COMPARISON_SOURCE)) as f:
    report = f.read().strip()
  name = os.path.basename(COMPARISON_SOURCE)
  return (
    f"{report}\n\nSource: [`{COMPARISON_SOURCE}`](../{COMPARISON_SOURCE}) (beside it: the `.csv` of these "
    "rows, `_differences.csv` and `_grid.csv` with every run; the plot is "
    "`docs/comparison_shakespeare.png`), the report of `.venv/bin/python -m "
    f"experiments.compare_algorithms --flagfile=configs/compare_shakespeare.flags` ({COMPARISON_MADE}); "
    f"`{name}` is its `report/comparison.md`."
  )


def same_start_table(up: str, ceiling: bool) -> str:
  """GPT-2 and the LSTM pretrained alike, then fine-tuned federatedly: over seeds when the file has them
  (the first seed's table beside them with `ceiling`, which also sets it against central training of the
  same batches); `up` leads from the page to REPO."""
  with open(os.path.join(REPO, SAME_START_SOURCE)) as f:
    result = json.load(f)
  seeds = [result["seeds_table"]] if "seeds_table" in result else []
  tables = [result["table"], result["gain_table"], *seeds] if ceiling else seeds or [result["table"]]
  return (
    "\n\n".join(tables)
    + f"\n\nSource: [`{SAME_START_SOURCE}`]({up}{SAME_START_SOURCE}), written by `.venv/bin/python -m "
    f"studies.same_start {SAME_START_ARGS} --out {SAME_START_SOURCE}` ({SAME_START_MADE})."
  )


def _study(name: str):
  """A study module (its `table` functions), importable when this file runs as a script."""
  import importlib

  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  return importlib.import_module(f"studies.{name}")


def _results(name: str) -> dict:
  with open(os.path.join(REPO, "studies", name)) as f:
    return json.load(f)


def _source(name: str, command: str, made: str) -> str:
  path = f"studies/{name}"
  return f"Source: [`{path}`](../{path}), written by `.venv/bin/python -m {command}` ({made})."


def _task_table(study: str, variant: str = "") -> str:
  """A study of docs/results_tasks.md: its `doc_table`, and the command and date its module records
  (`variant`: a second setting of the study, `results_<study>_<variant>.json` and `<VARIANT>_COMMAND`)."""
  module, name = _study(study), f"results_{study}{'_' + variant if variant else ''}.json"
  prefix = f"{variant.upper()}_" if variant else ""
  command, made = getattr(module, prefix + "COMMAND"), getattr(module, prefix + "MADE")
  return module.doc_table(_results(name)) + "\n\n" + _source(name, command, made)


def _population_table() -> str:
  """The memorization study's DP rows: the population their noise on the mean would need for an epsilon."""
  module, name = _study("memorization"), "results_memorization.json"
  table = _study("memorization_report").population_table(_results(name))
  return table + "\n\n" + _source(name, module.COMMAND, module.MADE) + " Populations: `dp_accounting`."


def _csv(name: str) -> list[dict]:
  with open(os.path.join(REPO, "studies", name), newline="") as f:
    return list(csv.DictReader(f))


def heterogeneity_table() -> str:
  """Final held-out loss of FedAvg, FedProx and FedAdam at each Dirichlet alpha over plays."""
  rows = _csv("results_heterogeneity.csv")
  alphas = sorted({r["partition_alpha"] for r in rows}, key=float)
  loss = {(r["algorithm"], r["partition_alpha"]): r["final_eval_loss"] for r in rows}
  tv = {r["partition_alpha"]: r["mean_label_tv"] for r in rows}
  lines = ["| alpha | mean label TV | FedAvg | FedProx | FedAdam |", "|---|---|---|---|---|"]
  for a in alphas:
    lines.append(f"| {float(a):g} | {tv[a]} | " + " | ".join(loss[(x, a)] for x in ALGORITHMS) + " |")
  made = "2026-11-26, commit bb9ee4c"
  command = "experiments.compare_algorithms --flagfile=configs/heterogeneity_shakespeare.flags"
  return "\n".join(lines) + "\n\n" + _source("results_heterogeneity.csv", command, made)


ALGORITHMS = ("fedavg", "fedprox", "fedadam")


def pretrain_finetune_table() -> str:
  rows = _results("results_pretrain_finetune.json")["rows"]
  command = (
    "studies.pretrain_finetune --out studies/results_pretrain_finetune.json --plot docs/pretrain_finetune.png"
  )
  made = "2026-11-26, commit 27e4a26, with the `all, client lr 0.0003` row"
  return (
    _study("pretrain_finetune").table(rows)
    + "\n\n"
    + _source("results_pretrain_finetune.json", command, made)
  )


def _with_seeds(table: str, result: dict) -> str:
  """`table`, and the table over seeds when the study ran more than one (`--seeds`)."""
  return table + ("\n\n" + result["seeds_table"] if "seeds_table" in result else "")


def dialogue_table() -> str:
  result = _results("results_dialogue.json")
  rows = result["rows"]
  command = (
    "studies.dialogue --work_dir /tmp/dialogue --seeds 0,1,2 --keep_rows --out studies/results_dialogue.json"
  )
  made = (
    "2026-12-03, commits f9acf6a..ff78574, the last two rows 7ec0573; seeds 1 and 2 of the first two "
    "federated rows 2026-12-07 at 702513b, the preset pretrained again to the same held-out loss"
  )
  table = _with_seeds(_study("dialogue").table(rows), result)
  return table + "\n\n" + _source("results_dialogue.json", command, made)


def recipe_table() -> str:
  """The drifting whole-model row, one change each, and central training of its batches."""
  result = _results("results_finetune_recipe.json")
  unchanged = result["unchanged_response_perplexity"]
  lines = [_study("finetune_recipe").table(result["rows"], unchanged)]
  for rate, curve in result["central_same_batches"].items():
    final = curve[-1][1]
    ppl = ", ".join(f"{p:.1f}" for _, p in curve)
    lines.append(
      f"| central, same batches, Adam {float(rate):g} | {ppl} | {100 * (final / unchanged - 1):+.1f}% | - |"
    )
  command = "studies.finetune_recipe --work_dir /tmp/dialogue --out studies/results_finetune_recipe.json"
  made = "2026-12-03, commit 8438c57"
  return "\n".join(lines) + "\n\n" + _source("results_finetune_recipe.json", command, made)


def lora_variants_table() -> str:
  result = _results("results_lora_variants.json")
  rows = result["rows"]
  trained = {k: v for k, v in rows.items() if "lora_gap_median" in v}
  command = (
    "studies.lora_variants --work_dir /tmp/dialogue --seeds 0,1,2 --keep_rows "
    "--out studies/results_lora_variants.json"
  )
  made = (
    "2026-12-03, commits c7ef83b..43f1d73; seeds 1 and 2 2026-12-07 at d71b019, the preset pretrained again "
    "to the same held-out loss"
  )
  table = _with_seeds(_study("lora_variants").table(trained), result)
  return table + "\n\n" + _source("results_lora_variants.json", command, made)


def sweep_table() -> str:
  """The sweep's ten best runs by held-out loss per character at round 50."""
  rows = sorted(_csv("results_sweep_gpt2.csv"), key=lambda r: float(r["final_loss_per_char"] or "inf"))
  lines = [
    f"The ten best of the sweep's {len(rows)} runs:",
    "",
    "| run | tokenizer | client lr | loss per char, round 50 | accuracy (own tokens) | MB communicated |",
    "|---|---|---|---|---|---|",
    *(
      f"| {r['run']} | {r['tokenizer']} | {r['client_lr']} | {r['final_loss_per_char']} | "
      f"{r['final_accuracy']} | {r['mb_communicated']} |"
      for r in rows[:10]
    ),
  ]
  command = "experiments.compare_algorithms --flagfile=configs/sweep_gpt2_shakespeare.flags"
  made = "2026-11-25..28, ten passes; the comparison's `grid.csv`"
  return "\n".join(lines) + "\n\n" + _source("results_sweep_gpt2.csv", command, made)


def central_table() -> str:
  results = _results("results_central_replay.json")["results"]
  command = (
    "studies.central_replay --out studies/results_central_replay.json "
    "--plot docs/central_baseline_shakespeare.png"
  )
  made = "2026-11-27..28; `gpt2_lr_groups` and `gpt2_bpe_decay` added with `--configurations`"
  return (
    _study("central_replay").table(results) + "\n\n" + _source("results_central_replay.json", command, made)
  )


def pretraining_rates_table() -> str:
  """Each model's held-out loss after pretraining at each AdamW rate; the kept one in bold."""
  pretraining = _results("results_same_start.json")["pretraining"]
  lines = ["| model | AdamW rate: held-out loss after 6 epochs (kept in bold) |", "|---|---|"]
  units = {"gpt2": "GPT-2 (nats per token)", "char_lstm": "LSTM (nats per character)"}
  for model, p in pretraining.items():
    kept = p["preset"].rsplit("_lr", 1)[1]  # The kept preset's directory: ..._lr<rate>.
    cells = [
      f"**{float(r):g}: {loss:.3f}**" if float(r) == float(kept) else f"{float(r):g}: {loss:.3f}"
      for r, loss in sorted(p["held_out_by_rate"].items(), key=lambda x: float(x[0]))
    ]
    lines.append(f"| {units.get(model, model)} | {', '.join(cells)} |")
  return "\n".join(lines)


READING_300 = (
  "; the runs and their reading in [docs/results.md](docs/results.md#gpt-2-against-the-lstm-over-300-rounds)"
)


def gpt2_vs_lstm_300_table() -> str:
  """README.md's headline table, linked from docs/ (its reading is the section it sits in)."""
  return headline_table().replace("](studies/", "](../studies/").replace(READING_300, "")


# block name: (page, what makes it)
BLOCKS = {
  "headline table": ("README.md", headline_table),
  "same-start headline": ("README.md", lambda: same_start_table("", ceiling=False)),
  "comparison table": ("docs/results.md", comparison_table),
  "300-round table": ("docs/results.md", gpt2_vs_lstm_300_table),
  "central table": ("docs/results.md", central_table),
  "sweep table": ("docs/results.md", sweep_table),
  "heterogeneity table": ("docs/results.md", heterogeneity_table),
  "pretrain-finetune table": ("docs/results.md", pretrain_finetune_table),
  "dialogue table": ("docs/results.md", dialogue_table),
  "recipe table": ("docs/results.md", recipe_table),
  "pretraining rates table": ("docs/results.md", pretraining_rates_table),
  "same-start table": ("docs/results.md", lambda: same_start_table("../", ceiling=True)),
  "lora variants table": ("docs/results.md", lora_variants_table),
  "sentiment table": ("docs/results_tasks.md", lambda: _task_table("sentiment")),
  "summarization table": ("docs/results_tasks.md", lambda: _task_table("summarization")),
  "memorization table": ("docs/results_privacy_scale.md", lambda: _task_table("memorization")),
  "dp population table": ("docs/results_privacy_scale.md", lambda: _population_table()),
  "wide memorization table": ("docs/results_privacy_scale.md", lambda: _task_table("memorization", "wide")),
  "small memorization table": ("docs/results_privacy_scale.md", lambda: _task_table("memorization", "small")),
  "dropout table": ("docs/results_privacy_scale.md", lambda: _task_table("dropout")),
}


def markers(name: str) -> tuple[str, str]:
  return f"<!-- {name}: scripts/headline_table.py -->", f"<!-- end of {name} -->"


def page_with_table(name: str, text: str) -> str:
  """`text` (the contents of block `name`'s page) with that block between its markers made anew."""
  _, make = BLOCKS[name]
  start_marker, end_marker = markers(name)
  start, end = text.index(start_marker), text.index(end_marker) + len(end_marker)
  return text[:start] + "\n".join([start_marker, make(), end_marker]) + text[end:]


if __name__ == "__main__":
  for name, (page, make) in BLOCKS.items():
    path = os.path.join(REPO, page)
    if "--write" in sys.argv[1:]:
      with open(path) as f:
        text = page_with_table(name, f.read())
      with open(path, "w") as f:
        f.write(text)
    else:
      print(f"{page} ({name}):\n{make()}\n")
