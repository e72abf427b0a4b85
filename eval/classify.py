"""Classification evaluation as in section 7 of the paper: N models x {1, 10, 144} crops, Table 3.

    python -m eval.classify --config=configs/digits.py --models=/tmp/digits_s0,/tmp/digits_s1 \\
        --crops=1,10,144 --params=ema --output=/tmp/table3.json

--models: training workdirs or exported model directories, each rebuilt from its own model.json
  (variants and widths may differ). All models see the same data: the `data` section of
  --config (image size, normalisation, source; --config.data.source=... overrides work), split
  --split (default config.data.eval_split). A model whose directory records another input
  normalisation (input.json: imported Caffe weights want 'caffe') gets the views converted to
  it on the device (eval/renormalize.py), so ensembles may mix conventions.
--crops: any of 1, 10, 144 (see eval/crops.py for the exact windows). The union of the views is
  computed once per image and every scheme is read off the same forward passes.
--combine: mean_softmax (the paper: average softmax over crops, then over models),
  max_softmax (max over crops, then average over models) or mean_logits.
--batch_size: images per global batch (default: config.eval_batch_size, reduced so a host batch
  of all views stays under about 1 GiB, and to the split's size on a small split);
  --views_per_step: views per forward pass (default: as many as keep B x views near
  config.eval_batch_size rows).

Prints the Table-3 style Markdown table on stdout; --output writes every cell (ensembles of the
first k models and every single model, with per-class accuracy) and the full ensemble's top-5
predictions per image and crop scheme as JSON, and beside it the table as a PNG heat-map
(--output=X.json -> X.png; rows: models in the ensemble, columns: crop schemes, cells: top-5
and top-1 error; see eval/table_figure.py). Runs on one device or on the mesh of all devices
(batch sharded over 'data'); every image is counted exactly once (padding carries mask False).
"""

from runtime import launch

launch.reexec_if_program(__name__)  # before the heavy imports below (runtime/launch.py)

import json  # noqa: E402
import os  # noqa: E402

from absl import app, flags, logging  # noqa: E402
import jax  # noqa: E402

from eval import classification, table_figure  # noqa: E402
from runtime import cli, figures, lost_host, paths, process  # noqa: E402

FLAGS = flags.FLAGS
cli.define_config_flag(
    "config", "configs/digits.py", "Config file; its data section describes the evaluation data."
)
flags.DEFINE_list("models", None, "Training workdirs or exported model directories.")
flags.DEFINE_string("split", None, "Split to evaluate (default: config.data.eval_split).")
flags.DEFINE_list("crops", ["1", "10", "144"], "Crop schemes: any of 1, 10, 144.")
flags.DEFINE_enum(
    "params",
    "ema",
    ["raw", "ema"],
    "Training workdirs: raw or Polyak-averaged (paper section 6) parameters.",
)
flags.DEFINE_integer("batch_size", None, "Images per global batch (default: see module doc).")
flags.DEFINE_integer("views_per_step", None, "Views per forward pass (default: see module doc).")
flags.DEFINE_enum(
    "combine",
    "mean_softmax",
    ["mean_softmax", "max_softmax", "mean_logits"],
    "How crops and models are combined.",
)
flags.DEFINE_string("output", None, "JSON file for every cell, per-class accuracy, predictions.")
flags.DEFINE_float("log_every_seconds", 30.0, "Progress log interval.")
flags.mark_flags_as_required(["models"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  process.start_jax_process(
      bool(config.get("distributed")),
      config.get("compilation_cache", "off"),
      config.get("lost_host_seconds", lost_host.DEFAULT_SECONDS),
  )
  models = classification.load_models(FLAGS.models, use_ema=FLAGS.params == "ema")
  results = classification.evaluate(
      models,
      config.data,
      split=FLAGS.split,
      crops=FLAGS.crops,
      batch_size=FLAGS.batch_size,
      eval_batch_size=config.get("eval_batch_size", 120),
      views_per_step=FLAGS.views_per_step,
      combine=FLAGS.combine,
      log_every_seconds=FLAGS.log_every_seconds,
  )
  results["params"] = FLAGS.params
  if jax.process_index() == 0:
    print(
        f"{results['num_images']} images of {results['source']}/{results['split']}, "
        f"{results['combine']}, {FLAGS.params} parameters, "
        f"{results['images_per_second']:.1f} images/s:"
    )
    print(results["table_markdown"])
    if FLAGS.output:
      paths.write_text(FLAGS.output, json.dumps(results))
      logging.info("Wrote %s", FLAGS.output)
      picture = figures.draw_or_warn(
          "the Table-3 heat-map",
          lambda: table_figure.plot_table3(results, picture_path(FLAGS.output)),
      )
      if picture:
        logging.info("Wrote %s", picture)


def picture_path(output: str) -> str:
  """X.json -> X.png; an --output already ending in .png gets .png appended, not overwritten."""
  base, extension = os.path.splitext(output)
  return output + ".png" if extension.lower() == ".png" else base + ".png"


if __name__ == "__main__":
  cli.run(main)
