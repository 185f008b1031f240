"""Pretrains GPT-2 (or TFF's character LSTM) centrally on public text and saves it for federated fine-tuning.

  # Pretrain on Shakespeare's histories; write the other plays' speakers for the federated run.
  python -m experiments.pretrain --groups=henry-v,richard-iii,... --bpe_vocab_size=2000 \
      --preset_dir=runs/pretrained/histories --rest_jsonl=runs/pretrained/other_plays.jsonl
  python -m experiments.run_experiment --preset=runs/pretrained/histories \
      --dataset=jsonl --dataset_path=runs/pretrained/other_plays.jsonl --trainable=lora:8

  # The LSTM on the same text (the character vocabulary; no BPE):
  python -m experiments.pretrain --model=char_lstm --groups=henry-v,richard-iii,... \
      --preset_dir=runs/pretrained/histories_lstm
  python -m experiments.run_experiment --model=char_lstm --preset=runs/pretrained/histories_lstm \
      --dataset=jsonl --dataset_path=runs/pretrained/other_plays.jsonl

The text is the training split of the corpus's clients (all of them, or those
of `--groups`). Without `--vocab_file`, a byte-level BPE of `--bpe_vocab_size`
tokens is learned from that same text (GPT-2 only). Interrupted, the same command resumes
after its last finished epoch. The logic lives in `tff_gpt.central.pretraining`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from experiments import flags_common  # noqa: E402
from tff_gpt.central import pretraining  # noqa: E402
from tff_gpt.data import bpe_training, client_groups, tokenizers  # noqa: E402
from tff_gpt.data.settings import CorpusSettings  # noqa: E402
from tff_gpt.models import char_lstm  # noqa: E402
from tff_gpt.runtime import host  # noqa: E402

# Shared with the other entry points (defined once when several are imported, as in tests).
flags_common.define_experiment_flags(
  CorpusSettings, names=("vocab_file", "merges_file", "seed", "model", "model_size", "sequence_length")
)
flags_common.define_settings_flags(pretraining.PretrainSettings)
flags.DEFINE_list(
  "groups",
  [],
  "Pretrain on the clients of these groups only (the part of a client id before ':', e.g. a Shakespeare "
  "play); empty = every client.",
)
flags.DEFINE_string(
  "rest_jsonl",
  "",
  "Also write the other groups' clients here as JSON Lines, for --dataset=jsonl in the federated run "
  "(same train/test split).",
)
flags.DEFINE_integer("bpe_vocab_size", 2000, "Without --vocab_file: tokens of the BPE learned from the text.")
FLAGS = flags.FLAGS


def pretrain() -> dict:
  """Runs the pretraining the flags describe; returns what `pretraining.pretrain` reports."""
  shared = dict(model=FLAGS.model, model_size=FLAGS.model_size, sequence_length=FLAGS.sequence_length)
  config = pretraining.PretrainConfig(
    **flags_common.values_from_flags(pretraining.PretrainSettings), **shared, seed=FLAGS.seed
  )
  try:
    config.validate()
    if bool(FLAGS.vocab_file) != bool(FLAGS.merges_file):
      raise ValueError("--vocab_file and --merges_file go together (or neither, to learn a BPE).")
    if FLAGS.examples != "text":
      raise ValueError(
        f"pretraining reads text; --examples={FLAGS.examples} is for federated runs "
        "(experiments.run_experiment)."
      )
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  corpus = flags_common.load_corpus()
  train, test = corpus.texts("train"), corpus.texts("test")
  chosen = sorted(train)
  if FLAGS.groups:
    chosen, rest = client_groups.split_by_group(sorted(train), FLAGS.groups)
    if FLAGS.rest_jsonl:
      lines = client_groups.write_jsonl(corpus, rest, FLAGS.rest_jsonl)
      print(f"Wrote {len(rest)} other clients ({lines} examples) to {FLAGS.rest_jsonl}.")
  elif FLAGS.rest_jsonl:
    raise app.UsageError("--rest_jsonl needs --groups (the clients not pretrained on).")
  train = {cid: train[cid] for cid in chosen}
  test = {cid: test[cid] for cid in chosen if cid in test}
  if config.model == char_lstm.ARCHITECTURE:
    tokenizer = tokenizers.build_tokenizer("char")
  elif FLAGS.vocab_file:
    tokenizer = tokenizers.load_bpe(FLAGS.vocab_file, FLAGS.merges_file)
  else:
    texts = (text for examples in train.values() for text in examples)
    files = bpe_training.train_bpe(
      texts, os.path.join(config.work_dir, "bpe"), vocab_size=FLAGS.bpe_vocab_size
    )
    tokenizer = tokenizers.load_bpe(*files)
  model = "the LSTM" if config.model == char_lstm.ARCHITECTURE else f"GPT-2 ({config.model_size})"
  print(
    f"Pretraining {model} on {len(train)} clients of {corpus.name}, "
    f"{tokenizer.vocabulary_size} tokens, {config.epochs} epochs."
  )
  info = pretraining.pretrain(config, train, test, tokenizer)
  last = info["epochs"][-1]
  print(
    f"Wrote {config.preset_dir}: {info['steps']} steps in {info['seconds']:.0f} s, "
    f"train loss {last['train_loss']:.3f}, held-out loss {last['eval_loss']:.3f}."
  )
  return info


def main(argv):
  flags_common.check_main_args(argv)
  # Central training uses every core (TFF's clients get `cores // concurrent clients` each); the
  # environment's TF_NUM_INTRAOP_THREADS still wins.
  cores = None if os.environ.get(host.INTRA_OP) else len(os.sched_getaffinity(0))
  host.configure(intra_op_threads=cores, concurrent_calls=1)
  try:
    pretrain()
  except KeyboardInterrupt:
    print("Interrupted. Run the same command again to resume after the last finished epoch.", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
  flags_common.run(main)
