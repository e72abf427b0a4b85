"""R-CNN on your own PASCAL VOC folder with your own classes; selective search + MultiBox.

    python -m eval.detect --config=configs/rcnn_voc_folder.py --workdir=/tmp/rcnn_kangaroo \
        --config.detection.dataset=voc:$HOME/data/kangaroo \
        --config.detection.class_names='("kangaroo",)' --config.model.num_classes=2

A VOC folder is <root>/Annotations/<id>.xml, <root>/JPEGImages/<id>.jpg and
<root>/ImageSets/Main/{trainval,test}.txt (other split names: --config.detection.train_split /
test_split); class_names lists the <name> values of its objects, and model.num_classes is their
number plus one (background). The example is the kangaroo set (experiencor/kangaroo on GitHub:
164 photos, 266 boxes, one class), split into 123 trainval and 41 test images.

Paper section 8's proposals: selective search with the superpixel size doubled plus a MultiBox
network's boxes, near-duplicates removed ('union'). MultiBox (64 priors from k-means of the
training boxes, 128 x 128 whole images) and the region classifier (64 x 64 warped regions)
share a narrow BatchNorm GoogLeNet trunk design (width 1/4) trained from scratch: no ImageNet
weights are used, so expect a weak classifier; report.md sets its AP beside a size-prior
baseline and, for one class, beside MultiBox's own confidences. With
compare_proposal_sets, report.md and proposal_recall.png also give recall and AP for selective
search at superpixel scale 1 and 2, MultiBox alone and the union. About 7 minutes end to end
on 2 CPU cores for the kangaroo set (measured; see README "Detection on your own VOC folder").
Unreadable images (kangaroo has a truncated JPEG) are skipped and counted.
"""

import ml_collections

from configs import rcnn_synthetic


def get_config() -> ml_collections.ConfigDict:
  config = rcnn_synthetic.get_config()
  config.model.num_classes = 2  # your classes + background

  config.data.image_size = 64  # the warped region size
  config.num_epochs = 30.0
  config.warmup_epochs = 1.0
  config.lr_decay_every_epochs = 6.0

  section = config.detection
  section.dataset = "voc:VOC_FOLDER"  # --config.detection.dataset=voc:<your VOC root>
  section.class_names = ("kangaroo",)
  section.train_split = "trainval"
  section.test_split = "test"
  section.on_bad_annotation = "skip"
  section.proposals.superpixel_scale = 2.0
  section.proposals.min_size = 16.0
  section.proposals.method = "union"
  section.regions.context_padding = 4  # R-CNN's 16 px at 227, scaled to 64
  section.compare_proposal_sets = True
  section.multibox.update(
      dict(num_priors=64, image_size=128, top_n=200, num_epochs=40.0, batch_size=16)
  )
  section.visualize_min_score = 0.1
  return config
