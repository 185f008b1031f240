"""GPT-2 language models for TFF: the Keras model, size presets, metrics, model_fn."""
