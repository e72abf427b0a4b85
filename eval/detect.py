"""R-CNN detection with Inception region classifiers (GoogLeNet paper, section 8), end to end.

    python -m eval.detect --config=configs/rcnn_synthetic.py --workdir=/tmp/rcnn_synthetic

1. loads the train and test splits of `config.detection.dataset` ('synthetic', 'tfds:voc/2007',
   'voc:<VOCdevkit/VOC2007>');
2. selective-search proposals for every image (cached on disk across runs);
3. labelled region records (25% foreground per minibatch) in <workdir>/regions;
4. trains `detection.num_models` region classifiers with the training system
   (train.train_and_evaluate on data.source='regions:<workdir>/regions'; resumable), or
   fine-tunes them from a classification checkpoint with
   --config.init_from=DIR --config.init_from_reinit='("classifier","aux_4a","aux_4d")';
5. scores the test proposals with the ensemble (softmax averaged), per-class NMS at 0.3;
6. writes <workdir>/detection/report.md (per-class AP: VOC07 11-point, VOC10+ all-point,
   COCO AP50), metrics.json, detections.json, images/*.png and precision_recall.png (one VOC
   precision-recall curve per class, labelled with its AP).

Running the same command again reuses the proposals and the trained classifiers.
Exit status as main.py's: 75 when a signal stopped a classifier's training (saved; run again
to resume and detect), 1 with `error: ...` for a problem to fix.
`--config.detection.train=false` only detects (with classifier_<m> already in the workdir and/or
--config.detection.extra_model_dirs).
"""

from runtime import launch

launch.reexec_if_program(__name__)  # before the heavy imports below (runtime/launch.py)

import sys  # noqa: E402

from absl import app, flags  # noqa: E402

from detection import run  # noqa: E402
from runtime import cli, process  # noqa: E402
import train  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for region records, classifiers and the report.")
cli.define_config_flag("config", "configs/rcnn_synthetic.py", "R-CNN config file.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  process.start_jax_process(
      FLAGS.config.distributed, FLAGS.config.compilation_cache, FLAGS.config.lost_host_seconds
  )
  summary = run.run(FLAGS.config, FLAGS.workdir)
  if summary.get("stopped_by"):
    sys.exit(train.PREEMPTED_EXIT_CODE)  # saved; rerun to resume (as main.py)


if __name__ == "__main__":
  cli.run(main)
