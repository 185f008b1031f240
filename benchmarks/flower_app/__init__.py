"""The Flower side of the side-by-side benchmark (`benchmarks/peers.py`), run in `.venv-peers`.

A Flower app (`app.py`: a `ClientApp` and a `ServerApp` with FedAvg) that
trains the project's GPT-2 in PyTorch (`transformers.GPT2LMHeadModel`, PEFT
for LoRA) on the batches `benchmarks/peers.py` wrote from a tff_gpt run: the
same initial weights, the same clients each round, the same batches in the
same order, the same optimizer and rate. `lm.py` holds the PyTorch model,
the client step and the held-out loss; `run.py` starts Flower's simulation
engine (Ray) and writes what it measured. Nothing here imports TensorFlow or
tff_gpt: the two environments share files only.
"""
