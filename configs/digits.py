"""The embedded default: a narrow GoogLeNet on scikit-learn's 8x8 digits, offline, CPU minutes.

    python main.py --config=configs/digits.py --workdir=/tmp/digits

Still the real thing at small scale: Inception modules with both auxiliary heads (weight 0.3),
SGD with momentum, the staircase schedule and Polyak averaging, at width 1/4 (BatchNorm
variant, which trains reliably from scratch in a few epochs) on 32x32 upscaled digits. The
stem is unchanged, so the inception stages run at 4x4, 2x2 and 1x1 (see inception/googlenet.py).
Augmentation is mild: digits are neither mirror- nor crop-invariant the way photos are.
"""

import ml_collections

from configs import googlenet


def get_config() -> ml_collections.ConfigDict:
  config = googlenet.get_config()
  config.model.variant = "bn"
  config.model.num_classes = 10
  config.model.width = 0.25
  config.model.dropout_rate = 0.2

  config.data.source = "digits"
  config.data.train_split = "train"
  config.data.eval_split = "test"
  config.data.image_size = 32
  config.data.normalization = "unit"
  config.data.cache = False
  config.data.crop_area_range = (0.65, 1.0)
  config.data.crop_aspect_range = (0.8, 1.25)
  config.data.random_interpolation = False
  config.data.flip = False
  config.data.brightness = 0.1
  config.data.contrast = 0.2
  config.data.saturation = 0.0
  config.data.hue = 0.0
  config.data.pca_lighting = 0.0

  config.batch_size = 64
  config.eval_batch_size = 120
  config.base_learning_rate = 0.05
  config.lr_reference_batch_size = 64
  config.warmup_epochs = 1.0
  # The paper's 0.96 every 8 epochs, compressed in time: 0.8 every 3 epochs.
  config.lr_decay_factor = 0.8
  config.lr_decay_every_epochs = 3.0
  config.num_epochs = 30.0
  config.weight_decay = 1e-4
  config.bias_lr_multiplier = 1.0
  config.ema_decay = 0.99
  config.log_every_steps = 50
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  return config
