"""The GPT-2 LM: shapes, tied head, masked loss, trainable choice, presets."""

import contextlib

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tff_gpt.data import tokenizers
from tff_gpt.models import gpt2_lm, metrics, seeded_dropout, tff_model

CONFIG = gpt2_lm.model_config("tiny", vocabulary_size=50, max_sequence_length=16)


def _inputs(batch=2, length=16):
  return helpers.token_batch(vocabulary_size=50, batch=batch, length=length)


def test_shapes_and_tied_head():
  model = gpt2_lm.build_gpt2_lm(CONFIG)
  logits = model(_inputs())
  assert logits.shape == (2, 16, 50)
  backbone = gpt2_lm.backbone_of(model)
  # The head adds no weights: the output projection is the token embedding.
  assert len(model.weights) == len(backbone.weights)
  hidden = backbone(_inputs())
  expected = tf.matmul(hidden, backbone.token_embedding.embeddings, transpose_b=True)
  np.testing.assert_allclose(logits.numpy(), expected.numpy(), atol=1e-5)


def test_each_call_builds_fresh_weights():
  tf.keras.utils.set_random_seed(1)
  a = gpt2_lm.build_gpt2_lm(CONFIG)
  b = gpt2_lm.build_gpt2_lm(CONFIG)
  assert a.weights[0] is not b.weights[0]
  assert not np.array_equal(a.weights[0].numpy(), b.weights[0].numpy())


def test_masked_loss_ignores_padding():
  logits = tf.random.stateless_normal((1, 4, 50), seed=(1, 2))
  labels = tf.constant([[3, 7, -1, -1]])
  loss = metrics.lm_loss()(labels, logits).numpy()
  expected = tf.keras.losses.sparse_categorical_crossentropy([3, 7], logits[0, :2], from_logits=True)
  np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-5)
  # Changing logits at padded positions changes nothing.
  other = tf.concat([logits[:, :2], 100 * tf.ones((1, 2, 50))], axis=1)
  np.testing.assert_allclose(metrics.lm_loss()(labels, other).numpy(), loss, rtol=1e-6)
  token_loss = metrics.TokenLoss()
  token_loss.update_state(labels, other)
  np.testing.assert_allclose(token_loss.result().numpy(), loss, rtol=1e-5)


def test_token_accuracy_and_count_skip_padding():
  logits = tf.one_hot([[1, 2, 3, 4]], 50) * 10
  labels = tf.constant([[1, 0, 3, -1]])
  acc, count = metrics.TokenAccuracy(), metrics.NumTokens()
  acc.update_state(labels, logits)
  count.update_state(labels, logits)
  assert acc.result().numpy() == pytest.approx(2 / 3)
  assert count.result().numpy() == 3


def test_trainable_last_blocks(tmp_path):
  full = gpt2_lm.build_gpt2_lm(CONFIG)
  last, trained, _ = tff_model.build_lm(CONFIG, trainable="last_blocks:1")
  n_block = len(gpt2_lm.backbone_of(last).get_layer("transformer_layer_1").trainable_weights)
  assert len(last.trainable_weights) == len(trained) == n_block + 2  # the block and the final layer norm
  assert len(last.weights) == len(full.weights)
  names = [w.name for w in last.trainable_weights]
  assert not any("embedding" in n for n in names)
  frozen_dir = str(tmp_path / "frozen")
  weights = tff_model.initial_weights(CONFIG, seed=0, trainable="last_blocks:1", frozen_dir=frozen_dir)
  assert len(weights.trainable) == n_block + 2 and not weights.non_trainable


@pytest.mark.parametrize("bad", ["some", "last_blocks:0", "last_blocks:3", "last_blocks:x"])
def test_bad_trainable(bad):
  with pytest.raises(ValueError, match="--trainable"):
    tff_model.build_lm(CONFIG, trainable=bad)


def test_unknown_size():
  with pytest.raises(ValueError, match="Unknown model size 'huge'"):
    gpt2_lm.model_config("huge", vocabulary_size=10, max_sequence_length=8)


@pytest.mark.parametrize("bad", ["4x", "0x128", "2x100h3", "4X128", "2x128d1.5", "2x128d0.1h2"])
def test_bad_size_spec(bad):
  with pytest.raises(ValueError, match="Unknown model size|heads must divide"):
    gpt2_lm.model_config(bad, vocabulary_size=10, max_sequence_length=8)


def test_size_spec_builds_that_shape():
  """`LxD[hH]`: L blocks of width D, feed-forward 4D; parameters as counted by hand."""
  config = gpt2_lm.model_config("3x64h2", vocabulary_size=90, max_sequence_length=80)
  assert config == dict(
    num_layers=3,
    num_heads=2,
    hidden_dim=64,
    intermediate_dim=256,
    dropout=0.0,
    vocabulary_size=90,
    max_sequence_length=80,
  )
  assert gpt2_lm.size_config("4x128")["num_heads"] == 4
  assert gpt2_lm.size_config("small") == gpt2_lm.size_config("2x128")
  assert gpt2_lm.size_config("2x128h2d0.1") == dict(gpt2_lm.size_config("2x128h2"), dropout=0.1)
  model = gpt2_lm.build_gpt2_lm(config)
  d = 64
  block = 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * 2 * d  # attention, MLP, 2 norms
  assert model.count_params() == 90 * d + 80 * d + 3 * block + 2 * d  # embeddings, blocks, final norm


