"""Central (not federated) training of the project's models.

- `pretraining`: pretrains GPT-2 or the LSTM on a corpus and writes a preset a federated run starts from.
- `replay`: a federated run's own batches trained centrally, the baseline federation is measured against.
- `step`: the one compiled training step both use, with a `tff.learning` optimizer.
"""
