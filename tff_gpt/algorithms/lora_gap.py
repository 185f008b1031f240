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

FlexLoRA (flexlora) uses `M` itself: after each round the server's factors
become its truncated SVD at the server's rank (`svd_factors`), and the gap is
what that truncation leaves out.
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

KINDS = ("lora", "ffa_lora", "hetlora", "flexlora")
RANKED = ("hetlora", "flexlora")


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
    if kind in RANKED:

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


def mean_products(kind: str, before: list, measurements, frozen_a: list | None = None) -> list[np.ndarray]:
  """`M` of each adapter (module docstring): the clients' weighted mean product `A_k B_k` of the round.

  Args:
    kind: One of `KINDS`.
    before: The trained variables' values before the round (the global factors the clients started from).
    measurements: The aggregator's measurements (`lora_mean_delta`; `lora_delta_products` unless
      ffa_lora; `lora_rank_share` for hetlora and flexlora).
    frozen_a: With ffa_lora, each adapter's `A` (frozen, not in TFF's state).
  """
  # TFF's client update is initial minus trained weights (the server applies it as a gradient).
  mean_delta = [-np.asarray(d, np.float64) for d in measurements["lora_mean_delta"]]
  before = [np.asarray(w, np.float64) for w in before]
  if kind == "ffa_lora":
    return [
      np.asarray(a, np.float64) @ (b + db) for a, b, db in zip(frozen_a, before, mean_delta, strict=True)
    ]
  products = [np.asarray(p, np.float64) for p in measurements["lora_delta_products"]]
  shares = measurements["lora_rank_share"] if kind in RANKED else None
  means = []
  for i in range(0, len(before), 2):
    a, b, da, db = before[i], before[i + 1], mean_delta[i], mean_delta[i + 1]
    share = 1.0 if shares is None else np.asarray(shares[i // 2], np.float64)[:, None]
    means.append(a @ (share * b) + a @ db + da @ b + products[i // 2])  # A D B: each client's own components.
  return means


def svd_factors(means: list[np.ndarray], rank: int) -> list[np.ndarray]:
  """FlexLoRA's server factors: per adapter `A' = U_R S_R^1/2`, `B' = S_R^1/2 V_R^T` of `M = U S V^T`,
  strongest direction first (a client of rank r keeps the first r), as float32 `[A', B', ...]`."""
  factors = []
  for m in means:
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    root = np.sqrt(s[:rank])
    factors += [(u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)]
  return factors


def gap(kind: str, after: list, means: list[np.ndarray], frozen_a: list | None = None) -> float:
  """The round's relative gap `||A' B' - M|| / ||M||` over all adapters (module docstring).

  Args:
    kind: One of `KINDS`.
    after: The trained variables' values after the round (the server's factors).
    means: `mean_products` of the round.
    frozen_a: With ffa_lora, each adapter's `A`.
  """
  after = [np.asarray(w, np.float64) for w in after]
  if kind == "ffa_lora":
    aggregates = [np.asarray(a, np.float64) @ b for a, b in zip(frozen_a, after, strict=True)]
  else:
    aggregates = [after[i] @ after[i + 1] for i in range(0, len(after), 2)]
  gap_sq = sum(float(np.sum((x - m) ** 2)) for x, m in zip(aggregates, means, strict=True))
  mean_sq = sum(float(np.sum(m**2)) for m in means)
  return float(np.sqrt(gap_sq / mean_sq)) if mean_sq > 0 else 0.0