def test_size_spec_dropout_applies_in_training_only_with_masks_drawn_from_the_batch():
  """`d0.5`: training drops units, with masks that depend on the batch only; inference drops none."""
  config = gpt2_lm.model_config("2x16h2d0.5", vocabulary_size=12, max_sequence_length=8)
  model = gpt2_lm.build_gpt2_lm(config)
  batch = dict(token_ids=tf.constant([[1, 2, 3, 4]]), padding_mask=tf.ones([1, 4], tf.bool))
  other = dict(token_ids=tf.constant([[1, 2, 3, 5]]), padding_mask=tf.ones([1, 4], tf.bool))
  plain = gpt2_lm.build_gpt2_lm(dict(config, dropout=0.0))
  plain.set_weights(model.get_weights())
  np.testing.assert_array_equal(model(batch, training=False), plain(batch, training=False))
  np.testing.assert_array_equal(model(batch), plain(batch))  # Keras's default: inference.
  np.testing.assert_array_equal(plain(batch, training=True), plain(batch, training=False))
  trained = model(batch, training=True)
  assert not np.allclose(trained, plain(batch, training=True))
  # The same batch gets the same masks, in another model with the same weights and inside tf.function;
  # another batch gets others (compared on the first three positions, whose tokens are the same).
  again = gpt2_lm.build_gpt2_lm(config)
  again.set_weights(model.get_weights())
  np.testing.assert_array_equal(again(batch, training=True), trained)
  traced = tf.function(lambda b: model(b, training=True), autograph=False)
  np.testing.assert_allclose(traced(batch), trained, atol=1e-6)
  assert not np.allclose(model(other, training=True)[:, :3], trained[:, :3])


def test_seeded_dropout_drops_at_its_rate_and_keeps_the_expected_value():
  """Against Keras's own `Dropout` at the same rate: the same fraction dropped, the same scaling."""
  layer = tf.keras.layers.Dropout(0.3)
  slot = seeded_dropout.install(tf.keras.Sequential([tf.keras.Input([4000]), layer]))
  assert isinstance(layer, seeded_dropout.SeededDropout)
  ones = tf.ones([8, 4000])
  slot.seed = seeded_dropout.batch_seed(tf.constant([[3, 1, 4]]))
  seeded = layer(ones, training=True).numpy()
  slot.seed = None  # Keras's own stateful draw.
  keras = layer(ones, training=True).numpy()
  for out in (seeded, keras):
    assert np.mean(out == 0) == pytest.approx(0.3, abs=0.01)
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.7], rtol=1e-6)
  assert seeded_dropout.batch_seed(tf.constant([[3, 1, 4]])) != seeded_dropout.batch_seed(
    tf.constant([[3, 4, 1]])
  )


def test_embedding_init_stddev_redraws_only_the_embeddings():
  config = gpt2_lm.model_config("2x64", vocabulary_size=90, max_sequence_length=80)
  names = [w.name for w in gpt2_lm.build_gpt2_lm(config).weights]
  default = tff_model.initial_weights(config, seed=3).trainable
  wide = tff_model.initial_weights(config, seed=3, embedding_init_stddev=0.05).trainable
  again = tff_model.initial_weights(config, seed=3, embedding_init_stddev=0.05).trainable
  for name, a, b, c in zip(names, default, wide, again, strict=True):
    np.testing.assert_array_equal(b, c)  # Seeded.
    if "token_embedding" in name or "position_embedding" in name:
      assert np.std(a) < 0.025 and np.std(b) == pytest.approx(0.05, rel=0.05), name
    else:
      np.testing.assert_array_equal(a, b, err_msg=name)
  with pytest.raises(ValueError, match="from scratch"):
    tff_model.initial_weights(config | {"num_heads": 2}, seed=3, preset="x", embedding_init_stddev=0.05)


