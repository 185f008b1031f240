"""Makes GPT-2-format BPE files (`vocab.json`, `merges.txt`) from a corpus.

For runs without a pretrained GPT-2 tokenizer: Hugging Face `tokenizers`
learns a byte-level BPE (Sennrich et al. 2016; GPT-2's variant, Radford et
al. 2019) and writes the two files that `tokenizers.load_bpe` and
`keras_nlp.models.GPT2Tokenizer` read.

Privacy note: a vocabulary learned from the clients' training text is
computed centrally and can reveal rare strings of single clients. Learn it
from public text, or treat it as part of what the simulation leaks.
"""

import os
from collections.abc import Iterable

END_OF_TEXT = "<|endoftext|>"


def train_bpe(
  texts: Iterable[str], output_dir: str, *, vocab_size: int = 8000, min_frequency: int = 2
) -> tuple[str, str]:
  """Learns a byte-level BPE from `texts` and writes `vocab.json` and `merges.txt`.

  Args:
    texts: Training text, one document at a time.
    output_dir: Where the two files go; created if missing.
    vocab_size: Tokens in the vocabulary, the 256 byte symbols and
      `<|endoftext|>` included; at least 257.
    min_frequency: Pairs seen fewer times are not merged.

  Returns:
    `(vocab_file, merges_file)`.
  """
  from tokenizers import ByteLevelBPETokenizer  # Only this command needs it.

  if vocab_size < 257:
    raise ValueError(f"vocab_size must be >= 257 (256 bytes and {END_OF_TEXT}), got {vocab_size}.")
  tokenizer = ByteLevelBPETokenizer(add_prefix_space=False)
  tokenizer.train_from_iterator(
    texts, vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[END_OF_TEXT]
  )
  os.makedirs(output_dir, exist_ok=True)
  vocab_file, merges_file = tokenizer.save_model(output_dir)
  return vocab_file, merges_file
