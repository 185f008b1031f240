"""Federated training: configuration, the round loop, outputs."""
