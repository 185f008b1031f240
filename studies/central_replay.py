"""Federated runs against their central baseline: the same batches, through one model.

  .venv/bin/python -m studies.central_replay --out studies/results_central_replay.json \\
      --plot docs/central_baseline_shakespeare.png
  .venv/bin/python -m studies.central_replay --quick   # tiny GPT-2, 2 rounds (the tests run it)

Reads a comparison flagfile (default `configs/gpt2_vs_lstm_shakespeare.flags`:
the sweep's best GPT-2 and the tuned LSTM) as `experiments.compare_algorithms`
does and runs its federated runs there (finished ones are skipped, so after
that command nothing is trained again). Then it trains each configuration
(its best grid point) centrally on exactly the batches its federated run
trained on (`tff_gpt.central.replay`: the same clients, rounds,
batches and client optimizer, one model and one optimizer state throughout,
the same initial weights and the same federated evaluation), at the
configuration's client rate times each of `--factors`: a round of central
training makes `clients_per_round` times the sequential steps of a client,
so it usually wants a smaller rate. Prints a table, writes every evaluation
to `--out` and the curves to `--plot`. With `--out` naming a file written
before, central runs already in it are kept, not run again; `--configurations`
trains only the configurations it names (the others in `--out` are kept and
reported as they are).
"""

import argparse
import json
import math
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tff_gpt import (
  comparison,  # noqa: E402
  runtime,  # noqa: E402
)
from tff_gpt.central import replay  # noqa: E402
from tff_gpt.training import outputs, trainer  # noqa: E402

FLAGFILE = "configs/gpt2_vs_lstm_shakespeare.flags"
QUICK_FLAGS = """\
--comparison_name=central_baseline_quick
--total_rounds=2
--clients_per_round=2
--rounds_per_eval=1
--clients_per_eval=3
--max_elements_per_client=8
--export=false
--configuration=gpt2_tiny: --model_size=tiny --embedding_init_stddev=0.1 --attention_init_stddev=0.09 \
--client_learning_rate=0.01 --client_epochs_per_round=2 --client_batch_size=4
"""


def _comparison(flagfile: str, extra: list[str]):
  """The comparison the flagfile describes: (base config, configurations, its directory)."""
  base, configurations, name = comparison.read_comparison(flagfile, tuple(extra))
  return base, configurations, os.path.join(base.root_output_dir, name)


def per_char(evaluation: dict) -> float:
  """Held-out loss per character: what rows of different tokenizers compare by.

  Evaluations recorded before `eval_loss_per_char` existed are all of
  character runs, whose loss per token is the same number.
  """
  value = evaluation.get("eval_loss_per_char")
  return float(evaluation["eval_loss"] if value in (None, "") else value)


def _federated(record: dict, config) -> dict:
  rows = outputs.read_metrics(outputs.RunDirs.of(config.root_output_dir, config.experiment_name))
  evals = [
    dict(
      round_num=int(r["round_num"]),
      eval_loss=float(r["eval_loss"]),
      eval_loss_per_char=per_char(r),
      eval_accuracy=float(r["eval_accuracy"]),
    )
    for r in rows
    if r.get("eval_loss")
  ]
  return dict(
    run=record["run"],
    tokenizer=config.tokenizer,
    client_learning_rate=config.client_learning_rate,
    final_eval_loss=record["summary"]["eval_loss"],
    final_loss_per_char=evals[-1]["eval_loss_per_char"],
    train_sequences=sum(int(r["train_sequences"]) for r in rows),
    evals=evals,
  )


def _central(experiment, learning_rate: float) -> dict:
  result = replay.train(experiment.context, experiment.evaluate, learning_rate)
  result.pop("model_weights")
  keys = ("round_num", "eval_loss", "eval_loss_per_char", "eval_accuracy", "eval_perplexity")
  result["evals"] = [{k: e[k] for k in keys} for e in result["evals"]]
  result["final_eval_loss"] = result["evals"][-1]["eval_loss"]
  result["final_loss_per_char"] = result["evals"][-1]["eval_loss_per_char"]
  return result


