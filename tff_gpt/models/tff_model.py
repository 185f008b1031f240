"""The TFF side of the model: `model_fn` for `tff.learning`, initial weights, and back to Keras.

With `trainable="all"` the model is `from_keras_model` of the whole GPT-2.
Otherwise (`trainable.py`) the TFF model reports only the trained subset as
its weights (`subset_model.TrainedSubsetModel`), and the frozen rest takes its values from
the run's frozen-weights file (`frozen.py`) where the computation runs: TFF's
state, broadcast, aggregation, checkpoints and byte counts see the subset only.
"""

import contextlib
import functools

import tensorflow as tf
import tensorflow_federated as tff

from tff_gpt import errors
from tff_gpt.data import preprocessing
from tff_gpt.models import adapters, frozen, gpt2_lm, metrics, parameter_groups, registry, subset_model
from tff_gpt.models import trainable as trainable_lib

DEFAULT_LORA_ALPHA = trainable_lib.DEFAULT_LORA_ALPHA


def _zeros_instead(next_creator, **kwargs):
  shape, dtype = kwargs.get("shape"), kwargs.get("dtype")
  if shape is not None and dtype is not None and tf.as_dtype(dtype).is_floating:
    shape = tf.TensorShape(shape)
    if shape.is_fully_defined():
      kwargs["initial_value"] = lambda: tf.zeros(shape, dtype)
  return next_creator(**kwargs)


@contextlib.contextmanager
def zeros_for_initial_values():
  """Gives the floating-point variables of known shape built in it zeros, not their initializers' draws.

  For models whose every weight is assigned before it is used: in TFF's client
  and evaluation computations the server's weights overwrite the initial
  values. TFF's compilation folds keras-nlp's draws (stateless random ops) into constants, so
  each such graph carries a whole model's worth of random values, and every
  client computation loads and assigns them: about 0.04-0.06 s of a round of 10
  clients of GPT-2 small (docs/round_speedups.md). Zeros
  fold into a constant of one value. Keras passes `shape` for all but scalars,
  which keep their initializer.
  """
  with tf.variable_creator_scope(_zeros_instead):
    yield


def _initial_values(draw: bool):
  """The initializers' draws (`draw`), or `zeros_for_initial_values`."""
  return contextlib.nullcontext() if draw else zeros_for_initial_values()


@gpt2_lm.without_autograph
def build_lm(
  config: dict,
  *,
  trainable: str = "all",
  lora_alpha: float = DEFAULT_LORA_ALPHA,
  preset: str | None = None,
  reader: frozen.Reader | None = None,
  draw_initial_values: bool = True,
):
  """Builds GPT-2 with `trainable` applied.

  Args:
    config: `GPT2Backbone` arguments.
    trainable, lora_alpha: See `trainable.py`.
    preset: Load the backbone (weights included) from this preset instead.
    reader: Frozen variables take their initial values from its file.
    draw_initial_values: False: the other variables start as zeros
      (`zeros_for_initial_values`), for computations that assign them.

  Returns:
    `(model, trained, log)`: the Keras LM, the variables that train, and the
    `frozen.CreationLog` that numbered the variables.
  """
  mode = trainable_lib.parse(trainable, num_layers=config["num_layers"])
  log = frozen.CreationLog(reader)
  # Inside the log's scope, so that the log's creator (called after this one) still gives frozen
  # variables their values from the file.
  with log.scope(), _initial_values(draw_initial_values):
    backbone = gpt2_lm.load_preset(preset) if preset else gpt2_lm.new_backbone(config)
    trained = trainable_lib.select(backbone, mode, lora_alpha=lora_alpha)
    model = gpt2_lm.lm_from_backbone(backbone, config.get(gpt2_lm.NUM_CLASSES))
  return model, trained + gpt2_lm.head_variables(model), log


def frozen_layout(config: dict, *, trainable: str, lora_alpha: float = DEFAULT_LORA_ALPHA) -> frozen.Layout:
  """Which variables `trainable` freezes, found by building the model in a throwaway graph (no weights)."""
  with tf.Graph().as_default():
    _, trained, log = build_lm(config, trainable=trainable, lora_alpha=lora_alpha)
    return log.layout(trained)


