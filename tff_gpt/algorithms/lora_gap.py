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

With heterogeneous ranks (hetlora) client k's product is `A_k P_k B_k`, `P_k`
keeping its first r_k components; as its deltas are zero beyond r_k,
`M = A D B + A mean(dB) + mean(dA) B + mean(dA_k dB_k)` with `D = mean_k(P_k)`,
the (weighted) share of clients that train each component. Each client
reports its `P_k` as the rows of its `dB_k` that moved (an untrained row
stays exactly zero).
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

KINDS = ("lora", "ffa_lora", "hetlora")


def measured(inner, kind: str, weighted: bool):
  """`inner` (a model-update aggregator factory) reporting what `gap` needs, for `--trainable` `kind`.

  The deltas are the trained variables in order: per adapter `lora_a, lora_b`
  (lora, hetlora) or `lora_b` alone (ffa_lora).
  """
  if kind not in KINDS:
    raise ValueError(f"The LoRA gap is for {KINDS}, not {kind!r}.")

  def client_measurement_fn(value, weight=None):
    reported = collections.OrderedDict(lora_mean_delta=value)
    if kind != "ffa_lora":

      @tff.tensorflow.computation
      def delta_products(delta):
        return [tf.matmul(delta[i], delta[i + 1]) for i in range(0, len(delta), 2)]

      reported["lora_delta_products"] = tff.federated_map(delta_products, value)
    if kind == "hetlora":

      @tff.tensorflow.computation
      def trained_components(delta):
        return [
          tf.cast(tf.reduce_any(tf.not_equal(delta[i], 0.0), axis=1), tf.float32)
          for i in range(1, len(delta), 2)
        ]

      reported["lora_rank_share"] = tff.federated_map(trained_components, value)
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
    kind: "lora", "ffa_lora" or "hetlora".
    before, after: The trained variables' values before and after the round.
    measurements: The aggregator's measurements (`lora_mean_delta`, and
      `lora_delta_products` for lora and hetlora, `lora_rank_share` for hetlora).
    frozen_a: With ffa_lora, each adapter's `A` (frozen, not in TFF's state).
  """
  # TFF's client update is initial minus trained weights (the server applies it as a gradient).
  mean_delta = [-np.asarray(d, np.float64) for d in measurements["lora_mean_delta"]]
  before = [np.asarray(w, np.float64) for w in before]
  after = [np.asarray(w, np.float64) for w in after]
  if kind != "ffa_lora":
    products = [np.asarray(p, np.float64) for p in measurements["lora_delta_products"]]
    shares = measurements.get("lora_rank_share") if kind == "hetlora" else None
    factors = []
    for i in range(0, len(before), 2):
      share = 1.0 if shares is None else np.asarray(shares[i // 2], np.float64)[:, None]
      base = before[i] @ (share * before[i + 1])  # A D B: each client's own components of the round's AB.
      factors.append(
        (base, before[i], before[i + 1], mean_delta[i], mean_delta[i + 1], products[i // 2])
        + (after[i], after[i + 1])
      )
  else:
    a_values = [np.asarray(a, np.float64) for a in frozen_a]
    factors = [
      (a @ b, a, b, np.zeros_like(a), db, 0.0, a, b_after)
      for a, b, db, b_after in zip(a_values, before, mean_delta, after, strict=True)
    ]
  gap_sq = mean_sq = 0.0
  for base, a, b, da, db, product, a_after, b_after in factors:
    mean_product = base + a @ db + da @ b + product
    gap_sq += float(np.sum((a_after @ b_after - mean_product) ** 2))
    mean_sq += float(np.sum(mean_product**2))
  return float(np.sqrt(gap_sq / mean_sq)) if mean_sq > 0 else 0.0