def table(results: dict) -> str:
  lines = [
    "| configuration | federated: client lr | final loss per char | central: lr | final loss per char "
    "| steps | seconds |",
    "|---|---|---|---|---|---|---|",
  ]
  for name, r in results.items():
    fed = r["federated"]
    for i, c in enumerate(sorted(r["central"], key=lambda c: c["learning_rate"])):
      best = " (best)" if c["learning_rate"] == r["best_central_learning_rate"] else ""
      lead = (
        [name, f"{fed['client_learning_rate']:g}", f"{per_char(fed['evals'][-1]):.4f}"]
        if i == 0
        else ["", "", ""]
      )
      lines.append(
        "| "
        + " | ".join(
          [
            *lead,
            f"{c['learning_rate']:g}{best}",
            f"{per_char(c['evals'][-1]):.4f}",
            str(c["steps"]),
            f"{c['seconds']:.0f}",
          ]
        )
        + " |"
      )
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
  for ax, (name, r) in zip(axes[0], results.items(), strict=True):
    fed = r["federated"]["evals"]
    ax.plot([e["round_num"] for e in fed], [per_char(e) for e in fed], "o-", color="k", label="federated")
    for c in sorted(r["central"], key=lambda c: c["learning_rate"]):
      style = "s-" if c["learning_rate"] == r["best_central_learning_rate"] else "x--"
      ax.plot(
        [e["round_num"] for e in c["evals"]],
        [per_char(e) for e in c["evals"]],
        style,
        label=f"central lr {c['learning_rate']:g}",
      )
    ax.set_title(name)
    ax.set_xlabel("round (central: the same batches)")
    ax.set_ylabel("held-out loss (nats per character)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _measure(configuration, comparison_runs: tuple, factors: list, done: list, save) -> None:
  """The configuration's best grid point, and its batches trained centrally at each of `factors` times its
  client rate (those in `done` kept); `save(name, row)` after each."""
  base, comparison_dir, records = comparison_runs
  configs = {c.experiment_name: c for c in comparison.grid_configs(base, configuration, comparison_dir)}
  best = min((r for r in records if r["run"] in configs), key=lambda r: r["summary"]["eval_loss"])
  config = configs[best["run"]]
  federated = _federated(best, config)
  central, experiment = [], None
  with runtime.execution_context(**config.context_args()):
    for rate in (config.client_learning_rate * factor for factor in factors):
      kept = next((c for c in done if math.isclose(c["learning_rate"], rate, rel_tol=1e-9)), None)
      if kept is None:
        print(f"\n=== {configuration.name}: central, learning rate {rate:g} ===", flush=True)
        # Built once per configuration, so that its evaluation compiles once.
        experiment = experiment or trainer.FederatedExperiment(config)
      central.append(kept or _central(experiment, rate))
      best_rate = min(central, key=lambda c: c["final_eval_loss"])["learning_rate"]
      save(
        configuration.name, dict(federated=federated, central=central, best_central_learning_rate=best_rate)
      )


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--flagfile", default=FLAGFILE, help="A comparison flagfile (configs/*.flags).")
  parser.add_argument("--factors", default="0.125,0.25,0.5,1", help="Central rates: client rate times each.")
  parser.add_argument("--quick", action="store_true", help="Tiny model and 2 rounds (for tests).")
  parser.add_argument("--out", default="", help="Write the results as JSON here (and reuse those in it).")
  parser.add_argument("--plot", default="", help="Write the curves as PNG here.")
  parser.add_argument(
    "--configurations", default="", help="Comma-separated names: train only these centrally (default: all)."
  )
  args = parser.parse_args(argv)
  extra = []
  flagfile = args.flagfile
  if args.quick:
    work = tempfile.mkdtemp(prefix="central_baseline-")
    flagfile = os.path.join(work, "quick.flags")
    with open(flagfile, "w") as f:
      f.write(QUICK_FLAGS)
    extra = [f"--root_output_dir={work}/runs"]
  factors = [float(x) for x in args.factors.split(",")]
  base, configurations, comparison_dir = _comparison(flagfile, extra)
  if args.configurations:
    wanted = args.configurations.split(",")
    unknown = sorted(set(wanted) - {c.name for c in configurations})
    if unknown:
      parser.error(f"--configurations: {unknown} not in {[c.name for c in configurations]}")
    configurations = [c for c in configurations if c.name in wanted]
  records = comparison.run_comparison(base, configurations, comparison_dir=comparison_dir)
  previous = {}
  if args.out and os.path.exists(args.out):
    with open(args.out) as f:
      previous = json.load(f).get("results", {})
  results = {}

  def save(name: str, row: dict) -> None:  # After each central run: an interrupted study keeps what it did.
    results[name] = row
    if args.out:
      with open(args.out, "w") as f:
        json.dump({"flagfile": args.flagfile, "factors": factors, "results": previous | results}, f, indent=1)

  for configuration in configurations:
    done = previous.get(configuration.name, {}).get("central", [])
    _measure(configuration, (base, comparison_dir, records), factors, done, save)
  results = previous | results  # The report covers every configuration in --out, run now or before.
  print("\n" + table(results))
  if args.plot:
    plot(results, args.plot)
    print(f"Plot: {args.plot}")
  return results


if __name__ == "__main__":
  main()