def learning_rate_multipliers(
  config: dict, spec: str | None, *, trainable: str = "all", lora_alpha: float = DEFAULT_LORA_ALPHA
) -> list[float] | None:
  """One client learning-rate factor per trained variable, in the TFF model's order; None for no `spec`.

  `spec` is `--client_lr_multipliers` ("attention_vo=0.25,...", `parameter_groups`). The variables are
  found by building the model in a throwaway graph (no weights drawn).
  """
  spec = parameter_groups.parse(spec)
  if not spec:
    return None
  if not registry.kind_of(config).is_gpt2:
    raise errors.UserInputError(
      "--client_lr_multipliers names GPT-2's parameter groups; --model=char_lstm has none. Leave it empty."
    )
  with tf.Graph().as_default():
    model, trained, _ = build_lm(config, trainable=trainable, lora_alpha=lora_alpha)
    if not _is_subset(config, trainable):
      trained = model.trainable_variables  # What `from_keras_model` reports, in its order.
    return parameter_groups.multipliers_for(gpt2_lm.backbone_of(model), trained, spec)


def _is_subset(config: dict, trainable: str) -> bool:
  return registry.kind_of(config).is_gpt2 and trainable_lib.parse(trainable).is_subset


def build_keras_model(config: dict) -> tf.keras.Model:
  """A fresh language model of `config`, all weights trainable: GPT-2, or the char LSTM."""
  return registry.kind_of(config).build(config)


def build_model_fn(
  config: dict,
  *,
  sequence_length: int,
  trainable: str = "all",
  lora_alpha: float = DEFAULT_LORA_ALPHA,
  frozen_dir: str | None = None,
):
  """Returns a no-argument `model_fn` that builds a fresh `tff.learning` model.

  Args:
    config: `GPT2Backbone` keyword arguments, or a `char_lstm.model_config`.
    sequence_length: Length of the client sequences (the `input_spec`).
    trainable: Which weights train and are aggregated (`trainable.py`).
    lora_alpha: The adapters' scale numerator with "lora:R".
    frozen_dir: Where the frozen weights are (written by `initial_weights`);
      required unless `trainable` is "all". It is read when a computation
      runs, not now.

  The `model_fn` takes one optional keyword, `draw_initial_values` (default
  True); `client_model_fn` sets it False.
  """
  ranked = _is_subset(config, trainable) and trainable_lib.parse(trainable).kind in trainable_lib.RANKED_KINDS
  input_spec = preprocessing.element_spec(sequence_length, ranked=ranked)
  subset = _is_subset(config, trainable)
  if "num_layers" in config:
    trainable_lib.parse(trainable, num_layers=config["num_layers"])
  if subset and not frozen_dir:
    raise ValueError(f"--trainable={trainable} needs a frozen-weights directory.")
  layout = frozen_layout(config, trainable=trainable, lora_alpha=lora_alpha) if subset else None
  reader = frozen.Reader(frozen_dir, layout) if subset else None

  def model_fn(*, draw_initial_values: bool = True) -> tff.learning.models.VariableModel:
    if not registry.kind_of(config).is_gpt2:
      with _initial_values(draw_initial_values):
        keras_model = build_keras_model(config)
    else:  # Through `build_lm` in every mode: its creation log keeps Keras from initializing in tracing.
      keras_model, trained, _ = build_lm(
        config,
        trainable=trainable,
        lora_alpha=lora_alpha,
        reader=reader,
        draw_initial_values=draw_initial_values,
      )
      if ranked:  # Each client's adapters at its own rank, from its data.
        keras_model = adapters.RankedLM(keras_model, adapters.adapters_of(gpt2_lm.backbone_of(keras_model)))
    model = tff.learning.models.from_keras_model(
      keras_model, loss=metrics.lm_loss(), input_spec=input_spec, metrics=metrics.lm_metrics()
    )
    return subset_model.TrainedSubsetModel(model, trained) if subset else model

  model_fn.frozen_layout = layout  # What `frozen.check` compares the file with; None for "all".
  return model_fn


def client_model_fn(model_fn):
  """`model_fn` (of `build_model_fn`) without drawing initial values: for rounds and evaluations.

  Pass it as `algorithms.build_process(..., client_model_fn=)`: every weight of
  the model it builds is assigned from the server's before it is used.
  """
  return functools.partial(model_fn, draw_initial_values=False)


