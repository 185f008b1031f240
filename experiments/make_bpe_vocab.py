"""Learns GPT-2-format BPE files from a corpus's training split.

  python -m experiments.make_bpe_vocab --dataset=shakespeare --vocab_size=2000 --output_dir=runs/bpe
  python -m experiments.run_experiment --tokenizer=bpe \
      --vocab_file=runs/bpe/vocab.json --merges_file=runs/bpe/merges.txt

See `tff_gpt.data.bpe_training` for the privacy caveat.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

from experiments import flags_common  # noqa: E402
from tff_gpt.data import bpe_training, tokenizers  # noqa: E402
from tff_gpt.data.settings import CorpusSettings  # noqa: E402

flags_common.define_experiment_flags(CorpusSettings)
flags.DEFINE_integer("vocab_size", 8000, "Tokens in the vocabulary, bytes and <|endoftext|> included.")
flags.DEFINE_integer("min_frequency", 2, "Pairs seen fewer times are not merged.")
flags.DEFINE_string("output_dir", "runs/bpe", "Where vocab.json and merges.txt are written.")
FLAGS = flags.FLAGS


def make_vocab() -> tuple[str, str]:
  """Learns the BPE files from the flags' corpus; returns their paths."""
  corpus = flags_common.load_corpus()
  texts = (text for examples in corpus.texts("train").values() for text in examples)
  files = bpe_training.train_bpe(
    texts, FLAGS.output_dir, vocab_size=FLAGS.vocab_size, min_frequency=FLAGS.min_frequency
  )
  tokenizer = tokenizers.load_bpe(*files)
  print(f"Wrote {files[0]} and {files[1]} ({tokenizer.vocabulary_size} tokens).")
  return files


def main(argv):
  flags_common.check_main_args(argv)
  make_vocab()


if __name__ == "__main__":
  flags_common.run(main)
