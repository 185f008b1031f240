"""Federated training of GPT-2 with a `tff.learning` algorithm.

The default is FedAvg (McMahan et al. 2017, "Communication-Efficient Learning
of Deep Networks from Decentralized Data"): each round a uniform sample of
clients trains locally from the global weights, and the server averages the
updates weighted by each client's number of training sequences.
`tff_gpt.algorithms` builds the others (`--algorithm`, `--aggregator`).

The round loop follows `tff.simulation.run_training_process`, with three
differences that a resumable, reproducible run needs: the first state holds
seeded (or pretrained) weights instead of TFF's unseeded initializers, the
last round is always evaluated and checkpointed, and each round's metrics row
carries the throughput and memory figures.
"""

import asyncio
import functools
import os
import time

import numpy as np
import tensorflow_federated as tff
import tqdm

from tff_gpt import algorithms, errors, export, runtime
from tff_gpt.algorithms import aggregators, communication, privacy
from tff_gpt.data import preprocessing, tokenizers
from tff_gpt.models import char_lstm, checkpoints, frozen, gpt2_lm, tff_model
from tff_gpt.models import metrics as metrics_lib
from tff_gpt.models import trainable as trainable_lib
from tff_gpt.training import config as config_lib
from tff_gpt.training import divergence, memory, outputs


class ResumeError(errors.UserInputError):
  """Raised when an output directory holds a run with a different configuration."""


async def _release(managers, value, key):
  await asyncio.gather(*[m.release(value, key=key) for m in managers])


