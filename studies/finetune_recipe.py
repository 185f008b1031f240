"""Why federated full fine-tuning of a pretrained GPT-2 gets worse, and settings under which it does not.

  .venv/bin/python -m studies.finetune_recipe --work_dir /tmp/dialogue \
      --out studies/results_finetune_recipe.json

On `studies.dialogue`'s task (the preset pretrained centrally on the
histories, federated fine-tuning on the other plays' dialogue with the loss
on the responses; a work directory it made is reused), whole-model runs of
40 rounds of 10 clients that differ from the drifting one (client Adam 3e-4,
FedAvg) in one setting each: the client optimizer (Adam restarts from zero
moments on every client in every round, so its first steps have the size of
the learning rate in every coordinate, whatever the gradient; plain SGD does
not), the client rate, the server rate, and the local work. Each row: held-out
response perplexity after every 10 rounds (the runs' own federated
evaluation, response tokens only) and bytes; and the ceiling: the drifting
row's own batches trained centrally (one model, one Adam state throughout,
`tff_gpt.central.replay`) at 3e-4, 1e-4 and 3e-5, evaluated the same way.
"""

import math
import tempfile

from studies import common, dialogue, runs

ROWS = {
  # label: (run name, flags beyond --trainable=all on the pairs)
  "Adam 3e-4 (the drifting row)": ("all_pairs", ["--client_learning_rate=3e-4"]),
  "Adam 1e-4": ("recipe_adam1e-4", ["--client_learning_rate=1e-4"]),
  "Adam 3e-5": ("recipe_adam3e-5", ["--client_learning_rate=3e-5"]),
  "SGD 0.1": ("recipe_sgd0.1", ["--client_optimizer=sgd", "--client_learning_rate=0.1"]),
  "SGD 0.3": ("recipe_sgd0.3", ["--client_optimizer=sgd", "--client_learning_rate=0.3"]),
  "SGD 1.0": ("recipe_sgd1", ["--client_optimizer=sgd", "--client_learning_rate=1.0"]),
  "Adam 3e-4, server rate 0.3": (
    "recipe_adam_slr0.3",
    ["--client_learning_rate=3e-4", "--server_learning_rate=0.3"],
  ),
}


def ceiling(work: str, name: str, rates: tuple) -> dict:
  """`{rate: [(round, response perplexity), ...]}` of run `name`'s batches trained centrally."""
  central = runs.central_same_batches(work, name, rates)
  return {r: [(e["round_num"], math.exp(e["eval_loss"])) for e in evals] for r, evals in central.items()}


def _run_or_divergence(name: str, s: dialogue.Settings, work: str, flags: list[str]) -> dict:
  """The run's figures (`dialogue.run_row`), or `{"diverged_round", "message"}` when it diverged."""
  diverged = runs.divergence(work, name)
  if diverged is None:
    try:
      return dialogue.run_row(name, s, work, flags)
    except RuntimeError:
      diverged = runs.divergence(work, name)
      if diverged is None:
        raise
  return diverged


def table(rows: dict, unchanged: float) -> str:
  lines = [
    "| row | response perplexity at rounds 10, 20, 30, 40 | final vs unchanged | MB communicated |",
    "|---|---|---|---|",
  ]
  for label, r in rows.items():
    if "diverged_round" in r:
      lines.append(f"| {label} | diverged in round {r['diverged_round']} | | |")
      continue
    curve = ", ".join(f"{p:.1f}" for _, p in r["curve"])
    change = f"{100 * (r['run_eval_perplexity'] / unchanged - 1):+.1f}%"
    lines.append(f"| {label} | {curve} | {change} | {r['bytes_communicated'] / 2**20:.0f} |")
  return "\n".join(lines)


def main(argv=None) -> dict:
  parser = common.parser(
    __doc__, quick=False, work_dir="studies.dialogue's work directory (made when missing)."
  )
  args = parser.parse_args(argv)
  s = dialogue.settings(False)
  work = args.work_dir or tempfile.mkdtemp(prefix="dialogue-")
  dialogue.prepare(s, work)
  shared = [f"--dataset_path={work}/dialogue_pairs.jsonl", "--examples=pairs", "--trainable=all"]
  rows = {
    label: _run_or_divergence(name, s, work, [*shared, *flags]) for label, (name, flags) in ROWS.items()
  }
  unchanged = common.read("results_dialogue.json")["rows"]["pretrained, unchanged"]["response_perplexity"]
  print(table(rows, unchanged))
  # The ceiling: the drifting row's batches through one model, at its client rate and below.
  central = ceiling(work, ROWS["Adam 3e-4 (the drifting row)"][0], (3e-4, 1e-4, 3e-5))
  result = {
    "settings": s.to_dict(),
    "unchanged_response_perplexity": unchanged,
    "rows": rows,
    "central_same_batches": central,
    "work_dir": work,
  }
  return common.write(result, args.out)


if __name__ == "__main__":
  main()
