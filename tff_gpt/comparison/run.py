"""Runs several algorithm configurations on one task and reports them side by side.

Every configuration starts from the same base `ExperimentConfig` (same data,
model, seed, rounds and clients per round), so all see the same clients in the
same rounds (`tff.simulation.build_uniform_sampling_fn` of the seed). A
configuration may carry a grid of client and server learning rates; as in
Reddi et al. 2021, each configuration is reported at its best grid point,
chosen by the final loss on the validation clients (`--validation_clients`),
or, as literature tables often did, on the reported clients themselves. With
several seeds every grid point runs once per seed and the report gives means,
intervals and paired differences (`comparison_stats`). A grid point whose global model diverged
(`divergence`) is recorded as such and the comparison goes on; it is never
a configuration's best unless all of its grid points diverged.

Layout under `<root_output_dir>/<comparison_name>/`: `checkpoints/`,
`results/` and `logdir/` of every run (named `<configuration>` or
`<configuration>_clr<lr>_slr<lr>` with a grid), and `report/` with
`comparison.csv`, `comparison.md`, `grid.csv` and `comparison.png`
(`comparison_report.write_report`). The configurations and their grids are
`comparison_configs`.
"""

import concurrent.futures
import multiprocessing
import os
import time

from tff_gpt import errors, runtime
from tff_gpt.comparison.configs import Configuration, grid_configs
from tff_gpt.training import config as config_lib
from tff_gpt.training import divergence, outputs, trainer


def _finished(config: config_lib.ExperimentConfig) -> dict | None:
  dirs = outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
  if not os.path.exists(dirs.summary):
    diverged = divergence.read(dirs.results)  # Diverged before this round count: it would again.
    return diverged if diverged and diverged["diverged_round"] <= config.total_rounds else None
  summary = outputs.read_json(dirs.summary)
  return summary if summary.get("rounds") == config.total_rounds else None


def _train_here(config: config_lib.ExperimentConfig, progress: bool) -> None:
  """Trains one run in this process (a divergence is recorded by the run and ends only that run)."""
  if progress:
    print(f"\n=== {config.experiment_name} ===", flush=True)
  start = time.perf_counter()
  try:
    with runtime.execution_context(**config.context_args()):
      summary = trainer.FederatedExperiment(config, progress=progress).run()
  except divergence.DivergedError as e:  # The rest of the grid still runs.
    if progress:
      print(f"{config.experiment_name}: {e}", flush=True)
  else:
    if progress:
      seconds = time.perf_counter() - start
      print(f"{config.experiment_name}: eval loss {summary['eval_loss']:.4f} ({seconds:.0f} s)", flush=True)


def _train_in_child(config_values: dict) -> None:
  """Trains one run in a process of the pool (`_train_in_processes`), stopping its TFF worker at the end."""
  config = config_lib.ExperimentConfig.from_dict(config_values)
  try:
    with runtime.execution_context(**config.context_args()):
      trainer.FederatedExperiment(config, progress=False).run()
  except divergence.DivergedError:
    pass  # Recorded in the run's results directory, as in this process.
  finally:
    runtime.shutdown()


def _train_in_processes(configs: list, processes: int, progress: bool) -> None:
  """Trains `configs`, `processes` at a time, each run in a fresh process with its own TFF worker."""
  context = multiprocessing.get_context("spawn")  # Not fork: TFF's worker and TensorFlow's threads.
  with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
    started = time.perf_counter()
    futures = {pool.submit(_train_in_child, c.to_dict()): c for c in configs}
    if progress:
      print(f"\n=== {len(configs)} runs, {processes} at a time ===", flush=True)
    try:
      for future in concurrent.futures.as_completed(futures):
        future.result()  # An error in a run (not a divergence) stops the comparison here.
        if progress:
          config = futures[future]
          summary = _finished(config) or {}
          loss = summary.get("eval_loss", float("nan"))
          print(
            f"{config.experiment_name}: eval loss {loss:.4f} (at {time.perf_counter() - started:.0f} s)",
            flush=True,
          )
    except BaseException:
      pool.shutdown(wait=True, cancel_futures=True)  # The runs under way checkpoint and stop (Ctrl-C).
      raise


def run_comparison(
  base: config_lib.ExperimentConfig,
  configurations: list[Configuration],
  *,
  comparison_dir: str,
  seeds: list[int] = (),
  parallel_runs: int = 1,
  progress: bool = True,
) -> list[dict]:
  """Runs every grid point of every configuration with each seed; returns one record per run.

  Every configuration runs with the same seeds, so runs are paired: a seed
  fixes the client sample of each round, the initial weights and the data
  order. Finished runs are skipped (never rerun), interrupted ones resume
  after their last checkpoint. All settings are checked before the first run.
  `parallel_runs` > 1 trains that many runs at once, each in a process of its
  own (`benchmarks/seeds_side_by_side.py`: two at once finish in 0.71 of the
  time of one after the other on 2 cores); each needs its own memory.
  """
  names = [c.name for c in configurations]
  if len(set(names)) != len(names):
    raise errors.UserInputError(f"Configuration names must be unique, got {names}.")
  plan = [(c, grid_configs(base, c, comparison_dir, seeds)) for c in configurations]
  pending = []
  for _, configs in plan:
    for config in configs:
      summary = _finished(config)
      if summary is None:
        pending.append(config)
      elif progress:
        state = "diverged" if "diverged_round" in summary else "finished"
        print(f"{config.experiment_name}: {state} before, skipped.", flush=True)
  if parallel_runs > 1 and len(pending) > 1:
    _train_in_processes(pending, min(parallel_runs, len(pending)), progress)
  else:
    for config in pending:
      _train_here(config, progress)
  return [_record(configuration, config, seeds) for configuration, configs in plan for config in configs]


def _record(configuration: Configuration, config: config_lib.ExperimentConfig, seeds) -> dict:
  grid_point = config.experiment_name
  if len(seeds) > 1:
    grid_point = grid_point.removesuffix(f"_s{config.seed}")
  return {
    "configuration": configuration.name,
    "run": config.experiment_name,
    "seed": config.seed,
    "grid_point": grid_point,
    "summary": _finished(config),
  }