def test_attention_init_stddev_redraws_only_query_and_key_kernels():
  config = gpt2_lm.model_config("2x64", vocabulary_size=90, max_sequence_length=80)
  names = [w.name for w in gpt2_lm.build_gpt2_lm(config).weights]
  default = tff_model.initial_weights(config, seed=3).trainable
  drawn = tff_model.initial_weights(config, seed=3, attention_init_stddev=0.125).trainable
  again = tff_model.initial_weights(config, seed=3, attention_init_stddev=0.125).trainable
  redrawn = [name for name in names if name.endswith(("query/kernel:0", "key/kernel:0"))]
  assert len(redrawn) == 2 * config["num_layers"]
  for name, a, b, c in zip(names, default, drawn, again, strict=True):
    np.testing.assert_array_equal(b, c)  # Seeded.
    if name in redrawn:
      assert np.std(a) == pytest.approx(0.02, rel=0.1) and np.std(b) == pytest.approx(0.125, rel=0.05), name
    else:
      np.testing.assert_array_equal(a, b, err_msg=name)
  with pytest.raises(ValueError, match="attention_init_stddev applies to a GPT-2 trained from scratch"):
    tff_model.initial_weights(config | {"num_heads": 2}, seed=3, preset="x", attention_init_stddev=0.1)


@pytest.mark.parametrize(
  "overrides",
  [
    dict(embedding_init_stddev=-0.1),
    dict(embedding_init_stddev=0.05, model="char_lstm"),
    dict(attention_init_stddev=0.0),
    dict(attention_init_stddev=0.09, model="char_lstm"),
  ],
)
def test_bad_init_stddev(tmp_path, overrides):
  config = helpers.tiny_config(tmp_path, **overrides)
  with pytest.raises(ValueError, match=next(iter(overrides))):
    config.validate()


def test_embedding_init_stddev_default_and_zero(tmp_path):
  def embedding(**overrides):
    return helpers.tiny_config(tmp_path, **overrides).initial_draws["embedding_init_stddev"]

  assert embedding() == gpt2_lm.DEFAULT_EMBEDDING_INIT_STDDEV
  assert embedding(embedding_init_stddev=0.0) is None
  assert embedding(embedding_init_stddev=0.1) == 0.1
  assert embedding(model="char_lstm") is None
  # What the experiment passes to `tff_model.initial_weights`.
  assert helpers.tiny_config(tmp_path, attention_init_stddev=0.09).initial_draws == dict(
    embedding_init_stddev=gpt2_lm.DEFAULT_EMBEDDING_INIT_STDDEV, attention_init_stddev=0.09
  )


def test_preset_directory_round_trip(tmp_path, bpe_files):
  """A preset written by save_preset starts a run with its weights and tokenizer."""
  preset, backbone, tok = helpers.write_preset(tmp_path / "preset", bpe_files)

  loaded_tok = tokenizers.from_preset(preset)
  assert loaded_tok.encode(["the cat"])[0].tolist() == tok.encode(["the cat"])[0].tolist()
  config = gpt2_lm.preset_config(preset)
  assert config["hidden_dim"] == 16 and config["vocabulary_size"] == tok.vocabulary_size
  weights = tff_model.initial_weights(config, seed=123, preset=preset)
  for got, want in zip(weights.trainable, backbone.trainable_weights, strict=True):
    np.testing.assert_array_equal(got, want.numpy())


def test_bpe_generation_continues_past_the_prompt(tmp_path, bpe_files):
  """GPT-2's BPE pads with its end token; generation must not read that padding as a stop."""
  from tff_gpt import generation

  preset, backbone, tok = helpers.write_preset(tmp_path / "preset", bpe_files)
  model = gpt2_lm.lm_from_backbone(backbone)
  for sampler in ("greedy", "top_k"):
    text = generation.generate(model, tok, "the cat", sampler=sampler, max_length=12, seed=0)
    assert text.startswith("the cat") and len(tok.encode([text])[0]) > len(tok.encode(["the cat"])[0]), text


def _graph_logits(keep_constants: bool, calls: list):
  """Builds the tiny GPT-2 in a fresh graph (as TFF does), sets seeded weights, returns its logits."""
  keras_function = tf.keras.backend.function

  def counted(*args, **kwargs):
    calls.append(args)
    return keras_function(*args, **kwargs)

  config = gpt2_lm.model_config("tiny", vocabulary_size=40, max_sequence_length=16)
  batch = helpers.token_batch(vocabulary_size=40, batch=2, length=16)
  rng = np.random.default_rng(3)
  with tf.Graph().as_default():
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr("keras.src.backend.function", counted)
      if not keep_constants:
        patch.setattr(gpt2_lm, "constants_kept_in_graph", contextlib.nullcontext)
      model = gpt2_lm.build_gpt2_lm(config)
    logits = model(batch)
    # The initializers' draws depend on how many ops the graph holds; the function is the same.
    assigns = [v.assign(rng.normal(0, 0.2, v.shape).astype(np.float32)) for v in model.weights]
    with tf.compat.v1.Session() as session:
      session.run(assigns)
      return session.run(logits)


def test_graph_mode_build_evaluates_no_constant_in_a_session_and_gives_the_same_model():
  """Keras 2's default evaluates each op layer's constants in a session while a functional model is built."""
  kept, evaluated = [], []
  np.testing.assert_array_equal(_graph_logits(True, kept), _graph_logits(False, evaluated))
  assert not kept and len(evaluated) >= 10, (len(kept), len(evaluated))
