"""The model settings of a run: which model, its shape or pretrained start, and which weights train."""

import dataclasses

from tff_gpt.models import client_ranks, gpt2_lm, parameter_groups, registry
from tff_gpt.models import trainable as trainable_lib
from tff_gpt.settings import POSITIVE, Check, check_declared, require, setting


@dataclasses.dataclass
class ModelSettings:
  """The model (`tff_model.build_model_fn`) and its trained subset (`trainable`)."""

  model: str = setting(
    "gpt2",
    "; ".join(f"{k}: {v.description}" for k, v in registry.MODELS.items()) + ".",
    choices=tuple(registry.MODELS),
  )
  model_size: str = setting(
    gpt2_lm.DEFAULT_SIZE,
    "GPT-2 shape: tiny (2x16h2, for tests), gpt2_124m (GPT-2 small as published), or LxD[hH][dP] (L layers "
    "of width D, H heads (default D/32), feed-forward 4D, dropout P in client training (default 0)), for "
    "example 2x128 (the default, 0.4M parameters), 4x128 or 2x128h2d0.1. 'small' still means 2x128.",
  )
  embedding_init_stddev: float | None = setting(
    None,
    "Draw a fresh GPT-2's token and position embeddings from N(0, this^2); unset: 0.05, which learns far "
    "faster at small widths than keras-nlp's own 0.01 and 0.02 (sized for width 768); 0: keras-nlp's.",
    check=Check(lambda v: v >= 0, "must be >= 0 (0: keras-nlp's own draws)"),
  )
  attention_init_stddev: float | None = setting(
    None,
    "Draw a fresh GPT-2's attention query and key kernels from N(0, this^2); unset: keras-nlp's 0.02. About "
    "1/sqrt(width) (0.09 at width 128) leaves the bigram plateau earlier.",
    check=Check(lambda v: v > 0, "must be > 0 (unset: keras-nlp's)"),
  )
  preset: str | None = setting(
    None,
    "Pretrained weights to start from. GPT-2: a keras-nlp or keras-hub preset directory, or a Hugging Face "
    "GPT-2 directory (config.json, model.safetensors or pytorch_model.bin, vocab.json, merges.txt); it "
    "brings its BPE tokenizer (--tokenizer=bpe is implied); a keras-nlp hub name needs network. "
    "--model=char_lstm: the directory experiments/pretrain.py --model=char_lstm writes.",
  )
  trainable: str = setting(
    "all",
    "Weights that train, travel and are aggregated: all; last_blocks:K (the last K blocks and the final "
    "norm); lora:R (rank-R adapters on attention query and value); ffa_lora:R (the same, A frozen at its "
    "seeded draw: only B trains and travels, and its mean is exact); hetlora:R (rank-R adapters, each "
    "client training the first r components of its rank from --lora_client_ranks; zero-padded mean); "
    "flexlora:R (the same ranks; the server splits the clients' mean product by SVD each round); "
    "bitfit (biases and layer norms). Other weights stay frozen on local disk, out of TFF's state.",
  )
  lora_client_ranks: str | None = setting(
    None,
    "With --trainable=hetlora:R or flexlora:R: the ranks clients train, each drawn once per client by the "
    "seed: 2,4,8 (equally likely) or 2:0.5,4:0.3,8:0.2 (weights); or @FILE, a JSON object {client id: rank} "
    "(every training client); each at most R. Unset: every client at R.",
  )
  lora_alpha: float = setting(
    trainable_lib.DEFAULT_LORA_ALPHA,
    "LoRA scale numerator: adapters are scaled by lora_alpha / R.",
    check=Check(POSITIVE.accepts, "must be > 0 (adapters are scaled by lora_alpha / R)"),
  )

  def __post_init__(self):
    self.model_size = gpt2_lm.canonical_size(self.model_size)

  def check_model(self) -> None:
    """Raises `ConfigError` naming the first model setting that is out of range or inconsistent."""
    check_declared(self, ModelSettings)
    try:
      size = gpt2_lm.size_config(self.model_size)
    except ValueError:
      size = None
    require(size is not None, "model_size", f"must be {gpt2_lm.SIZE_HELP}")
    gpt2 = registry.MODELS[self.model].is_gpt2
    if not gpt2:
      require(self.trainable == "all", "trainable", f"must be 'all' with --model={self.model}")
    for name in ("embedding_init_stddev", "attention_init_stddev"):
      if getattr(self, name) is not None:
        require(
          gpt2 and not self.preset,
          name,
          "applies to a GPT-2 trained from scratch only (not with --model=char_lstm or --preset)",
        )
    # A preset's depth is known once its config is read (the task checks K against it).
    mode = trainable_lib.parse(self.trainable, num_layers=None if self.preset else size["num_layers"])
    if self.lora_client_ranks:
      require(
        mode.kind in trainable_lib.RANKED_KINDS,
        "lora_client_ranks",
        "applies to --trainable=hetlora:R or flexlora:R only",
      )
      client_ranks.parse(self.lora_client_ranks, mode.value)

  def client_ranks(self) -> client_ranks.ClientRanks | None:
    """The clients' adapter ranks with hetlora:R or flexlora:R (`client_ranks.py`); None otherwise."""
    mode = trainable_lib.parse(self.trainable)
    if mode.kind not in trainable_lib.RANKED_KINDS:
      return None
    return client_ranks.parse(self.lora_client_ranks, mode.value)

  @property
  def initial_draws(self) -> dict:
    """`tff_model.initial_weights`' arguments for the weights it draws anew (None: keras-nlp's draws).

    Unset, a GPT-2 trained from scratch gets `gpt2_lm.DEFAULT_EMBEDDING_INIT_STDDEV` for its embeddings;
    0 asks for keras-nlp's own initializers; a preset or the LSTM has nothing to draw.
    """
    embedding = None
    if registry.MODELS[self.model].is_gpt2 and not self.preset:
      embedding = self.embedding_init_stddev
      embedding = gpt2_lm.DEFAULT_EMBEDDING_INIT_STDDEV if embedding is None else embedding or None
    return dict(embedding_init_stddev=embedding, attention_init_stddev=self.attention_init_stddev)

  def check_lr_multipliers(self, multipliers: str | None) -> None:
    """`--client_lr_multipliers` names GPT-2's parameter groups: refused for the LSTM."""
    if parameter_groups.parse(multipliers):
      require(
        registry.MODELS[self.model].is_gpt2,
        "client_lr_multipliers",
        f"names GPT-2's parameter groups; --model={self.model} has none",
      )
