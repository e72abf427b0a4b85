"""Pixel-value transforms on RGB float images in [0, 1]: photometric distortions (training)
and the input normalisation of the model variant (training and evaluation).

Distortions: Howard, "Some Improvements on Deep Convolutional Neural Network Based Image
Classification" (arXiv 1312.5402), section 2.1: random changes of brightness, contrast and
colour, on top of AlexNet's PCA lighting noise (Krizhevsky, Sutskever, Hinton 2012,
section 4.1). GoogLeNet's section 6 credits Howard for its photometric distortions.
The distortions run in one fixed order (Howard and TF-slim pick a random order); a fixed order
keeps the graph small and the result a simple function of the seed. A strength of 0 removes
that op from the graph entirely, so a switched-off distortion costs nothing.

Normalisation: pretrained weights only work with the statistics they were trained with:
torchvision's GoogLeNet expects 'imagenet', BVLC Caffe's bvlc_googlenet expects 'caffe',
TF-slim's inception_v1 expects 'unit'.
"""

import numpy as np
import tensorflow as tf

# Eigen-decomposition of the RGB covariance of ImageNet training pixels scaled to [0, 1], as
# published with fb.resnet.torch (datasets/imagenet.lua) for AlexNet-style lighting noise.
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def colour_distortions(
    image: tf.Tensor,
    seed: tf.Tensor,
    *,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
) -> tf.Tensor:
  """Random brightness, contrast, saturation and hue; each strength 0 means off.

  brightness: additive delta drawn from [-b, b].
  contrast, saturation: multiplicative factor drawn from [1 - s, 1 + s].
  hue: rotation of the hue channel by a delta drawn from [-h, h] (fraction of the circle).
  Values are clipped to [0, 1] after every step so the HSV conversions see valid colours.
  """
  brightness_seed, contrast_seed, saturation_seed, hue_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 4)
  )
  if brightness > 0:
    image = tf.image.stateless_random_brightness(image, brightness, brightness_seed)
    image = tf.clip_by_value(image, 0.0, 1.0)
  if contrast > 0:
    image = tf.image.stateless_random_contrast(image, 1 - contrast, 1 + contrast, contrast_seed)
    image = tf.clip_by_value(image, 0.0, 1.0)
  if saturation > 0:
    image = tf.image.stateless_random_saturation(
        image, 1 - saturation, 1 + saturation, saturation_seed
    )
    image = tf.clip_by_value(image, 0.0, 1.0)
  if hue > 0:
    image = tf.image.stateless_random_hue(image, hue, hue_seed)
    image = tf.clip_by_value(image, 0.0, 1.0)
  return image


def pca_lighting_noise(image: tf.Tensor, seed: tf.Tensor, strength: float) -> tf.Tensor:
  """Adds sum_i alpha_i * eigenvalue_i * eigenvector_i to every pixel, alpha_i ~ N(0, strength).

  One RGB offset per image along the principal components of natural-image colour, which
  makes the model less sensitive to the colour and intensity of the illumination
  (Krizhevsky et al. 2012, section 4.1; they used strength 0.1).
  """
  if strength <= 0:
    return image
  alpha = tf.random.stateless_normal([3], seed, stddev=strength)
  eigenvectors = tf.constant(IMAGENET_EIGENVECTORS, tf.float32)
  rgb_offset = tf.linalg.matvec(eigenvectors, alpha * tf.constant(IMAGENET_EIGENVALUES))
  return tf.clip_by_value(image + rgb_offset, 0.0, 1.0)


# torchvision's ImageNet statistics of RGB in [0, 1].
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# BVLC Caffe's per-channel means, in Caffe's BGR channel order, on 0..255 pixels.
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)


def normalization_affine(method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`normalize` as numbers: output channel c = rgb01[..., order[c]] * scale[c] + offset[c].

  Every convention is a channel permutation plus a per-channel affine map of RGB in [0, 1], so
  images in one convention convert exactly into another (eval/renormalize.py).
  """
  if method == "imagenet":
    mean, std = np.array(IMAGENET_MEAN_RGB), np.array(IMAGENET_STD_RGB)
    return np.arange(3), 1.0 / std, -mean / std
  if method == "caffe":
    return np.array([2, 1, 0]), np.full(3, 255.0), -np.array(CAFFE_MEAN_BGR)
  if method == "unit":
    return np.arange(3), np.full(3, 2.0), np.full(3, -1.0)
  raise ValueError(
      f"config.data.normalization={method!r}: must be 'imagenet', 'caffe' or " "'unit'"
  )


def normalize(image: tf.Tensor, method: str) -> tf.Tensor:
  """RGB float in [0, 1] (any leading dims) -> the model's input convention.

  Every preprocessing path ends here.

  'imagenet': (rgb - mean) / std with torchvision's statistics.
  'caffe':    BGR channel order, 0..255, minus (104, 117, 123); no scaling.
  'unit':     rgb * 2 - 1, i.e. [-1, 1] (TF-slim Inception, torchvision transform_input).
  """
  image = tf.cast(image, tf.float32)
  if method == "imagenet":
    return (image - tf.constant(IMAGENET_MEAN_RGB)) / tf.constant(IMAGENET_STD_RGB)
  if method == "caffe":
    return image[..., ::-1] * 255.0 - tf.constant(CAFFE_MEAN_BGR)
  if method == "unit":
    return image * 2.0 - 1.0
  raise ValueError(
      f"config.data.normalization={method!r}: must be 'imagenet', 'caffe' or " "'unit'"
  )
