"""--trainable: LoRA, BitFit and last blocks train in TFF while the frozen rest stays out of its state."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tff_gpt import generation, runtime
from tff_gpt.models import adapters, frozen, gpt2_lm, huggingface, huggingface_files, tff_model, trainable
from tff_gpt.training import restore, trainer

CONFIG = gpt2_lm.model_config("tiny", vocabulary_size=50, max_sequence_length=16)


def _inputs(batch=2, length=16):
  return helpers.token_batch(vocabulary_size=50, batch=batch, length=length)


def _seeded(mode="all", seed=0):
  tf.keras.utils.set_random_seed(seed)
  return tff_model.build_lm(CONFIG, trainable=mode, lora_alpha=8.0)


# --- Which weights train -----------------------------------------------------------------------


@pytest.mark.parametrize(
  ("spec", "message"),
  [
    ("lora:0", "the rank R must be >= 1"),
    ("last_blocks:0", "K must be >= 1"),
    ("last_blocks:3", "the model has 2 blocks; use last_blocks:K with 1 <= K <= 2"),
    (
      "half",
      "--trainable must be all, last_blocks:K, lora:R, ffa_lora:R, hetlora:R, flexlora:R or bitfit, got",
    ),
    ("lora", "--trainable must be all"),
    ("bitfit:2", "--trainable must be all"),
  ],
)
def test_bad_trainable_names_the_problem(spec, message):
  with pytest.raises(ValueError, match=message):
    trainable.parse(spec, num_layers=2)


def test_bad_settings_fail_before_any_data_is_read(tmp_path):
  """K is checked against the model's depth before the (here missing) corpus is read."""
  with pytest.raises(ValueError, match="the model has 2 blocks"):
    trainer.FederatedExperiment(
      helpers.tiny_config(tmp_path, dataset_path=str(tmp_path / "none"), trainable="last_blocks:3")
    )


def test_lora_starts_as_the_frozen_model_and_trains_only_adapters():
  plain, _, _ = _seeded("all")
  model, trained, _ = _seeded("lora:4")
  np.testing.assert_array_equal(model(_inputs()).numpy(), plain(_inputs()).numpy())
  # Query and value of each of the 2 blocks: A [16, 4] and B [4, 16].
  assert [tuple(v.shape) for v in trained] == [(16, 4), (4, 16)] * 4
  assert {id(v) for v in trained} == {id(v) for v in model.trainable_weights}
  names = sorted(trainable.trained_values(gpt2_lm.backbone_of(model), trained))
  assert names[:2] == [
    "transformer_layer_0/self_attention/query/lora_a",
    "transformer_layer_0/self_attention/query/lora_b",
  ]


def test_bitfit_trains_every_bias_and_norm_and_nothing_else():
  model, trained, _ = _seeded("bitfit")
  named = trainable.named_weights(gpt2_lm.backbone_of(model))
  want = {k for k in named if k.rsplit("/", 1)[1] in ("bias", "gamma", "beta")}
  assert set(trainable.trained_values(gpt2_lm.backbone_of(model), trained)) == want
  assert len(want) == 22  # Per block: q, k, v, output and 2 feed-forward biases + 2 norms x 2; final norm.


def test_last_blocks_trains_the_last_block_and_final_norm():
  model, trained, _ = _seeded("last_blocks:1")
  keys = trainable.trained_values(gpt2_lm.backbone_of(model), trained)
  assert keys and all(k.startswith(("transformer_layer_1/", "layer_norm/")) for k in keys)
  assert len(trained) == len(gpt2_lm.backbone_of(model).get_layer("transformer_layer_1").weights) + 2


def test_merged_model_has_the_adapted_models_logits():
  model, trained, _ = _seeded("lora:4")
  for variable in trained:  # Non-zero adapters (B starts at zero).
    variable.assign(tf.random.stateless_normal(variable.shape, seed=(1, len(variable.name))) * 0.3)
  merged = tff_model.merged_model(model, CONFIG)
  assert not adapters.adapters_of(gpt2_lm.backbone_of(merged))
  np.testing.assert_allclose(merged(_inputs()).numpy(), model(_inputs()).numpy(), atol=1e-5)


