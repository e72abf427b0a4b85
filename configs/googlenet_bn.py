"""GoogLeNet with BatchNorm (`bn` variant) and a modern large-batch recipe on ImageNet-2012.

    python main.py --config=configs/googlenet_bn.py --workdir=/tmp/googlenet_bn

Batch 1024 over the devices with the learning rate scaled linearly from 0.1 at 256 and a
5-epoch linear warmup (Goyal et al. 2017), then the paper's 0.96-every-8-epochs staircase
compressed to 0.94 every 2 epochs as in Szegedy et al. 2016 (Inception v3); bfloat16 compute.
"""

import ml_collections

from configs import googlenet


def get_config() -> ml_collections.ConfigDict:
  config = googlenet.get_config()
  config.model.variant = "bn"
  config.model.dtype = "bfloat16"
  config.data.normalization = "imagenet"
  config.batch_size = 1024
  config.base_learning_rate = 0.1
  config.lr_reference_batch_size = 256
  config.warmup_epochs = 5.0
  config.lr_decay_factor = 0.94
  config.lr_decay_every_epochs = 2.0
  config.num_epochs = 100.0
  config.nesterov = True
  config.weight_decay = 4e-5
  config.bias_lr_multiplier = 1.0
  config.label_smoothing = 0.1
  config.ema_decay = 0.9999
  config.log_every_steps = 100
  config.eval_every_steps = 1_250
  config.checkpoint_every_steps = 1_250
  return config
