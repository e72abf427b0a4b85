"""GoogLeNet with BatchNorm on Imagenette (10 ImageNet classes; TFDS downloads it): one GPU.

python main.py --config=configs/imagenette.py --workdir=/tmp/imagenette
"""

import ml_collections

from configs import googlenet_bn


def get_config() -> ml_collections.ConfigDict:
  config = googlenet_bn.get_config()
  config.model.num_classes = 10
  config.data.source = "tfds:imagenette/full-size-v2"
  config.data.shuffle_buffer = 2_000
  config.batch_size = 128
  config.eval_batch_size = 128
  config.num_epochs = 60.0
  config.warmup_epochs = 2.0
  config.ema_decay = 0.999
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
