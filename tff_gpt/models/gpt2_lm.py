"""GPT-2 as a plain Keras language model that TFF can wrap.

`keras_nlp.models.GPT2CausalLM` compiles itself and `from_keras_model` wants an
uncompiled model, so the trained model is `GPT2Backbone` plus an LM head tied
to the token embedding (`token_embedding(h, reverse=True)`), as in GPT-2
(Radford et al. 2019). `GPT2CausalLM` is used for generation only.

Which weights train (`--trainable`) is `trainable.py`'s concern.
"""

import contextlib
import re

import keras_nlp
import tensorflow as tf

from tff_gpt import internals
from tff_gpt.models import seeded_dropout

# GPT2Backbone keyword arguments. `vocabulary_size` and `max_sequence_length`
# are filled from the tokenizer and the data.
MODEL_SIZES = {
  # For tests: runs a TFF round in well under a second.
  "tiny": dict(num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, dropout=0.0),
  # GPT-2 124M (Radford et al. 2019).
  "gpt2_124m": dict(num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072, dropout=0.1),
}


# Names that earlier runs used, kept so that their flags, flagfiles and run directories still work. "small"
# was the default 2x128 shape (0.4M parameters), not the published GPT-2 small (124M: `gpt2_124m`).
ALIASES = {"small": "2x128"}
# The default: 2 layers of width 128, 4 heads; trains on Shakespeare in minutes on 2 CPU cores.
DEFAULT_SIZE = "2x128"


def canonical_size(size: str) -> str:
  """The name a size is recorded under (an alias's shape spec; anything else as given)."""
  return ALIASES.get(size, size)


# The `GPT2Backbone` arguments a model config holds.
BACKBONE_KEYS = (
  "vocabulary_size",
  "num_layers",
  "num_heads",
  "hidden_dim",
  "intermediate_dim",
  "dropout",
  "max_sequence_length",
)


_SIZE_SPEC = re.compile(r"(\d+)x(\d+)(?:h(\d+))?(?:d(0?\.\d+))?")
SIZE_HELP = (
  f"one of {sorted(MODEL_SIZES)} ('small' is kept as another name for 2x128), or LxD[hH][dP]: L layers of "
  "width D (H heads, default D/32; feed-forward 4D; dropout P in training, default 0), for example 4x128 or "
  "2x128h2d0.1"
)