@pytest.mark.full
def test_lora_equals_keras3_dense_lora(tmp_path):
  """Our adapter's output and merged kernel equal Keras 3's own `Dense.enable_lora` with the same A and B."""
  tf.keras.utils.set_random_seed(3)
  base = tf.keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 4, 8), bias_axes="de")
  x = tf.random.normal((2, 5, 32))
  base(x)
  adapter = adapters.LoraEinsumDense(base, rank=3, alpha=6.0)
  adapter.lora_b.assign(tf.random.normal(adapter.lora_b.shape))
  np.savez(
    tmp_path / "lora.npz",
    x=x.numpy(),
    kernel=base.kernel.numpy().reshape(32, 32),
    bias=base.bias.numpy().reshape(32),
    a=adapter.lora_a.numpy(),
    b=adapter.lora_b.numpy(),
    ours=adapter(x).numpy().reshape(2, 5, 32),
    merged=adapter.merged_kernel().reshape(32, 32),
  )
  script = """
import json, sys
import numpy as np
import keras
p = np.load(sys.argv[1])
dense = keras.layers.Dense(32)
dense.build((None, 32))
dense.kernel.assign(p["kernel"])
dense.bias.assign(p["bias"])
dense.enable_lora(3, lora_alpha=6.0)
dense.lora_kernel_a.assign(p["a"])
dense.lora_kernel_b.assign(p["b"])
out = keras.ops.convert_to_numpy(dense(p["x"]))
kernel = keras.ops.convert_to_numpy(dense.kernel)
print(json.dumps({"output": float(np.abs(out - p["ours"]).max()),
                  "kernel": float(np.abs(kernel - p["merged"]).max()), "keras": keras.__version__}))
"""
  result = helpers.colab(["-c", script, str(tmp_path / "lora.npz")])
  diffs = json.loads(result.stdout.strip().splitlines()[-1])
  assert diffs["keras"].startswith("3.")
  assert diffs["output"] < 1e-5 and diffs["kernel"] < 1e-6, diffs


def test_graph_layout_equals_eager_creation_order():
  """Frozen variables are matched by creation order: graph mode (TFF) and eager agree."""
  for mode in ("lora:2", "bitfit", "last_blocks:1"):
    graph = tff_model.frozen_layout(CONFIG, trainable=mode, lora_alpha=8.0)
    _, trained, log = _seeded(mode)
    assert log.layout(trained) == graph, mode


# --- In TFF ------------------------------------------------------------------------------------


def _lora_config(tmp_path, **overrides):
  values = dict(
    trainable="lora:2",
    lora_alpha=4.0,
    client_optimizer="adam",
    client_learning_rate=0.02,
    export=True,
    total_rounds=2,
  )
  values.update(overrides)
  return helpers.tiny_config(tmp_path, **values)


# Its module-scoped fixtures are built once: ./test.sh keeps this file in one pytest process (xdist group).
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("lora")
  helpers.ensure_tff_context()
  config = _lora_config(tmp_path)
  experiment = trainer.FederatedExperiment(config)
  summary = experiment.run()
  return experiment, config, summary


def test_tff_state_holds_only_the_adapters(lora_run):
  experiment, _, summary = lora_run
  weights_type = experiment.process.get_model_weights.type_signature.result
  assert [tuple(t.shape) for t in weights_type.trainable] == [(16, 2), (2, 16)] * 4
  assert len(weights_type.non_trainable) == 0
  adapter_bytes = 4 * 4 * (16 * 2 + 2 * 16)
  assert experiment.context.bytes_per_client == {
    "client_download_bytes": adapter_bytes,
    "client_upload_bytes": adapter_bytes + 4,
  }
  assert summary["bytes_communicated"] == 2 * 3 * (2 * adapter_bytes + 4)
  assert np.isfinite(summary["eval_loss"])


