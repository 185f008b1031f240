"""tff_gpt: federated training of GPT-2 language models with TensorFlow Federated."""

__version__ = "0.1.0"