def initial_weights(
  config: dict,
  *,
  seed: int,
  trainable: str = "all",
  lora_alpha: float = DEFAULT_LORA_ALPHA,
  preset: str | None = None,
  frozen_dir: str | None = None,
  embedding_init_stddev: float | None = None,
  attention_init_stddev: float | None = None,
) -> tff.learning.models.ModelWeights:
  """The starting global weights: seeded random, or a pretrained preset's.

  TFF's own `initialize()` draws unseeded weights; these make runs repeatable.
  Unless `trainable` is "all", the weights are the trained subset only and
  the frozen rest is written to `frozen_dir` (once per run).
  `embedding_init_stddev` redraws a fresh GPT-2's embeddings
  (`gpt2_lm.reinitialize_embeddings`), `attention_init_stddev` its attention
  query and key kernels (`gpt2_lm.reinitialize_query_key`); None keeps
  keras-nlp's draws.
  """
  redraws = {"embedding_init_stddev": embedding_init_stddev, "attention_init_stddev": attention_init_stddev}
  for name, stddev in redraws.items():
    if stddev is not None and (preset or "num_heads" not in config):
      raise ValueError(f"{name} applies to a GPT-2 trained from scratch only.")
  tf.keras.utils.set_random_seed(seed)

  def initialized(model):
    if embedding_init_stddev is not None:
      gpt2_lm.reinitialize_embeddings(gpt2_lm.backbone_of(model), embedding_init_stddev)
    if attention_init_stddev is not None:
      gpt2_lm.reinitialize_query_key(gpt2_lm.backbone_of(model), attention_init_stddev)
    return model

  if not _is_subset(config, trainable):
    model = registry.kind_of(config).from_preset(preset, config) if preset else build_keras_model(config)
    return tff.learning.models.ModelWeights.from_model(initialized(model))
  if not frozen_dir:
    raise ValueError(f"--trainable={trainable} needs a frozen-weights directory.")
  model, trained, log = build_lm(config, trainable=trainable, lora_alpha=lora_alpha, preset=preset)
  initialized(model)
  layout = log.layout(trained)
  about = {"model": config, "trainable": trainable, "lora_alpha": lora_alpha, "preset": preset, "seed": seed}
  frozen.write(frozen_dir, log.frozen_values(layout), about=about)
  return tff.learning.models.ModelWeights(trainable=[v.numpy() for v in trained], non_trainable=[])


def keras_model_with_weights(
  config: dict,
  weights: tff.learning.models.ModelWeights,
  *,
  trainable: str = "all",
  lora_alpha: float = DEFAULT_LORA_ALPHA,
  frozen_dir: str | None = None,
) -> tf.keras.Model:
  """A fresh Keras model holding `weights` (e.g. from a checkpoint), frozen weights read from `frozen_dir`.

  With adapters the model keeps them; `merged_model` folds them in.
  """
  if not _is_subset(config, trainable):
    model = build_keras_model(config)
    weights.assign_weights_to(model)
    return model
  model, trained, log = build_lm(config, trainable=trainable, lora_alpha=lora_alpha)
  layout = log.layout(trained)
  frozen.check(frozen_dir, layout, verify_digest=False)
  reader = frozen.Reader(frozen_dir, layout)
  for index in layout.specs:
    log.variables[index].assign(reader.read(index))
  if len(trained) != len(weights.trainable):
    raise ValueError(f"The model trains {len(trained)} variables; the weights hold {len(weights.trainable)}.")
  for variable, value in zip(trained, weights.trainable, strict=True):
    variable.assign(value)
  return model


def merged_model(model: tf.keras.Model, config: dict) -> tf.keras.Model:
  """A plain GPT-2 LM with `model`'s weights, any adapters folded into their kernels."""
  values = trainable_lib.merged_values(gpt2_lm.backbone_of(model))
  plain = gpt2_lm.build_gpt2_lm(config)
  for key, variable in trainable_lib.named_weights(gpt2_lm.backbone_of(plain)).items():
    variable.assign(values[key])
  for ours, head in zip(gpt2_lm.head_variables(plain), gpt2_lm.head_variables(model), strict=True):
    ours.assign(head)
  return plain