def test_frozen_weights_are_bit_identical_after_training(lora_run):
  experiment, config, summary = lora_run
  frozen.check(experiment.dirs.frozen_weights, experiment.task.model_fn.frozen_layout)  # Checksum included.
  initial, _, _ = _seeded_like(experiment)
  before = trainable.merged_values(gpt2_lm.backbone_of(initial))
  exported_hf = huggingface_files.read_weights(os.path.join(summary["export"], "huggingface"))
  exported = huggingface.to_keras(exported_hf, experiment.task.model_config)
  after = trainable.merged_values(gpt2_lm.backbone_of(experiment.task.keras_model(summary["model_weights"])))
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  # Only the kernels that carry adapters differ (adapters folded in); every other weight is the initial one.
  assert changed == {
    f"transformer_layer_{i}/self_attention/{t}/kernel" for i in range(2) for t in ("query", "value")
  }
  assert set(exported) == set(after)  # The export holds the merged model, the trained kernels folded in.
  for key, value in after.items():
    np.testing.assert_allclose(exported[key], value, atol=1e-6, err_msg=key)


def _seeded_like(experiment):
  """The run's starting model, drawn the way `tff_model.initial_weights` draws it (embeddings included)."""
  tf.keras.utils.set_random_seed(experiment.config.seed)
  built = tff_model.build_lm(
    experiment.task.model_config, trainable=experiment.config.trainable, lora_alpha=4.0
  )
  stddev = experiment.config.initial_draws["embedding_init_stddev"]
  if stddev is not None:
    gpt2_lm.reinitialize_embeddings(gpt2_lm.backbone_of(built[0]), stddev)
  return built


@pytest.mark.full  # The Colab venv loads the export.
def test_export_is_whole_with_adapters_alone_beside(lora_run, tmp_path):
  experiment, _, summary = lora_run
  export_dir = summary["export"]
  model = experiment.task.keras_model(summary["model_weights"], merged=False)
  assert adapters.adapters_of(gpt2_lm.backbone_of(model))
  probe = experiment.task.test_data.sequences(experiment.task.eval_client_ids[0])
  inputs = {k: probe[k][:4] for k in ("token_ids", "padding_mask")}
  diffs = helpers.keras3_logit_diffs(export_dir, inputs, model(inputs).numpy(), tmp_path)
  assert diffs["keras_hub"] < 1e-4 and diffs["saved_model"] < 1e-4, diffs
  subset = np.load(os.path.join(export_dir, "trained_subset.npz"))
  assert sorted(subset.files) == sorted(
    f"transformer_layer_{i}/self_attention/{t}/lora_{m}"
    for i in range(2)
    for t in ("query", "value")
    for m in "ab"
  )
  config = json.load(open(os.path.join(export_dir, "config.json")))
  assert config["trained_subset"] == {
    "file": "trained_subset.npz",
    "parameters": 8 * 32,
    "trainable": "lora:2",
    "lora_alpha": 4.0,
    "lora_targets": ["query", "value"],
  }
  for key in subset.files:
    np.testing.assert_array_equal(
      subset[key], trainable.named_weights(gpt2_lm.backbone_of(model))[key].numpy()
    )


@pytest.mark.full  # The Colab venv runs the notebook.
def test_notebook_evaluates_a_lora_run(lora_run, tmp_path):
  experiment, _, _ = lora_run
  text = helpers.run_notebook(experiment.dirs.results, tmp_path)
  assert "trained: lora:2 (256 parameters, in trained_subset.npz)" in text
  diffs = helpers.one_call_diffs(text)
  assert set(diffs) == {"keras_hub", "huggingface", "peft"} and max(diffs.values()) < 1e-4, diffs
  assert "perplexity" in text and "TopKSampler" in text


def test_generation_from_a_lora_run(lora_run):
  _, config, _ = lora_run
  _, tokenizer, model, round_num = restore.load_latest_model(config.root_output_dir, config.experiment_name)
  assert round_num == 2 and not adapters.adapters_of(gpt2_lm.backbone_of(model))
  text = generation.generate(model, tokenizer, "the", max_length=12, sampler="greedy")
  assert text.startswith("the") and len(text) > 3


