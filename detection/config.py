"""The `detection` section of an R-CNN config, its checks, and the training configs it implies.

An R-CNN config (configs/rcnn_*.py) is a training config (configs/googlenet.py's fields, which
train/config_checks.py validates) plus this `detection` section. `training_config` removes the
section and points `data.source` at the prepared region records ('regions:<dir>'), so every
region classifier is trained by the unchanged training system (optimizer, EMA, checkpoints,
sharding, resume).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from detection import datasets, proposals


def default_detection_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # 'synthetic' (embedded, offline), 'tfds:<name>' (e.g. 'tfds:voc/2007'), 'voc:<root>'.
  config.dataset = "synthetic"
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; typed so it can be overridden
  config.train_split = "train"  # VOC2007: 'trainval'
  config.test_split = "test"
  # Class names of a VOC folder (empty: the 20 PASCAL VOC classes).
  config.class_names = ()
  # Malformed annotations: 'raise' (error naming the file) or 'skip' (skipped, counted, logged).
  config.on_bad_annotation = "raise"
  # Use only the first N images of a split (-1: all); for quick runs.
  config.max_train_images = -1
  config.max_test_images = -1

  config.synthetic = ml_collections.ConfigDict(
      dict(
          num_train=300,
          num_test=100,
          image_size=128,
          min_objects=1,
          max_objects=4,
          min_size=18.0,
          max_size=56.0,
          max_log_aspect=0.25,
          max_overlap_iou=0.3,
          seed=0,
      )
  )

  # Selective search, fast mode (proposals.py). superpixel_scale 2: the paper's doubled size.
  config.proposals = ml_collections.ConfigDict(
      dict(
          superpixel_scale=2.0,
          sigma=0.8,
          max_side=500,
          min_size=8.0,
          max_proposals=2000,
          seed=0,
          # Where computed proposals are kept, keyed by image content and settings: '' is
          # <workdir>/proposal_cache (delete it to recompute); a shared directory lets several
          # workdirs on the same images reuse one another's.
          cache_dir="",
          # Which boxes R-CNN classifies (paper section 8): 'selective_search', 'multibox' (the
          # top multibox.top_n of a MultiBox network trained here first), or 'union' (both;
          # the paper's choice, with superpixel_scale 2 halving selective search's boxes).
          method="selective_search",
          # Union: a MultiBox box at IoU above this with a box already in the set is dropped.
          union_dedup_iou=0.9,
      )
  )
  config.multibox = default_multibox_config()
  # Also measure recall and AP with each of: selective search at superpixel scale 1 and at
  # proposals.superpixel_scale, MultiBox alone and the union (needs method multibox or union,
  # whose network it reuses); the region classifier trained on `method`'s proposals scores all.
  config.compare_proposal_sets = False

  # Region sampling for fine-tuning (regions.py) and warping (warp.py).
  config.regions = ml_collections.ConfigDict(
      dict(
          # Pixels of context on each side after warping: R-CNN's 16 at 227 px; scale it with
          # data.image_size (the warped region size), e.g. 2-4 at 32 px.
          context_padding=16,
          fg_iou=0.5,  # IoU >= fg_iou with a ground-truth box: foreground of that box's class
          # Background: max IoU in [low, high). R-CNN fine-tuning uses [0, 0.5) ("the rest",
          # Girshick et al. 2014, section 2.3); Fast R-CNN [0.1, 0.5) (hard-ish negatives only).
          bg_iou_range=(0.0, 0.5),
          fg_fraction=0.25,  # of every image's regions, hence of every minibatch (R-CNN 32 of 128)
          regions_per_image=16,  # batch_size must be a multiple: a batch holds whole images
          include_gt_boxes=True,  # ground-truth boxes join the candidates as foreground (R-CNN)
          seed=0,  # sampling of the fixed evaluation regions (training draws from config.seed)
      )
  )

  # Ensemble: models 0..num_models-1 are trained here with seeds seed, seed+1, ... (paper: 6);
  # extra_model_dirs adds already trained ones (workdirs or exports of the same input size;
  # each gets the input normalisation its input.json records, converted on the device).
  config.num_models = 1
  config.extra_model_dirs = ()
  config.train = True  # False: only detect with models already trained in the workdir
  config.use_ema = True  # the Polyak-averaged parameters (paper section 6)

  config.nms_iou = 0.3  # per-class greedy NMS (paper section 8)
  config.score_threshold = 0.001  # class scores below are not detections
  config.max_detections_per_image = 100  # over all classes, after NMS
  config.inference_batch_size = 256  # regions per forward pass (a multiple of the devices)
  config.eval_iou = 0.5
  config.coco_max_dets = 100
  config.num_visualized = 8  # PNGs with predicted and ground-truth boxes
  config.visualize_min_score = 0.3
  # At most this many detections drawn per picture, the most confident: a weak model's dozens
  # of overlapping boxes would hide the image and each other's labels.
  config.visualize_max_boxes = 5
  return config


METHODS = ("selective_search", "multibox", "union")
MATCHINGS = ("bipartite", "best")


def default_multibox_config() -> ml_collections.ConfigDict:
  """The `detection.multibox` section: the MultiBox network, its training and its proposals
  (detection/multibox_proposals.py). Its trunk is config.model's variant and width."""
  return ml_collections.ConfigDict(
      dict(
          num_priors=200,  # K
          # What the box layers read: 'inception_5b' (the last map, flattened) or 'pool5'
          # (its average; no positions): detection/multibox_model.py.
          trunk_layer="inception_5b",
          # 'bipartite' (Erhan et al., CVPR 2014: one prior per box, Hungarian) or 'best'
          # (arXiv:1412.1441: the best prior plus every prior at IoU >= match_iou); see
          # detection/multibox.py for why bipartite is the default.
          matching="bipartite",
          match_iou=0.5,
          image_size=224,  # the whole image, resized to this square
          location_weight=10.0,  # alpha of F = alpha F_loc + F_conf
          top_n=200,  # proposals kept per image: the paper adds 200
          nms_iou=0.7,  # NMS among MultiBox's boxes before the top N
          # Its training; the rest of the recipe (optimizer, EMA, ...) is the config's own.
          num_epochs=40.0,
          batch_size=16,
          # High because the box layers read features scaled to unit size (multibox_model.py);
          # on the synthetic shapes 0.005 learned nothing in 20 epochs, 0.2 raised recall.
          base_learning_rate=0.2,
          seed=0,  # k-means++ seeding of the priors
          # A classification model of config.model's variant and width (an import from
          # inception.import_weights, or a training workdir) whose variables start the trunk,
          # so MultiBox begins from ImageNet features rather than from noise; its classifier
          # and aux heads are not used. Empty: the trunk starts from random initialisation.
          init_from="",
      )
  )


