"""What a run scores beyond the loss: classes (`label_scoring`) and generated responses (`response_scoring`).

A settings group of `config.ExperimentConfig` (`tff_gpt.settings`); its checks
read the corpus and model settings of the same config.
"""

import dataclasses

from tff_gpt.models import registry as models_registry
from tff_gpt.settings import AT_LEAST_0, AT_LEAST_1, check_declared, require, setting


@dataclasses.dataclass
class TaskSettings:
  """Classification (`--classes`, `--classify_with`) and summarization (`--rouge_pairs`) scoring."""

  classes: str | None = setting(
    None,
    "Comma-separated class words of a classification in generative form (--examples=pairs, each response "
    "one of them): every evaluation also picks each held-out prompt's likeliest class (eval_label_accuracy, "
    "eval_macro_f1; per client in summary.json).",
    resume=False,
  )
  classify_with: str = setting(
    "words",
    "How --classes are predicted: 'words', the likeliest class word as the response (the language model); "
    "'head', a classifier head on the text's last token, as transformers' GPT2ForSequenceClassification.",
    choices=("words", "head"),
  )
  rouge_pairs: int = setting(
    0,
    "Summarization: every evaluation decodes (greedy) the response to each evaluation client's first N "
    "held-out pairs and scores it against the held-out one with ROUGE-1/2/L (eval_rouge1, eval_rouge2, "
    "eval_rougeL; per client in summary.json). 0: off.",
    resume=False,
    check=AT_LEAST_0,
  )
  rouge_max_tokens: int = setting(
    32, "Most tokens a response decoded for --rouge_pairs has.", resume=False, check=AT_LEAST_1
  )

  def check_task(self) -> None:
    check_declared(self, TaskSettings)
    classes = self.class_words()
    require(
      self.classes is None or (len(classes) >= 2 and len(set(classes)) == len(classes)),
      "classes",
      "needs two or more different words, comma-separated",
    )
    require(
      self.classes is None or self.examples == "pairs", "classes", "scores responses: add --examples=pairs"
    )
    require(
      self.rouge_pairs == 0 or self.examples == "pairs",
      "rouge_pairs",
      "scores responses: add --examples=pairs",
    )
    require(
      self.rouge_pairs == 0 or models_registry.MODELS[self.model].is_gpt2,
      "rouge_pairs",
      "decodes with GPT-2: use --model=gpt2",
    )
    require(
      self.rouge_pairs == 0 or self.rouge_max_tokens < self.sequence_length - 1,
      "rouge_max_tokens",
      f"must leave a prompt room in --sequence_length={self.sequence_length}: lower it or raise that",
    )
    require(
      self.classify_with == "words" or self.classes is not None, "classify_with", "head needs --classes"
    )
    require(
      self.classify_with == "words" or models_registry.MODELS[self.model].is_gpt2,
      "classify_with",
      "head is a GPT-2 head: use --model=gpt2",
    )
    require(
      self.classify_with == "words" or not self.trainable.startswith(("hetlora", "flexlora")),
      "classify_with",
      f"head trains beside adapters of one rank: use --trainable=lora:R, not {self.trainable}",
    )

  def class_words(self) -> list[str]:
    """The words of `--classes`, in order (none when unset)."""
    return [c.strip() for c in (self.classes or "").split(",") if c.strip()]
