"""Client optimizers by name: `tff.learning.optimizers` builders of a learning rate."""

import tensorflow_federated as tff

OPTIMIZERS = {
  "sgd": lambda lr: tff.learning.optimizers.build_sgdm(learning_rate=lr),
  "sgdm": lambda lr: tff.learning.optimizers.build_sgdm(learning_rate=lr, momentum=0.9),
  "adam": lambda lr: tff.learning.optimizers.build_adam(learning_rate=lr),
  "yogi": lambda lr: tff.learning.optimizers.build_yogi(learning_rate=lr),
  "adagrad": lambda lr: tff.learning.optimizers.build_adagrad(learning_rate=lr),
}
