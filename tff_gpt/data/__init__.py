"""Federated text corpora, tokenizers and client preprocessing."""
