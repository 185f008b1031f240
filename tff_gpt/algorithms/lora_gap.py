"""LoRA's exactness gap: how far the aggregate of the factors is from the mean of the clients' products.

Averaging the two factors separately is not averaging the clients' updates:
`mean(A_k) mean(B_k)` differs from `mean(A_k B_k)`. Each round, with the
clients' deltas `dA_k = A_k - A`, `dB_k = B_k - B` from the round's global `A`, `B`
(TFF's client update is their negative; the products are the same),

  M = mean_k(A_k B_k) = AB + A mean(dB) + mean(dA) B + mean(dA_k dB_k)

(means weighted as the aggregator weights clients) and the gap is
`||A' B' - M||_F / ||M||_F` over all adapters, `A'`, `B'` the server's factors
after the round. `measured(inner)` wraps a model aggregator with
`tff.aggregators.add_measurements`: each client also reports `dA_k dB_k` per
adapter, averaged beside the plain mean of the deltas. With FFA-LoRA, `A`
never moves (`dA = 0`), so `M = A (B + mean dB)`, which FedAvg's aggregate is
exactly; server optimizers other than plain SGD at rate 1 move away from it.
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

KINDS = ("lora", "ffa_lora")


def measured(inner, kind: str, weighted: bool):
  """`inner` (a model-update aggregator factory) reporting what `gap` needs, for `--trainable` `kind`.

  The deltas are the trained variables in order: per adapter `lora_a, lora_b`
  (lora) or `lora_b` alone (ffa_lora).
  """
  if kind not in KINDS:
    raise ValueError(f"The LoRA gap is for {KINDS}, not {kind!r}.")

  def client_measurement_fn(value, weight=None):
    reported = collections.OrderedDict(lora_mean_delta=value)
    if kind == "lora":

      @tff.tensorflow.computation
      def delta_products(delta):
        return [tf.matmul(delta[i], delta[i + 1]) for i in range(0, len(delta), 2)]

      reported["lora_delta_products"] = tff.federated_map(delta_products, value)
    reported = tff.federated_zip(reported)
    return tff.federated_mean(reported, weight) if weighted else tff.federated_mean(reported)

  if weighted:
    return tff.aggregators.add_measurements(inner, client_measurement_fn=client_measurement_fn)
  return tff.aggregators.add_measurements(
    inner, client_measurement_fn=lambda value: client_measurement_fn(value)
  )


def gap(kind: str, before: list, after: list, measurements, frozen_a: list | None = None) -> float:
  """The round's relative gap (module docstring) from the factors before and after and the measurements.

  Args:
    kind: "lora" or "ffa_lora".
    before, after: The trained variables' values before and after the round.
    measurements: The aggregator's measurements (`lora_mean_delta`, and
      `lora_delta_products` for lora).
    frozen_a: With ffa_lora, each adapter's `A` (frozen, not in TFF's state).
  """
  # TFF's client update is initial minus trained weights (the server applies it as a gradient).
  mean_delta = [-np.asarray(d, np.float64) for d in measurements["lora_mean_delta"]]
  before = [np.asarray(w, np.float64) for w in before]
  after = [np.asarray(w, np.float64) for w in after]
  if kind == "lora":
    products = [np.asarray(p, np.float64) for p in measurements["lora_delta_products"]]
    factors = [
      (before[i], before[i + 1], mean_delta[i], mean_delta[i + 1], products[i // 2], after[i], after[i + 1])
      for i in range(0, len(before), 2)
    ]
  else:
    a_values = [np.asarray(a, np.float64) for a in frozen_a]
    factors = [
      (a, b, np.zeros_like(a), db, 0.0, a, b_after)
      for a, b, db, b_after in zip(a_values, before, mean_delta, after, strict=True)
    ]
  gap_sq = mean_sq = 0.0
  for a, b, da, db, product, a_after, b_after in factors:
    mean_product = a @ b + a @ db + da @ b + product
    gap_sq += float(np.sum((a_after @ b_after - mean_product) ** 2))
    mean_sq += float(np.sum(mean_product**2))
  return float(np.sqrt(gap_sq / mean_sq)) if mean_sq > 0 else 0.0
