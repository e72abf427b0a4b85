"""The `data` section of the experiment config: every input-pipeline field and its default.

Config files start from `default_data_config()` and override a few fields; the config file locks
the ConfigDict, so a misspelt key (`--config.data.crop_ares_range=...`) is rejected instead of
silently ignored. `validate_data_config` turns bad values into errors that name the field.
"""

import ml_collections
from ml_collections import config_dict

NORMALIZATIONS = ("imagenet", "caffe", "unit")
ON_CORRUPT_CHOICES = ("skip", "raise")
TRAIN_ORDERS = ("per_process", "global")
FOLDER_CHECKS = ("decode", "header")


def default_data_config() -> ml_collections.ConfigDict:
  """Every field of the `data` section with its default (the offline `digits` set)."""
  config = ml_collections.ConfigDict()

  # Where examples come from: 'digits' (8x8 digits shipped in scikit-learn, no download),
  # 'tfds:<name>' (e.g. 'tfds:imagenet2012', 'tfds:imagenette', 'tfds:cifar10') or
  # 'folder:<root>' (root/<class>/<image>, optionally root/train/... and root/val/...).
  config.source = "digits"
  # TFDS data_dir (None: TFDS default, $TFDS_DATA_DIR or ~/tensorflow_datasets). ImageNet's
  # tar files go in <data_dir>/downloads/manual.
  config.data_dir = config_dict.placeholder(str)  # typed None: --config.data.data_dir=DIR works
  # Split names per source: digits 'train'/'test'; folder 'train'/'val' (or 'all');
  # TFDS the dataset's own names, e.g. imagenet2012 and imagenette 'train'/'validation',
  # cifar10 'train'/'test'; TFDS slicing such as 'train[:90%]' works too.
  config.train_split = "train"
  config.eval_split = "test"
  # Folder without train/ and val/ subfolders: this fraction of each class (chosen by a fixed
  # hash of the file name, so the split never changes) becomes 'val'. 0.0 puts every image in
  # 'train'.
  config.folder_val_fraction = 0.2
  # How image-folder files are checked once when the file list is built: 'decode' decodes every
  # file (JPEGs at 1/8 scale, so it is cheap); 'header' reads only each file's first bytes
  # (format) and last KB (the trailer a truncated file lacks), for folders too large to decode
  # up front. Both skip truncated files, so no run meets one later in tf.data.
  config.folder_check = "decode"
  # A corrupt or non-image file in an image folder: 'skip' (logged once with its path, counted)
  # or 'raise' (error naming the file).
  config.on_corrupt = "skip"

  config.image_size = 224
  # Shuffle buffer for sources that stream (TFDS, cached data); folder and digits sources
  # shuffle their file/index list with a full permutation every epoch instead.
  config.shuffle_buffer = 10_000
  # Keep decoded images in memory after the first epoch (before any random augmentation).
  # Only for small datasets: decoded images take height * width * 3 bytes each.
  config.cache = False
  # Seeds the shuffle order and every random augmentation (stateless, per example), so a
  # run and its resumed continuation see identical batches.
  config.seed = 0
  # How the training stream is divided between JAX processes (hosts):
  #   'per_process': each process reads only its 1/P slice of the split (TFDS files, folder
  #     list, digits indices) and shuffles it on its own: the least reading, the scalable
  #     choice for ImageNet on a pod. The global batches then depend on the process count.
  #   'global': every process walks the same global stream (one order for the whole split)
  #     and decodes only its own rows of each global batch. The batches are the same for any
  #     process count (a run resumed on another slice continues the same stream), at the cost
  #     of every process reading every record. Identical to 'per_process' on one process.
  config.train_order = "per_process"

  # Inception crop (GoogLeNet paper, section 6): area uniform in [8%, 100%] of the image,
  # aspect ratio in [3/4, 4/3]; a centre crop when no sampled box fits.
  config.crop_area_range = (0.08, 1.0)
  config.crop_aspect_range = (3 / 4, 4 / 3)
  config.crop_max_attempts = 10
  # Resize the crop with bilinear, area, nearest or bicubic interpolation, equally likely
  # (paper section 6); False always uses bilinear.
  config.random_interpolation = True
  config.flip = True

  # Photometric distortions after Howard (arXiv 1312.5402); 0 switches one off. Strengths
  # follow TF-slim's inception preprocessing: brightness delta on [0, 1] images, contrast and
  # saturation factors in [1 - s, 1 + s], hue delta as a fraction of the colour circle.
  config.brightness = 32 / 255
  config.contrast = 0.5
  config.saturation = 0.5
  config.hue = 0.2
  # Standard deviation of AlexNet's PCA lighting noise (Krizhevsky et al. 2012, section 4.1).
  config.pca_lighting = 0.1

  # Input normalisation expected by the model variant: 'imagenet' (RGB in [0, 1], torchvision
  # mean/std), 'caffe' (BGR in 0..255 minus 104, 117, 123), 'unit' (RGB in [-1, 1]).
  config.normalization = "imagenet"
  # Evaluation resizes the shorter side to round(image_size * ratio), then centre-crops
  # image_size: 256 for 224 as in the paper's single-crop numbers.
  config.eval_resize_ratio = 256 / 224
  return config


def validate_data_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the `data.*` field whose value cannot work."""

  def fail(field, problem):
    raise ValueError(f"config.data.{field}={config[field]!r}: {problem}")

  if config.normalization not in NORMALIZATIONS:
    fail("normalization", f"must be one of {NORMALIZATIONS}")
  if config.train_order not in TRAIN_ORDERS:
    fail("train_order", f"must be one of {TRAIN_ORDERS}")
  if config.on_corrupt not in ON_CORRUPT_CHOICES:
    fail("on_corrupt", f"must be one of {ON_CORRUPT_CHOICES}")
  if config.folder_check not in FOLDER_CHECKS:
    fail("folder_check", f"must be one of {FOLDER_CHECKS}")
  if config.image_size < 1:
    fail("image_size", "must be a positive number of pixels")
  if config.eval_resize_ratio < 1.0:
    fail("eval_resize_ratio", "must be >= 1 (the centre crop cannot exceed the resized image)")
  low, high = config.crop_area_range
  if not 0.0 < low <= high <= 1.0:
    fail("crop_area_range", "needs 0 < min <= max <= 1 (fractions of the image area)")
  low, high = config.crop_aspect_range
  if not 0.0 < low <= high:
    fail("crop_aspect_range", "needs 0 < min <= max (width / height)")
  if config.crop_max_attempts < 1:
    fail("crop_max_attempts", "must be at least 1")
  if not 0.0 <= config.folder_val_fraction < 1.0:
    fail("folder_val_fraction", "must be in [0, 1)")
  if config.shuffle_buffer < 1:
    fail("shuffle_buffer", "must be at least 1")
  for field in ("brightness", "contrast", "saturation", "pca_lighting"):
    if config[field] < 0:
      fail(field, "must be >= 0 (0 switches the distortion off)")
  if not 0.0 <= config.hue <= 0.5:
    fail("hue", "must be in [0, 0.5] (0 switches the distortion off)")
  if config.contrast >= 1 or config.saturation >= 1:
    field = "contrast" if config.contrast >= 1 else "saturation"
    fail(field, "must be < 1: the random factor is drawn from [1 - s, 1 + s]")
