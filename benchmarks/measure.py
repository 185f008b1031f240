"""What the benchmarks share: the Shakespeare task they time, timers, peak memory and the central baselines.

Importing it sizes the process for the host (`runtime.host.configure`) before
TensorFlow runs anything, so that central loops here and TFF's worker get the
same thread pools.
"""

import os
import statistics
import threading
import time

from tff_gpt import runtime
from tff_gpt.runtime import host

host.configure()
THREADS = {k: os.environ.get(k) for k in (host.INTRA_OP, host.INTER_OP)}

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_federated as tff  # noqa: E402

from tff_gpt import algorithms  # noqa: E402
from tff_gpt.central import step as central_step  # noqa: E402
from tff_gpt.data import datasets, preprocessing, tokenizers  # noqa: E402
from tff_gpt.models import gpt2_lm, metrics, tff_model  # noqa: E402
from tff_gpt.training import memory  # noqa: E402

LOOPS = {
  "dataset_reduce": tff.learning.LoopImplementation.DATASET_REDUCE,
  "dataset_iterator": tff.learning.LoopImplementation.DATASET_ITERATOR,
}


class PeakMemory:
  """Samples the process tree's resident memory every 20 ms while active."""

  def __enter__(self):
    self.peak = memory.process_tree_rss_mb()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def _sample(self):
    while not self._stop.wait(0.02):
      self.peak = max(self.peak, memory.process_tree_rss_mb())

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def timed(fn, repeats: int) -> float:
  """Median seconds of `repeats` calls (after the caller's warm-up)."""
  return interleaved({"fn": fn}, repeats)["fn"]


class Task:
  """Shakespeare clients, tokenized, and a model size: the data every section shares."""

  def __init__(self, model_size: str, *, sequence_length=80, batch_size=8, max_elements=64, seed=0):
    corpus = datasets.load_corpus("shakespeare")
    self.tokenizer = tokenizers.CharTokenizer()
    self.data = preprocessing.TokenizedClients(
      corpus.texts("train"), self.tokenizer, sequence_length=sequence_length
    )
    self.sample = tff.simulation.build_uniform_sampling_fn(
      self.data.client_ids, replace=False, random_seed=seed
    )
    self.batch_size, self.max_elements, self.seed = batch_size, max_elements, seed
    self.sequence_length = sequence_length
    self.model_config = gpt2_lm.model_config(
      model_size, vocabulary_size=self.tokenizer.vocabulary_size, max_sequence_length=sequence_length
    )
    self.model_fn = tff_model.build_model_fn(self.model_config, sequence_length=sequence_length)
    self.client_model_fn = tff_model.client_model_fn(self.model_fn)  # As the project's rounds build it.
    self._processes = {}

  def client_datasets(self, n: int, round_num: int = 1, max_elements=-1):
    max_elements = self.max_elements if max_elements == -1 else max_elements
    return runtime.largest_first(  # As the project's rounds order them.
      [
        self.data.train_dataset(
          cid, round_num=round_num, seed=self.seed, batch_size=self.batch_size, max_elements=max_elements
        )
        for cid in self.sample(round_num, n)
      ]
    )

  def params(self) -> int:
    return gpt2_lm.build_gpt2_lm(self.model_config).count_params()

  def process(self, loop="dataset_iterator", *, draws_initial_values=False):
    """Weighted FedAvg (client Adam 3e-3, server SGD 1.0), built once per loop implementation.

    As the project builds it (`client_model_fn`), unless `draws_initial_values`:
    then TFF's process of the plain `model_fn`, whose clients draw the initial
    values that the server's weights overwrite.
    """
    key = (loop, draws_initial_values)
    if key not in self._processes:
      process = tff.learning.algorithms.build_weighted_fed_avg(
        self.model_fn if draws_initial_values else self.client_model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_adam(3e-3),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0),
        loop_implementation=LOOPS[loop],
      )
      self._processes[key] = (
        process if draws_initial_values else algorithms.registry.initialized_with(process, self.model_fn)
      )
    return self._processes[key]


def count_tokens(client_datasets) -> int:
  return int(
    sum(int(np.sum(y.numpy() != preprocessing.IGNORE_LABEL)) for ds in client_datasets for _, y in ds)
  )


def matmul_flops(n: int = 512, repeats: int = 5) -> float:
  """FLOP/s of an n x n float32 matmul in this process (same thread settings as the worker)."""
  a, b = tf.random.normal([n, n]), tf.random.normal([n, n])

  @tf.function
  def matmul():
    return tf.reduce_sum(tf.matmul(a, b))

  def run():
    matmul().numpy()

  run()
  return 2 * n**3 / timed(run, repeats)


def _concatenated(client_datasets) -> tf.data.Dataset:
  batches = client_datasets[0]
  for ds in client_datasets[1:]:
    batches = batches.concatenate(ds)
  return batches


def central_seconds(task: Task, client_datasets, repeats: int) -> float:
  """Keras `fit` (Adam, the same loss) over exactly the clients' batches, one after another."""
  model = gpt2_lm.build_gpt2_lm(task.model_config)
  model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss=metrics.lm_loss())
  batches = _concatenated(client_datasets)
  model.fit(batches, epochs=1, verbose=0)  # Warm-up: tracing.
  return timed(lambda: model.fit(batches, epochs=1, verbose=0), repeats)


def compiled_central_fns(task: Task, client_datasets) -> dict:
  """The fastest central training of the same batches: a compiled train step (Adam, the same loss).

  Two ways, both returned traced and ready to time: a Python loop calling a
  `tf.function` step per batch, and one `tf.function` looping over the whole
  dataset with a `tf.while_loop` over its iterator (as TFF's DATASET_ITERATOR
  client loop does). Keras `fit` adds callbacks and per-step bookkeeping on
  top of these.
  """
  model = gpt2_lm.build_gpt2_lm(task.model_config)
  optimizer = tf.keras.optimizers.Adam(3e-3)
  batches = _concatenated(client_datasets)
  variables = model.trainable_variables
  train_step = central_step.train_step(model, variables, central_step.keras_update(optimizer, variables))

  step = tf.function(train_step)

  def step_loop():
    for x, y in batches:
      loss = step(x, y)
    loss.numpy()

  @tf.function
  def dataset_loop():
    # `iter(...)` as in TFF's loop: autograph turns a bare `for x in dataset` into a tf.data reduce,
    # which runs every step on tf.data's own threads (TFF's DATASET_REDUCE; about half the speed here).
    loss = tf.constant(0.0)
    for x, y in iter(batches):
      loss = train_step(x, y)
    return loss

  fns = {"compiled_step_loop": step_loop, "compiled_dataset_loop": lambda: dataset_loop().numpy()}
  for fn in fns.values():
    fn()  # Warm-up: tracing.
  return fns


def compiled_central_seconds(task: Task, client_datasets, repeats: int) -> dict:
  """Median seconds of each of `compiled_central_fns`."""
  return {name: timed(fn, repeats) for name, fn in compiled_central_fns(task, client_datasets).items()}


def interleaved(fns: dict, repeats: int) -> dict:
  """Median seconds of each of `fns`, called in turn `repeats` times (machine speed drifts hit all alike)."""
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}
