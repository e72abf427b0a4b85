"""The paper's recipe: GoogLeNet (`paper` variant) on ImageNet-2012 (TFDS `imagenet2012`).

    python main.py --config=configs/googlenet.py --workdir=/tmp/googlenet \
        --config.data.data_dir=$HOME/tensorflow_datasets

Section 6 of the paper and the BVLC Caffe solver (`models/bvlc_googlenet/solver.prototxt`):
SGD with momentum 0.9, base lr 0.01 at batch 32, lr x 0.96 every 8 epochs (Caffe: every 320,000
iterations of 32 images), weight decay 2e-4 (not on biases), biases at 2x learning rate,
max_iter 10,000,000 (250 epochs), aux losses weighted 0.3, dropout 40% / 70%, Polyak averaging,
the paper's crop sampling and photometric distortions. These are the training system's
defaults (train/config.py, inception/config.py, input_pipeline/config.py, where every field
is described); this file adds the dataset. Every other config derives from this one.
"""

import ml_collections

from train import config as train_config


def get_config() -> ml_collections.ConfigDict:
  config = train_config.default_config()
  config.data.source = "tfds:imagenet2012"
  config.data.train_split = "train"
  config.data.eval_split = "validation"
  config.data.image_size = 224
  # The Caffe reference build takes BGR 0-255 minus the per-channel means (104, 117, 123).
  config.data.normalization = "caffe"
  return config
