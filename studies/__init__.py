"""Accuracy studies: what federated training reaches against references (central replay, pretraining).

Speed, memory and scale live in `benchmarks/`; these scripts train to a result
and write it to `studies/results_*`.
"""