class FederatedExperiment:
  """Everything one run needs, built and checked before any round runs.

  Args:
    config: The run's `config_lib.ExperimentConfig`.

  Raises:
    ValueError: A bad configuration value (names the flag), a corpus or
      tokenizer error (names the file and the fix).
  """

  def __init__(self, config: config_lib.ExperimentConfig):
    config.validate()
    self.config = config
    self.dirs = outputs.RunDirs.of(config.root_output_dir, config.experiment_name)
    self._check_resume()
    # keras-hub and Hugging Face checkpoints are converted once into the run's directory.
    self.preset = checkpoints.resolve(config.preset, self.dirs.pretrained) if config.preset else None
    self.tokenizer = tokenizers.build_tokenizer(
      config.tokenizer, preset=self.preset, **config.tokenizer_kwargs()
    )
    self.corpus = config.load_corpus()
    self.model_config = self._model_config()
    self.train_data = preprocessing.TokenizedClients(
      self.corpus.texts("train"), self.tokenizer, sequence_length=config.sequence_length
    )
    self.test_data = preprocessing.TokenizedClients(
      self.corpus.texts("test"), self.tokenizer, sequence_length=config.sequence_length
    )
    self.model_fn = tff_model.build_model_fn(
      self.model_config, sequence_length=config.sequence_length, **self.model_settings
    )
    self.client_lr_multipliers = tff_model.learning_rate_multipliers(  # None unless the flag is set.
      self.model_config,
      config.client_lr_multipliers,
      trainable=config.trainable,
      lora_alpha=config.lora_alpha,
    )
    self.process = algorithms.build_process(
      config,
      self.model_fn,
      client_model_fn=tff_model.client_model_fn(self.model_fn),
      client_lr_multipliers=self.client_lr_multipliers,
    )
    self._sample_clients = tff.simulation.build_uniform_sampling_fn(
      self.train_data.client_ids, replace=False, random_seed=config.seed
    )
    self.clients_per_round = min(config.clients_per_round, len(self.train_data.client_ids))
    self.bytes_per_client = communication.bytes_per_client(config, self.process)
    self.eval_client_ids = self._choose_eval_clients()
    self._check_data_matches_model()
    self.memory_estimate = memory.of_experiment(
      self, process_bytes=int(memory.process_tree_rss_mb() * memory.MB)
    )
    if not (config.ignore_memory_estimate or config.workers):  # Remote workers' memory is their hosts'.
      memory.check(self.memory_estimate, process_mb=memory.process_tree_rss_mb())

  @functools.cached_property
  def eval_process(self):
    """TFF's `build_fed_eval` of the model, built at the first evaluation."""
    return algorithms.build_eval_process(
      self.model_fn, client_model_fn=tff_model.client_model_fn(self.model_fn)
    )

  def _model_config(self) -> dict:
    c = self.config
    if c.model == char_lstm.ARCHITECTURE:
      return char_lstm.model_config(
        vocabulary_size=self.tokenizer.vocabulary_size, sequence_length=c.sequence_length
      )
    if c.preset:
      model_config = checkpoints.backbone_config(self.preset)
      if model_config["vocabulary_size"] != self.tokenizer.vocabulary_size:
        raise errors.UserInputError(
          f"--preset {c.preset!r}: the model has {model_config['vocabulary_size']} tokens but its "
          f"tokenizer {self.tokenizer.vocabulary_size}; use the tokenizer saved with these weights."
        )
      if c.sequence_length > model_config["max_sequence_length"]:
        raise errors.UserInputError(
          f"--sequence_length {c.sequence_length} exceeds the checkpoint's "
          f"{model_config['max_sequence_length']} positions; pass --sequence_length="
          f"{model_config['max_sequence_length']} or less."
        )
    else:
      model_config = gpt2_lm.model_config(
        c.model_size, vocabulary_size=self.tokenizer.vocabulary_size, max_sequence_length=c.sequence_length
      )
    trainable_lib.parse(c.trainable, num_layers=model_config["num_layers"])
    return model_config

  @property
  def model_settings(self) -> dict:
    """Which weights train, and where the frozen rest lives (`tff_model`)."""
    return dict(
      trainable=self.config.trainable, lora_alpha=self.config.lora_alpha, frozen_dir=self.dirs.frozen_weights
    )

  def keras_model(self, model_weights, *, merged: bool = True):
    """The whole Keras GPT-2 holding `model_weights` (adapters folded in when `merged`)."""
    model = tff_model.keras_model_with_weights(self.model_config, model_weights, **self.model_settings)
    if merged and self.config.model == "gpt2":
      model = tff_model.merged_model(model, self.model_config)
    return model

  def check_frozen_weights(self) -> None:
    """Fails unless the run's frozen-weights file is there and matches the model (subset modes)."""
    layout = getattr(self.model_fn, "frozen_layout", None)
    if layout is not None:
      frozen.check(self.dirs.frozen_weights, layout)

  def _choose_eval_clients(self) -> list[str]:
    ids = self.test_data.client_ids
    n = self.config.clients_per_eval
    if n is None or n >= len(ids):
      return ids
    rng = np.random.default_rng(self.config.seed)
    return sorted(rng.choice(ids, size=n, replace=False).tolist())

  def _check_data_matches_model(self) -> None:
    """Fails before round 1 when client datasets do not fit the model's input."""
    expected = self.process.next.type_signature.parameter[1].member
    client = self.train_data.client_ids[0]
    actual = tff.types.SequenceType(
      tff.types.tensorflow_to_type(
        self.train_data.train_dataset(client, round_num=0, seed=0, batch_size=1).element_spec
      )
    )
    if not expected.is_assignable_from(actual):
      raise ValueError(f"Client datasets have type {actual} but the model expects {expected}.")

  def clients_for_round(self, round_num: int) -> list[str]:
    """The clients of `round_num`: a function of the seed and the round only."""
    return list(self._sample_clients(round_num, self.clients_per_round))

  @property
  def differentially_private(self) -> bool:
    return aggregators.AGGREGATORS[self.config.aggregator].differentially_private

  def dp_epsilon(self, rounds: int) -> float:
    """Client-level epsilon at `--dp_delta` spent by `rounds` rounds."""
    return privacy.epsilon(
      noise_multiplier=self.config.dp_noise_multiplier,
      sampling_rate=self.clients_per_round / len(self.train_data.client_ids),
      rounds=rounds,
      delta=self.config.dp_delta,
    )

  def run_config(self) -> dict:
    """What is stored beside the checkpoints: enough to rebuild the model."""
    return {
      "experiment": self.config.to_dict(),
      "model": self.model_config,
      "tokenizer": self.tokenizer.config(),
    }

  def initial_weights(self) -> tff.learning.models.ModelWeights:
    """The seeded (or pretrained) starting weights; with a trained subset, writes the frozen rest too."""
    return tff_model.initial_weights(
      self.model_config,
      seed=self.config.seed,
      preset=self.preset,
      **self.config.initial_draws,
      **self.model_settings,
    )

  def initial_state(self):
    """A state holding `initial_weights()`.

    In subset modes those write the frozen-weights file first, which `initialize()` and every round read.
    """
    weights = self.initial_weights()
    return self.process.set_model_weights(self.process.initialize(), weights)

  def client_datasets(self, round_num: int) -> list:
    """What each client of `round_num` trains on, in the order of `clients_for_round`."""
    c = self.config
    return [
      self.train_data.train_dataset(
        cid,
        round_num=round_num,
        seed=c.seed,
        batch_size=c.client_batch_size,
        epochs=c.client_epochs_per_round,
        max_elements=c.max_elements_per_client,
      )
      for cid in self.clients_for_round(round_num)
    ]

  def train_round(self, state, round_num: int):
    c = self.config
    client_ids = self.clients_for_round(round_num)
    client_datasets = runtime.largest_first(self.client_datasets(round_num))
    start = time.perf_counter()
    result = self.process.next(state, client_datasets)
    seconds = time.perf_counter() - start
    train = result.metrics["client_work"]["train"]
    metrics = metrics_lib.as_row("train", train)
    round_bytes = len(client_ids) * sum(self.bytes_per_client.values())
    metrics.update(
      clients=len(client_ids),
      train_sequences=int(np.asarray(train["num_examples"])),
      round_seconds=seconds,
      tokens_per_second=metrics["train_tokens"] / seconds,
      client_learning_rate=algorithms.client_learning_rate(c, round_num),
      **self.bytes_per_client,
      round_bytes=round_bytes,
      bytes_communicated=round_num * round_bytes,  # Every round has the same clients count.
    )
    if self.differentially_private:
      metrics["dp_epsilon"] = self.dp_epsilon(round_num)
    return result.state, metrics

  def evaluate(self, model_weights, client_ids: list[str] | None = None) -> dict:
    """Federated evaluation of `model_weights` on the clients' held-out data."""
    client_ids = self.eval_client_ids if client_ids is None else client_ids
    eval_state = self.eval_process.set_model_weights(self.eval_process.initialize(), model_weights)
    client_datasets = runtime.largest_first(
      [self.test_data.eval_dataset(cid, batch_size=self.config.eval_batch_size) for cid in client_ids]
    )
    start = time.perf_counter()
    output = self.eval_process.next(eval_state, client_datasets)
    values = output.metrics["client_work"]["eval"]["current_round_metrics"]
    metrics = dict(metrics_lib.as_row("eval", values), eval_seconds=time.perf_counter() - start)
    # The same total loss per character of the held-out text: comparable across tokenizers.
    characters = sum(preprocessing.num_characters(self.test_data.texts[cid]) for cid in client_ids)
    metrics["eval_loss_per_char"] = metrics["eval_loss"] * metrics["eval_tokens"] / max(characters, 1)
    return metrics

  def unigram_perplexity(self) -> float:
    """Test perplexity of token frequencies alone, on the evaluation clients."""
    train = [self.train_data.sequences(cid)["labels"] for cid in self.train_data.client_ids]
    test = [self.test_data.sequences(cid)["labels"] for cid in self.eval_client_ids]
    return preprocessing.unigram_perplexity(train, test, self.tokenizer.vocabulary_size)

  def run(self, *, progress: bool = True) -> dict:
    """Trains for `total_rounds`, resuming after the last readable checkpoint if there is one.

    Returns:
      The run summary (also written to `results/<name>/summary.json`), with
      the final model weights under "model_weights".

    Raises:
      outputs.RunInUseError: Another process is running this experiment.
    """
    with outputs.run_lock(self.dirs.create_all()):
      outputs.remove_partial_writes(self.dirs)
      return self._run(progress=progress)

  def _run(self, *, progress: bool) -> dict:
    c = self.config
    dirs = self.dirs.create_all()
    divergence.clear(dirs.results)  # Going again: a divergence recorded before no longer holds.
    outputs.write_json(dirs.run_config, self.run_config())
    outputs.write_hparams(dirs, c.to_dict())
    state_manager, metrics_managers, clients_manager = outputs.create_managers(dirs)
    loop = outputs.OutputLoop()
    try:
      state, version = None, 0
      if loop.run(state_manager.get_versions()):
        self.check_frozen_weights()  # `initialize()` reads them in subset modes: only once they exist.
        state, version = loop.run(outputs.load_latest_readable(state_manager, self.process.initialize()))
      if version == 0:
        state = self.initial_state()
      replaced = saved = version  # Last worker replacement (runtime.REPLACE_WORKER_ROUNDS), last checkpoint.
      last_metrics = {}
      bar = tqdm.tqdm(
        total=c.total_rounds,
        initial=min(version, c.total_rounds),
        unit="round",
        disable=not progress,
        dynamic_ncols=True,
      )
      if version > 0 and progress:
        tqdm.tqdm.write(f"Resuming {c.experiment_name} after round {version} ({dirs.checkpoints}).")
      with bar:
        for round_num in range(version + 1, c.total_rounds + 1):
          state, metrics = self.train_round(state, round_num)
          diverged = divergence.diagnose(metrics, state.global_model_weights)
          if (round_num % c.rounds_per_eval == 0 or round_num == c.total_rounds) and not diverged:
            metrics.update(self.evaluate(self.process.get_model_weights(state)))
            diverged = divergence.diagnose(metrics)
          metrics["memory_mb"] = memory.process_tree_rss_mb()
          loop.run(_release(metrics_managers, metrics, round_num))
          clients = {"client_ids": " ".join(self.clients_for_round(round_num))}
          loop.run(clients_manager.release(clients, key=round_num))
          if diverged:
            raise divergence.stop(
              c,
              round_num,
              diverged,
              (last_metrics, metrics),
              last_checkpoint=saved,
              about=self.settings_summary(),
            )
          if round_num % c.rounds_per_checkpoint == 0 or round_num == c.total_rounds:
            loop.run(state_manager.save(state, round_num))
            saved = round_num
            if round_num - replaced >= runtime.REPLACE_WORKER_ROUNDS and runtime.replace_local_worker():
              replaced = round_num
          bar.update(1)
          bar.set_postfix(
            loss=f"{metrics['train_loss']:.3f}",
            acc=f"{metrics['train_accuracy']:.3f}",
            s_per_round=f"{metrics['round_seconds']:.2f}",
            tok_per_s=f"{metrics['tokens_per_second']:.0f}",
          )
          if "eval_loss" in metrics and progress:
            tqdm.tqdm.write(
              f"round {round_num:>4}: train loss {metrics['train_loss']:.3f} acc "
              f"{metrics['train_accuracy']:.3f} | eval loss {metrics['eval_loss']:.3f} ppl "
              f"{metrics['eval_perplexity']:.2f} acc {metrics['eval_accuracy']:.3f} | "
              f"{metrics['round_seconds']:.2f} s/round, {metrics['tokens_per_second']:.0f} tok/s, "
              f"{metrics['memory_mb']:.0f} MB"
            )
          last_metrics = metrics
    finally:
      loop.close()
    weights = self.process.get_model_weights(state)
    final = {k: v for k, v in last_metrics.items() if k.startswith("eval_")}
    if not final:  # Nothing ran: the run had finished before.
      final = self.evaluate(weights)
    rows = outputs.read_metrics(dirs)
    summary = dict(
      final,
      **self.settings_summary(),
      bytes_communicated=c.total_rounds * self.clients_per_round * sum(self.bytes_per_client.values()),
      train_seconds=outputs.seconds_spent(rows),
      unigram_perplexity=self.unigram_perplexity(),
      memory_estimate_mb=round(self.memory_estimate.total_mb),
      memory_peak_mb=round(max((float(r["memory_mb"]) for r in rows if r.get("memory_mb")), default=0.0)),
      eval_clients=len(self.eval_client_ids),
      checkpoints=dirs.checkpoints,
      metrics_csv=dirs.metrics_csv,
      logdir=dirs.logdir,
    )
    if self.differentially_private:
      summary.update(dp_epsilon=self.dp_epsilon(c.total_rounds), dp_delta=c.dp_delta)
    if c.export and c.model == "gpt2":
      summary["export"] = export.export_run(self, weights, c.total_rounds)
    outputs.write_json(dirs.summary, summary)
    return dict(summary, model_weights=weights)

  def settings_summary(self) -> dict:
    """The settings a summary (and a divergence record) names the run by."""
    c = self.config
    return dict(
      rounds=c.total_rounds,
      algorithm=c.algorithm,
      aggregator=c.aggregator,
      model=c.model,
      tokenizer=c.tokenizer,
      client_weighting=algorithms.client_weighting(c),
      client_learning_rate=c.client_learning_rate,
      server_learning_rate=algorithms.server_learning_rate(c),
      partition=self.corpus.summary.get("partition", "natural clients"),
      partition_settings=self.corpus.summary.get("partition_settings"),
      heterogeneity=self.corpus.summary.get("heterogeneity"),
    )

  def latest_state(self):
    """`(state, round_num)` of the run's latest checkpoint."""
    state_manager = tff.program.FileProgramStateManager(self.dirs.checkpoints)
    if not asyncio.run(state_manager.get_versions()):
      raise FileNotFoundError(f"{self.dirs.checkpoints} has no checkpoint yet.")
    self.check_frozen_weights()
    return asyncio.run(
      outputs.load_latest_readable(state_manager, self.process.initialize(), set_aside=False)
    )

  def _check_resume(self) -> None:
    """Fails early when the output directory holds a run with other settings."""
    dirs = self.dirs
    if not os.path.exists(dirs.run_config):
      return
    changed = self.config.resume_changes(outputs.read_json(dirs.run_config)["experiment"])
    if changed:
      details = ", ".join(changed)
      raise ResumeError(
        f"{dirs.checkpoints} holds a run with other settings ({details}). Use a new "
        "--experiment_name, or the same flags to resume it."
      )