def _check_multibox(section: ml_collections.ConfigDict) -> None:
  if section.proposals.method not in METHODS:
    raise ValueError(
        f"config.detection.proposals.method={section.proposals.method!r}: choose one of {METHODS}"
    )
  settings = section.multibox
  if settings.matching not in MATCHINGS:
    raise ValueError(
        f"config.detection.multibox.matching={settings.matching!r}: one of {MATCHINGS}"
    )
  for name in ("num_priors", "image_size", "top_n", "batch_size"):
    if settings[name] < 1:
      raise ValueError(f"config.detection.multibox.{name}={settings[name]} must be at least 1.")
  if not 0.0 <= section.proposals.union_dedup_iou <= 1.0:
    raise ValueError("config.detection.proposals.union_dedup_iou must be in [0, 1].")
  if section.compare_proposal_sets and section.proposals.method == "selective_search":
    raise ValueError(
        "config.detection.compare_proposal_sets=True compares with MultiBox, which is trained "
        "only with --config.detection.proposals.method=union (or multibox)."
    )


def _check_keys(
    config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict, prefix: str
) -> None:
  for key in config.keys():
    if key not in reference:
      raise ValueError(
          f"Unknown config key '{prefix}{key}'; valid keys here are " f"{sorted(reference.keys())}."
      )
    if isinstance(reference[key], ml_collections.ConfigDict):
      _check_keys(config[key], reference[key], f"{prefix}{key}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the detection section of a whole R-CNN config; errors name the field."""
  if "detection" not in config:
    raise ValueError("An R-CNN config needs a `detection` section (see configs/rcnn_synthetic.py).")
  section = config.detection
  _check_keys(section, default_detection_config(), "detection.")
  if section.on_bad_annotation not in datasets.ON_BAD_ANNOTATION:
    raise ValueError(
        f"config.detection.on_bad_annotation={section.on_bad_annotation!r}: "
        f"expected one of {datasets.ON_BAD_ANNOTATION}"
    )
  proposals.ProposalSettings.from_config(section.proposals)  # raises on bad values
  _check_multibox(section)
  regions = section.regions
  from detection import warp

  warp.context_scale(config.data.image_size, regions.context_padding)
  low, high = regions.bg_iou_range
  if not 0.0 <= low < high <= regions.fg_iou <= 1.0:
    raise ValueError(
        f"config.detection.regions: need 0 <= bg_iou_range[0] < bg_iou_range[1] <= "
        f"fg_iou <= 1, got bg_iou_range={regions.bg_iou_range}, fg_iou={regions.fg_iou}"
    )
  if not 0.0 <= regions.fg_fraction <= 1.0 or regions.regions_per_image < 1:
    raise ValueError("config.detection.regions: fg_fraction in [0, 1], regions_per_image >= 1")
  for name in ("batch_size", "eval_batch_size"):
    if config[name] % regions.regions_per_image:
      raise ValueError(
          f"config.{name}={config[name]} must be a multiple of "
          f"config.detection.regions.regions_per_image={regions.regions_per_image}, "
          "so that every batch holds whole images' region samples (and the "
          "foreground fraction holds per batch)."
      )
  if config.data.cache:
    raise ValueError(
        "config.data.cache must be False for region training: it would freeze "
        "one draw of regions (the region source caches decoded images itself)."
    )
  if section.num_models < 0 or (section.num_models == 0 and not section.extra_model_dirs):
    raise ValueError("config.detection.num_models must be >= 1 (or give extra_model_dirs).")
  if (
      section.nms_iou < 0
      or section.max_detections_per_image < 1
      or section.inference_batch_size < 1
  ):
    raise ValueError(
        "config.detection: nms_iou >= 0, max_detections_per_image >= 1, "
        "inference_batch_size >= 1"
    )


def training_config(
    config: ml_collections.ConfigDict, region_dir: str, model_index: int
) -> ml_collections.ConfigDict:
  """The plain training config of region classifier `model_index` (seed offset by it)."""
  train_config = ml_collections.ConfigDict(config.to_dict())
  del train_config["detection"]
  train_config.data.source = f"regions:{region_dir}"
  train_config.data.train_split = "train"
  train_config.data.eval_split = "test"
  train_config.seed = config.seed + model_index
  train_config.data.seed = config.data.seed + model_index
  train_config.lock()
  return train_config
