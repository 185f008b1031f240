"""What a run plants and measures for a memorization audit (`data.canaries`, `tff_gpt.memorization`).

A settings group of `config.ExperimentConfig` (`tff_gpt.settings`).
"""

import dataclasses

from tff_gpt.settings import AT_LEAST_0, AT_LEAST_1, Check, check_declared, require, setting

_REPEATS = Check(
  lambda v: all(p.strip().isdigit() and int(p) >= 1 for p in v.split(",")),
  "must be comma-separated counts >= 1, e.g. 1,10,100",
)


@dataclasses.dataclass
class AuditSettings:
  """Canaries planted in training clients' text, and the membership attack run at the end."""

  canaries: int = setting(
    0,
    "Memorization audit: plant this many random secrets ('<--canary_prefix> 3 9 1 4 0 2') in "
    "--canary_clients training clients' text (never in evaluation clients), each repeated per "
    "--canary_repeats; the end of the run ranks each against the space of secrets (exposure, "
    "canaries.csv). 0: none.",
    check=AT_LEAST_0,
  )
  canary_repeats: str = setting(
    "1,10,100",
    "Times each canary is planted (in turn): in that many distinct examples of its client.",
    check=_REPEATS,
  )
  canary_clients: int = setting(
    1, "Training clients the canaries are planted in (in turn).", check=AT_LEAST_1
  )
  canary_digits: int = setting(
    6, "Digits of a canary's secret: 10^digits possible secrets.", check=AT_LEAST_1
  )
  canary_prefix: str = setting("my number is", "The text before every canary's digits.")
  membership_clients: int = setting(
    0,
    "Membership audit at the end: the final model's loss on this many clients it trained on and as many no "
    "round sampled, and a loss-threshold attack's AUC and TPR at 1% FPR. 0: off.",
    resume=False,
    check=AT_LEAST_0,
  )

  def check_audit(self) -> None:
    check_declared(self, AuditSettings)
    require(
      self.canaries == 0 or self.canary_prefix.strip() == self.canary_prefix != "",
      "canary_prefix",
      "must be text without leading or trailing spaces",
    )

  def repeat_counts(self) -> list[int]:
    return [int(p) for p in self.canary_repeats.split(",")]
