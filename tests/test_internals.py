"""The private TFF, Keras and keras-nlp APIs behind `tff_gpt.internals` are there, at the pinned versions.

When a pin in requirements.txt moves, this file fails first and names what
moved; every private use is listed in `tff_gpt/internals.py`.
"""

import pytest
import tensorflow as tf

from tests import helpers
from tff_gpt import internals
from tff_gpt.models import gpt2_lm


def test_installed_versions_are_the_pinned_ones():
  moved = internals.check_versions()
  assert not moved, (
    "Installed versions differ from those tff_gpt.internals was written against: "
    + "; ".join(moved)
    + ". Check each private use listed in tff_gpt/internals.py, then update internals.PINS."
  )


def test_pins_match_the_lock_file():
  lock = "\n" + "".join(
    open(f"{helpers.REPO}/{name}").read() for name in ("requirements.txt", "requirements-nodeps.txt")
  )
  for package, pin in internals.PINS.items():
    assert f"\n{package}=={pin}" in lock.replace(
      "_", "-"
    ), f"{package} {pin} is not what requirements.txt pins"


@pytest.mark.parametrize(
  "owner, name",
  [
    ("native_compiler", "desugar_and_transform_to_native"),
    ("test_compiler", "replace_secure_intrinsics_with_bodies"),
    ("remote_executor", "RemoteExecutor"),
    ("sync_execution_context", "SyncExecutionContext"),
    ("python_executor_stacks", "ResourceManagingExecutorFactory"),
    ("char_prediction_models", "create_recurrent_model"),
  ],
)
def test_private_tff_names_exist(owner, name):
  assert hasattr(getattr(internals, owner), name), f"TFF no longer has {owner}.{name} (tff_gpt/internals.py)"


def test_private_keras_attributes_work_on_a_gpt2():
  backbone = gpt2_lm.new_backbone(gpt2_lm.model_config("tiny", vocabulary_size=20, max_sequence_length=8))
  layers = internals.flatten_layers(backbone)
  assert backbone in layers and len(layers) > 10
  owned = [w for layer in layers for w in internals.own_weights(layer, non_trainable=True)]
  assert {id(w) for w in owned} == {id(w) for w in backbone.weights}
  assert internals.checkpoint_path.__doc__ and internals.grpc_channel_options()
  with tf.Graph().as_default(), internals.graph_op_layers_kept_in_graph():
    pass
  assert internals.preset_utils.CONFIG_FILE == "config.json"
