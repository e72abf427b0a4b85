"""R-CNN on PASCAL VOC 2007 (TFDS voc/2007): GoogLeNet region classifiers fine-tuned from
torchvision's ImageNet weights (see README, "Importing torchvision's pretrained GoogLeNet").

    python -m eval.detect --config=configs/rcnn_voc2007.py --workdir=/tmp/rcnn_voc2007 \
        --config.init_from=exports/googlenet_tv

Paper section 8 / R-CNN: selective search fast mode with the superpixel size doubled, 224x224
warped regions with 16 px of context, fine-tuning on trainval with 25% foreground minibatches
(4 images x 32 regions; R-CNN drew 32 + 96 over all images), the classifier and both auxiliary
heads re-initialised for 20 classes + background, softmax scoring, NMS 0.3, VOC07 11-point AP
on test. The paper's ensemble had 6 networks: --config.detection.num_models=6. A GPU run;
on a CPU try --config.detection.max_train_images=200 --config.detection.max_test_images=100.
"""

import ml_collections

from configs import googlenet
from detection import config as detection_config


def get_config() -> ml_collections.ConfigDict:
  config = googlenet.get_config()
  config.model.variant = "torchvision"
  config.model.num_classes = 21  # 20 VOC classes + background (class 0)
  config.init_from = ""  # e.g. exports/googlenet_tv (torchvision import); empty: from scratch
  config.init_from_reinit = ("classifier", "aux_4a", "aux_4d")

  config.data.image_size = 224
  config.data.normalization = "unit"  # torchvision's transform_input (README)
  config.data.shuffle_buffer = 5_000
  config.data.crop_area_range = (0.9, 1.0)
  config.data.crop_aspect_range = (0.9, 1.1)
  config.data.random_interpolation = False
  config.data.brightness = 0.1
  config.data.contrast = 0.2
  config.data.saturation = 0.2
  config.data.hue = 0.0
  config.data.pca_lighting = 0.1
  config.data.eval_resize_ratio = 1.0

  config.batch_size = 128
  config.eval_batch_size = 256
  # R-CNN fine-tuning: SGD at 0.001 (1/10 of the pre-training rate), here with momentum 0.9.
  config.base_learning_rate = 0.001
  config.lr_reference_batch_size = 128
  config.warmup_epochs = 0.0
  config.lr_decay_factor = 0.1
  config.lr_decay_every_epochs = 8.0
  config.num_epochs = 12.0
  config.weight_decay = 5e-4
  config.bias_lr_multiplier = 2.0
  config.ema_decay = 0.999
  config.log_every_steps = 50
  config.eval_every_steps = -1
  config.checkpoint_every_steps = 1_000

  config.detection = detection_config.default_detection_config()
  config.detection.dataset = "tfds:voc/2007"
  config.detection.train_split = "trainval"
  config.detection.test_split = "test"
  config.detection.proposals.superpixel_scale = 2.0
  config.detection.proposals.max_side = 500
  config.detection.proposals.min_size = 20.0  # R-CNN's FilterBoxesWidth(boxes, 20)
  config.detection.proposals.max_proposals = 2000
  config.detection.regions.context_padding = 16
  config.detection.regions.regions_per_image = 32
  config.detection.regions.fg_fraction = 0.25
  config.detection.num_models = 1
  config.detection.inference_batch_size = 256
  return config