def size_config(size: str) -> dict:
  """The `GPT2Backbone` shape of a named size or an `LxD[hH][dP]` spec (`4x128`, `2x192h6`, `2x128h2d0.1`).

  P is keras-nlp's `dropout` (embeddings, attention and feed-forward outputs),
  applied in client training only; evaluation and generation run without it.

  Raises:
    ValueError: An unknown name, or a spec whose width the heads do not divide.
  """
  size = canonical_size(size)
  if size in MODEL_SIZES:
    return dict(MODEL_SIZES[size])
  match = _SIZE_SPEC.fullmatch(size)
  if match is None:
    raise ValueError(f"Unknown model size {size!r}; expected {SIZE_HELP}.")
  layers, width = int(match[1]), int(match[2])
  heads = int(match[3]) if match[3] else max(1, width // 32)
  dropout = float(match[4]) if match[4] else 0.0
  if layers < 1 or width < 1 or heads < 1 or width % heads:
    raise ValueError(
      f"Model size {size!r}: layers, width and heads must be >= 1 and heads must divide the width."
    )
  return dict(
    num_layers=layers, num_heads=heads, hidden_dim=width, intermediate_dim=4 * width, dropout=dropout
  )


def model_config(size: str, *, vocabulary_size: int, max_sequence_length: int) -> dict:
  """Returns the `GPT2Backbone` arguments of the named size or `LxD[hH][dP]` spec."""
  return dict(size_config(size), vocabulary_size=vocabulary_size, max_sequence_length=max_sequence_length)


def without_autograph(fn):
  """Runs `fn` with AutoGraph off, for building and calling keras-nlp's GPT-2.

  keras-nlp's layers have no tensor-dependent Python control flow, so AutoGraph
  has nothing to convert in them; yet Keras 2 hands every layer's `call` to it,
  outside `tf.function` too, and it re-parses their source each time a model is
  built or TFF traces a computation: 1,510 of the 1,695 conversions of building
  and running a tiny federated experiment, about 14% of that process's time
  (BENCHMARKS.md, "Building an experiment"). Results are unchanged: the same ops, traced
  without the conversion.
  """
  return tf.autograph.experimental.do_not_convert(fn)


# A model config holding this key is a sequence classifier of that many classes (`GPT2LM`'s `num_classes`).
NUM_CLASSES = "num_classes"
# Hugging Face's `GPT2ForSequenceClassification` draws its head from N(0, initializer_range^2).
HEAD_INIT_STDDEV = 0.02


class GPT2LM(tf.keras.Model):
  """A backbone with the tied LM head, or a classifier head: `{token_ids, padding_mask}` -> logits.

  With `num_classes`, a bias-free dense layer `score` maps every position's
  hidden state to class logits, as transformers' `GPT2ForSequenceClassification`
  does; training reads them at the last non-padding token only (the data puts
  the class there and `IGNORE_LABEL` elsewhere, `data/classified.py`), so the
  language model's masked loss and accuracy are the classifier's.

  Subclassed rather than functional on purpose: a functional wrapper calls
  the backbone on symbolic inputs when it is built, and in graph mode (where
  TFF builds models) Keras 2 then evaluates constants in a session once per
  op, which took 30 of the 47 seconds of building GPT-2 124M.
  """

  def __init__(self, backbone: keras_nlp.models.GPT2Backbone, num_classes: int | None = None, **kwargs):
    super().__init__(name="gpt2_lm", **kwargs)
    self.backbone = backbone
    self.num_classes = num_classes
    self.score = None
    if num_classes:
      initializer = tf.keras.initializers.RandomNormal(stddev=HEAD_INIT_STDDEV)
      self.score = tf.keras.layers.Dense(
        num_classes, use_bias=False, kernel_initializer=initializer, name="score"
      )
      self.score.build((None, None, backbone.hidden_dim))
    self.built = True  # The backbone (and the head) are built.
    # Dropout masks drawn from each training batch, not from unseeded state (seeded_dropout.py).
    self._dropout_seed = seeded_dropout.install(backbone)

  @without_autograph
  def call(self, inputs, training=None):
    if self._dropout_seed is None or training is None or training is False:
      hidden = self.backbone(inputs, training=training)
    else:
      self._dropout_seed.seed = seeded_dropout.batch_seed(inputs["token_ids"])
      try:
        hidden = self.backbone(inputs, training=training)
      finally:
        self._dropout_seed.seed = None
    if self.score is not None:
      return self.score(hidden)
    return self.backbone.token_embedding(hidden, reverse=True)

  def get_config(self):
    return {
      "backbone": tf.keras.saving.serialize_keras_object(self.backbone),
      "num_classes": self.num_classes,
    }

  @classmethod
  def from_config(cls, config):
    return cls(tf.keras.saving.deserialize_keras_object(config["backbone"]), config.get("num_classes"))


def lm_from_backbone(
  backbone: keras_nlp.models.GPT2Backbone, num_classes: int | None = None
) -> tf.keras.Model:
  """Wraps a backbone with the tied LM head (or a classifier head of `num_classes`)."""
  return GPT2LM(backbone, num_classes)


def head_variables(model: tf.keras.Model) -> list[tf.Variable]:
  """The classifier head's kernel (a model without one: none); it trains in every `--trainable` mode."""
  score = getattr(model, "score", None)
  return [score.kernel] if score is not None else []


@contextlib.contextmanager
def constants_kept_in_graph():
  """Builds Keras functional models in graph mode without evaluating their constants in a session.

  `GPT2Backbone` is a functional model, and TFF builds models in graph mode.
  There Keras 2 wraps every TensorFlow op applied to its symbolic inputs in a
  `TensorFlowOpLayer` and, by default, evaluates each of the op's constant
  inputs in a Keras session, which first runs the initializers of every
  variable in the graph: 28 session calls for each GPT-2 built, 1.3 of the
  1.9 s of building the tiny model, 20 of the 23 s of a fresh 12x768 one, and TFF
  builds the model about 9 times per experiment (BENCHMARKS.md, "Building an experiment").
  Keras's own switch, `_UNSAFE_GRAPH_OP_LAYER_CREATION` (what it does under
  XLA and distribution strategies), keeps those constants as graph tensors
  instead: the same ops and the same values. What it gives up, the op
  layers' own `get_config`, is never used: `GPT2Backbone.get_config` returns
  its constructor arguments and saving goes through presets and weights.
  """
  with internals.graph_op_layers_kept_in_graph():
    yield


@without_autograph
def build_gpt2_lm(config: dict) -> tf.keras.Model:
  """Returns a fresh, uncompiled GPT-2 language model.

  Args:
    config: `GPT2Backbone` keyword arguments (see `model_config`).

  Returns:
    A `tf.keras.Model` from `OrderedDict(token_ids, padding_mask)` (int32,
    `[batch, length]`) to logits `[batch, length, vocabulary_size]`.
  """
  return lm_from_backbone(new_backbone(config), config.get(NUM_CLASSES))


@without_autograph
def new_backbone(config: dict) -> keras_nlp.models.GPT2Backbone:
  """A freshly initialized `GPT2Backbone` of `config` (its keyword arguments; a head's are left out)."""
  with constants_kept_in_graph():
    return keras_nlp.models.GPT2Backbone(**{k: v for k, v in config.items() if k in BACKBONE_KEYS})


# The stddev a fresh GPT-2's embeddings are drawn with unless `--embedding_init_stddev` says otherwise
# (`reinitialize_embeddings`).
DEFAULT_EMBEDDING_INIT_STDDEV = 0.05


def reinitialize_embeddings(backbone: keras_nlp.models.GPT2Backbone, stddev: float) -> None:
  """Draws the token and position embeddings anew from N(0, stddev^2).

  keras-nlp draws them with stddev 0.01 and 0.02, sized for GPT-2's width of
  768. At the width of the small models, embeddings that start 2.5-5 times
  larger take training past the bigram plateau in far fewer steps (the
  README's sweep: held-out loss 2.51 -> 2.2x after 50 rounds). Seeded by
  TensorFlow's global seed, as the rest of the initial weights.
  """
  for name in ("token_embedding", "position_embedding"):
    for weight in backbone.get_layer(name).weights:
      weight.assign(tf.random.normal(weight.shape, stddev=stddev, dtype=weight.dtype))


def reinitialize_query_key(backbone: keras_nlp.models.GPT2Backbone, stddev: float) -> None:
  """Draws every block's attention query and key kernels anew from N(0, stddev^2).

  keras-nlp draws all kernels with stddev 0.02. At the small widths, query and
  key kernels about 4 times larger (0.09 ~ 1/sqrt(width 128)) make attention
  start away from uniform, and training leaves the bigram plateau earlier (the
  README's sweep: 2.131 -> 2.087 after 50 rounds). Larger values for every
  kernel, or 0.2 for these, learn slower. Biases and the other kernels keep
  keras-nlp's draws. Seeded by TensorFlow's global seed.
  """
  for layer in backbone.transformer_layers:
    attention = layer._self_attention_layer
    for kernel in (attention._query_dense.kernel, attention._key_dense.kernel):
      kernel.assign(tf.random.normal(kernel.shape, stddev=stddev, dtype=kernel.dtype))


def backbone_of(model: tf.keras.Model) -> keras_nlp.models.GPT2Backbone:
  """The `GPT2Backbone` inside a model from `build_gpt2_lm`."""
  return next(layer for layer in model.layers if isinstance(layer, keras_nlp.models.GPT2Backbone))


@without_autograph
def load_preset(preset: str) -> keras_nlp.models.GPT2Backbone:
  """Loads a pretrained backbone from a local preset directory or a hub name.

  A local directory is one written by `save_to_preset`; a hub name such as
  "gpt2_base_en" is passed to KerasNLP unchanged and needs network.
  """
  with constants_kept_in_graph():
    return keras_nlp.models.GPT2Backbone.from_preset(preset)


def preset_config(preset: str) -> dict:
  """The `GPT2Backbone` arguments of a preset, read from its config.json alone."""
  config = internals.preset_utils.load_config(preset, internals.preset_utils.CONFIG_FILE)["config"]
  return {k: config[k] for k in BACKBONE_KEYS}