def test_resume_refuses_other_trainable_and_bad_frozen_weights(lora_run, tmp_path):
  _, config, _ = lora_run
  for change, flag in (
    (dict(trainable="bitfit"), "--trainable was 'lora:2', now 'bitfit'"),
    (dict(lora_alpha=8.0), "--lora_alpha"),
  ):
    with pytest.raises(trainer.ResumeError, match=flag):
      trainer.FederatedExperiment(dataclasses.replace(config, **change))
  # A copy of the run whose frozen weights go missing, then belong to another mode.
  root = str(tmp_path / "runs")
  shutil.copytree(config.root_output_dir, root)
  copy = dataclasses.replace(config, root_output_dir=root, total_rounds=3)
  experiment = trainer.FederatedExperiment(copy)
  frozen_dir = experiment.dirs.frozen_weights
  shutil.rmtree(frozen_dir)
  with pytest.raises(frozen.FrozenWeightsError, match="are missing. The run's checkpoints need"):
    restore.latest_state(experiment.task, experiment.process)  # What a resume reads first.
  tff_model.initial_weights(experiment.task.model_config, seed=0, trainable="bitfit", frozen_dir=frozen_dir)
  with pytest.raises(frozen.FrozenWeightsError, match="do not match the model"):
    restore.latest_state(experiment.task, experiment.process)
  with open(os.path.join(frozen_dir, "frozen.json")) as f:
    assert json.load(f)["trainable"] == "bitfit"


@pytest.mark.parametrize(
  ("mode", "overrides"),
  [
    ("last_blocks:1", dict(algorithm="fedprox")),
    ("bitfit", dict(algorithm="mime_lite")),
    ("lora:2", dict(algorithm="fedadam")),
    # One round of each mode above stays in the everyday tier; the other pairings run in the full tier.
    pytest.param(
      "lora:2", dict(algorithm="fedavg_unweighted", aggregator="dp_adaptive"), marks=pytest.mark.full
    ),
    pytest.param("bitfit", dict(algorithm="fedavg", aggregator="compression"), marks=pytest.mark.full),
    pytest.param("last_blocks:1", dict(algorithm="fedavg", aggregator="secure"), marks=pytest.mark.full),
    pytest.param("bitfit", dict(algorithm="fedsgd"), marks=pytest.mark.full),
    pytest.param("lora:2", dict(algorithm="fedyogi", aggregator="robust"), marks=pytest.mark.full),
    pytest.param(
      "hetlora:2",
      dict(lora_client_ranks="1,2", algorithm="fedavg_unweighted", aggregator="dp_fixed"),
      marks=pytest.mark.full,
    ),
    pytest.param("hetlora:2", dict(lora_client_ranks="1,2", algorithm="mime_lite"), marks=pytest.mark.full),
    pytest.param("flexlora:2", dict(lora_client_ranks="1,2", algorithm="fedprox"), marks=pytest.mark.full),
    pytest.param("ffa_lora:2", dict(algorithm="fedsgd"), marks=pytest.mark.full),
  ],
)
def test_each_mode_trains_with_algorithms_and_aggregators(tmp_path, mode, overrides):
  config = helpers.tiny_config(tmp_path, trainable=mode, **overrides)
  secure = overrides.get("aggregator") == "secure"
  if secure:
    runtime.set_up(secure_aggregation=True)
  try:
    experiment = trainer.FederatedExperiment(config)
    start = experiment.context.initial_state()
    state, metrics = experiment.loop.train_round(start, 1)
    evaluation = experiment.evaluate(experiment.process.get_model_weights(state))
  finally:
    if secure:
      runtime.set_up()
  _, trained, _ = tff_model.build_lm(experiment.task.model_config, trainable=mode)
  weights_type = experiment.process.get_model_weights.type_signature.result
  assert [tuple(t.shape) for t in weights_type.trainable] == [tuple(v.shape) for v in trained]
  assert len(weights_type.non_trainable) == 0
  before = experiment.process.get_model_weights(start).trainable
  after = experiment.process.get_model_weights(state).trainable
  assert max(float(np.max(np.abs(a - b))) for a, b in zip(after, before, strict=True)) > 1e-6
  assert np.isfinite(metrics["train_loss"]) and np.isfinite(evaluation["eval_loss"])
  assert ("dp_epsilon" in metrics) == (overrides.get("aggregator") in ("dp_adaptive", "dp_fixed"))
  frozen.check(experiment.dirs.frozen_weights, experiment.task.model_fn.frozen_layout)
