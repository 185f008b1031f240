"""What federated GPT-2 memorizes on Shakespeare, with and without user-level DP: exposure and membership.

  .venv/bin/python -m studies.memorization --seeds 0,1,2 --work_dir /tmp/memorization \
      --out studies/results_memorization.json --plot docs/memorization_exposure.png
  .venv/bin/python -m studies.memorization --quick     # tiny model, few rounds (the tests run it)

Every row trains GPT-2 on Shakespeare's roles (`--dataset=shakespeare`) with
the same canaries (`--canaries`, one per repeat count in `REPEATS`, planted in
`s.canary_clients` roles that are not evaluation clients; docs/memorization.md)
and attacks client membership at the end (`--membership_clients`): FedAvg
(uniform client weights, as DP needs); LoRA on the same; FedAvg with user-level
DP (`--aggregator=dp_fixed`, clip `s.clip`) at each noise multiplier of
`s.noise`; and central training of FedAvg's own batches (`tff_gpt.central.replay`,
one model), audited alike. Each row: mean exposure by repeat count (never
planted: `0`), membership AUC and TPR at 1% FPR, held-out loss per token, the
epsilon at delta 1e-5 of the DP rows (`dp_accounting`, as the run reports it).
"""

import dataclasses
import json
import os
import tempfile

from studies import common, runs

REPEATS = "1,10,100"


@dataclasses.dataclass(frozen=True)
class Settings:
  model_size: str
  sequence_length: int
  rounds: int
  clients: int  # Per round.
  canary_clients: int
  canary_digits: int
  membership_clients: int
  clip: float
  noise: tuple = (0.3, 1.0, 3.0)
  repeats: str = REPEATS

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def settings(quick: bool) -> Settings:
  if quick:
    return Settings("tiny", 32, 2, 3, 1, 3, 20, 1.0, noise=(1.0,), repeats="1,4")
  return Settings("2x128", 80, 200, 20, 3, 6, 200, 1.0)


def rows_to_run(s: Settings) -> dict:
  """`{label: (run name, flags)}` of the federated rows."""
  dp = [
    "--aggregator=dp_fixed",
    f"--dp_clip_norm={s.clip}",
    "--client_optimizer=sgd",
    "--client_learning_rate=0.5",
  ]
  rows = {
    "FedAvg": ("fedavg", ["--client_optimizer=sgd", "--client_learning_rate=0.5"]),
    "LoRA 8": ("lora", ["--trainable=lora:8", "--client_learning_rate=0.003"]),
  }
  for z in s.noise:
    rows[f"FedAvg, DP noise {z:g}"] = (f"dp{z:g}", [*dp, f"--dp_noise_multiplier={z}"])
  return rows


def federated(s: Settings, work: str, name: str, seed: int, extra: list[str]) -> tuple[str, dict]:
  flags = [
    "--dataset=shakespeare",
    "--algorithm=fedavg_unweighted",
    f"--model_size={s.model_size}",
    f"--sequence_length={s.sequence_length}",
    f"--total_rounds={s.rounds}",
    f"--clients_per_round={s.clients}",
    f"--rounds_per_eval={s.rounds}",
    f"--rounds_per_checkpoint={s.rounds}",
    f"--canaries={len(s.repeats.split(','))}",
    f"--canary_repeats={s.repeats}",
    f"--canary_clients={s.canary_clients}",
    f"--canary_digits={s.canary_digits}",
    f"--membership_clients={s.membership_clients}",
    "--max_concurrent_computation_calls=1",
    "--sample_prompt=",
    "--noexport",
    f"--seed={seed}",
    *extra,
  ]
  name = runs.seeded(name, seed)
  return name, _row(runs.federated(work, name, flags).summary)


def _row(summary: dict) -> dict:
  membership = summary.get("membership", {})
  return {
    "exposure": {k: v["mean_exposure"] for k, v in summary["canary_exposure"].items()},
    "space_bits": summary["canary_space_bits"],
    "membership_auc": membership.get("auc"),
    "membership_tpr_at_1pct_fpr": membership.get("tpr_at_1pct_fpr"),
    "eval_loss": summary["eval_loss"],
    "dp_epsilon": summary.get("dp_epsilon"),
    "bytes_communicated": summary.get("bytes_communicated", 0),
  }


def central(work: str, name: str) -> dict:
  """FedAvg's own batches through one model (client SGD 0.5), audited as the runs are."""
  from tff_gpt import runtime
  from tff_gpt.central import replay
  from tff_gpt.training import audit, outputs, trainer
  from tff_gpt.training import config as config_lib

  dirs = outputs.RunDirs.of(os.path.join(work, "runs"), name)
  config = config_lib.ExperimentConfig.from_dict(outputs.read_json(dirs.run_config)["experiment"])
  with tempfile.TemporaryDirectory(prefix="central-") as elsewhere:
    config = dataclasses.replace(config, root_output_dir=elsewhere)
    with runtime.execution_context(max_concurrent_computation_calls=1):
      experiment = trainer.FederatedExperiment(config, progress=False)
      result = replay.train(
        experiment.context, experiment.evaluate, config.client_learning_rate, progress=False
      )
      measured = audit.measure(experiment.context, result["model_weights"])
  summary = dict(measured, eval_loss=result["evals"][-1]["eval_loss"])
  return _row(summary)


def main(argv=None) -> dict:
  parser = common.parser(__doc__, work_dir="Where the runs go; reusing one skips what is done.")
  parser.add_argument("--seeds", default="0", help="Comma-separated seeds; every row runs at each.")
  args = parser.parse_args(argv)
  s = settings(args.quick)
  work = args.work_dir or tempfile.mkdtemp(prefix="memorization-")
  os.makedirs(work, exist_ok=True)
  by_seed = {}
  for seed in (int(x) for x in args.seeds.split(",")):
    rows = {}
    for label, (name, extra) in rows_to_run(s).items():
      run_name, rows[label] = federated(s, work, name, seed, extra)
      if name == "fedavg":
        rows["central, FedAvg's batches"] = central(work, run_name)
    by_seed[seed] = rows
    print(json.dumps(rows, indent=1))
  return common.write({"settings": s.to_dict(), "rows_by_seed": by_seed, "work_dir": work}, args.out)


if __name__ == "__main__":
  main()
