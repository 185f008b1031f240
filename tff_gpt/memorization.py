"""What a trained model remembers: canary exposure (Carlini et al. 2019) and client-level membership.

Exposure. A canary's log-perplexity is the summed cross-entropy of its text's
tokens after `[BOS]` (its owner and prefix are the same for every candidate,
so the ranking is the secret's). Its rank among the candidates of the space R (1:
the likeliest) gives exposure = log2|R| - log2 rank: log2|R| bits for a canary
the model ranks first, about 1 bit for one it knows nothing of. When R is at
most `exact_limit` secrets every candidate is scored (`exposure_exact`);
otherwise `candidates` secrets drawn from R are scored and a skew-normal
(scipy) is fitted to their log-perplexities, exposure = -log2 CDF(canary's)
(the paper's extrapolation, `exposure_extrapolated`).

Membership. The final model's mean loss per token on each client's training
text, for clients it trained on (members) and clients no round sampled
(non-members): a threshold attack that calls the clients of lowest loss
members has the ROC AUC and the true-positive rate at 1% false positives of
scikit-learn's `roc_curve` over those losses.
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tqdm

from tff_gpt.data import canaries as canaries_lib
from tff_gpt.data import preprocessing


def log_perplexities(
  model: tf.keras.Model, tokenizer, texts: Sequence[str], batch_size: int = 256
) -> np.ndarray:
  """Each text's summed cross-entropy (nats) over its tokens after `[BOS]`, unpacked (one row a text)."""
  ids = tokenizer.encode(list(texts))
  length = max(len(i) for i in ids) + 1
  out = []
  for start in range(0, len(ids), batch_size):
    rows = ids[start : start + batch_size]
    tokens = np.full((len(rows), length), tokenizer.pad_id, np.int32)
    labels = np.full((len(rows), length), preprocessing.IGNORE_LABEL, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for r, row in enumerate(rows):
      tokens[r, 0], tokens[r, 1 : len(row) + 1] = tokenizer.bos_id, row
      mask[r, : len(row) + 1] = 1
      labels[r, : len(row)] = row
    logits = model({"token_ids": tokens, "padding_mask": mask})
    losses = tf.keras.losses.sparse_categorical_crossentropy(np.maximum(labels, 0), logits, from_logits=True)
    out.append(np.sum(np.where(labels != preprocessing.IGNORE_LABEL, losses.numpy(), 0.0), axis=1))
  return np.concatenate(out)


def exposure_exact(score: float, all_scores: np.ndarray) -> float:
  """log2|R| - log2 rank of a canary of log-perplexity `score` among every secret's `all_scores` (R)."""
  rank = 1 + int(np.sum(all_scores < score))
  return float(np.log2(len(all_scores)) - np.log2(rank))


def exposure_extrapolated(score: float, sample_scores: np.ndarray) -> float:
  """-log2 of the skew-normal CDF (fitted to `sample_scores`, drawn from R) at the canary's `score`."""
  from scipy import stats

  params = stats.skewnorm.fit(sample_scores)
  return float(-stats.skewnorm.logcdf(score, *params) / np.log(2))


def exposures(
  model: tf.keras.Model,
  tokenizer,
  plan: canaries_lib.Plan,
  *,
  seed: int,
  exact_limit: int = 10**4,
  candidates: int = 4096,
  progress: bool = False,
) -> list[dict]:
  """One row per canary of `plan` (inserted and never inserted): its secret, owner, repeats, client,
  log-perplexity, exposure and how it was computed ("exact" or "skew-normal"). Each canary is ranked among
  the same secrets of R after its own owner and prefix."""
  space = 10**plan.digits
  scores = log_perplexities(model, tokenizer, [plan.text(c) for c in plan.canaries])
  if space <= exact_limit:
    numbers, method = np.arange(space), "exact"
  else:
    numbers, method = (
      np.random.default_rng([seed, canaries_lib.STREAM, 2]).choice(space, candidates),
      "skew-normal",
    )
  secrets = [canaries_lib.secret_of(int(n), plan.digits) for n in numbers]
  measure = exposure_exact if method == "exact" else exposure_extrapolated
  rows = []
  for c, s in tqdm.tqdm(
    zip(plan.canaries, scores, strict=True),
    total=len(scores),
    desc="canary exposure",
    unit="canary",
    leave=False,
    delay=3,
    disable=not progress,
    dynamic_ncols=True,
  ):
    reference = log_perplexities(model, tokenizer, [plan.text(c, secret) for secret in secrets])
    rows.append(
      dict(
        secret=c.secret,
        owner=c.owner,
        repeats=c.repeats,
        client=c.client or "",
        log_perplexity=float(s),
        exposure=measure(float(s), reference),
        method=method,
      )
    )
  return rows


def summarize_exposures(rows: list[dict]) -> dict:
  """Mean exposure by repeat count (0: never inserted), and with rows that carry `rounds_aggregated`,
  the mean number of rounds their clients were aggregated in. log2|R| is the most any canary can reach."""
  by_repeats = {}
  for r in rows:
    by_repeats.setdefault(r["repeats"], []).append(r)
  summary = {}
  for k, group in sorted(by_repeats.items()):
    summary[str(k)] = {
      "canaries": len(group),
      "mean_exposure": float(np.mean([r["exposure"] for r in group])),
    }
    if k and "rounds_aggregated" in group[0]:
      summary[str(k)]["mean_rounds_aggregated"] = float(np.mean([r["rounds_aggregated"] for r in group]))
  return summary


def membership(member_losses: Sequence[float], non_member_losses: Sequence[float]) -> dict:
  """The loss-threshold attack's ROC AUC and true-positive rate at 1% false positives (scikit-learn)."""
  from sklearn import metrics

  truth = np.r_[np.ones(len(member_losses)), np.zeros(len(non_member_losses))]
  score = -np.r_[member_losses, non_member_losses]  # Lower loss: more likely a member.
  fpr, tpr, _ = metrics.roc_curve(truth, score)
  return {
    "members": len(member_losses),
    "non_members": len(non_member_losses),
    "auc": float(metrics.roc_auc_score(truth, score)),
    "tpr_at_1pct_fpr": float(np.max(tpr[fpr <= 0.01])),
  }
