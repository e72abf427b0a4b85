"""End to end: two short training runs on digits, then `eval.classify` as a 2-model ensemble."""

import contextlib
import importlib.util
import json

from absl import flags
import jax
from jax.experimental.compilation_cache import compilation_cache
import pytest

from eval import classify, table_figure
from tests.png_checks import assert_picture
from tests.test_eval_scoring import write_digit_folder
from train import train_and_evaluate

# The digits config, reading its images from an image folder: 4 training and 2 test digits per
# class. The digits source cannot slice its 360-image test split, and 145 views x 2 models of
# all 360 take minutes at the test suite's -O0; training on the same folder also makes each
# run's own final evaluation (centre crop, raw parameters) the expected 1-crop answer.
CONFIG_FILE = """from configs import digits


def get_config():
  config = digits.get_config()
  config.data.source = "folder:{root}"
  config.data.eval_split = "val"
  config.model.width = 0.125
  config.batch_size = 16
  config.num_train_steps = 4
  config.eval_every_steps = -1
  config.checkpoint_every_steps = 4
  config.log_every_steps = 4
  config.compilation_cache = "off"  # keep the user's cache out of the test run
  return config
"""


@contextlib.contextmanager
def fresh_compilation_cache(directory):
  """JAX's persistent compilation cache in an empty `directory`, then the suite's again."""
  previous = jax.config.jax_compilation_cache_dir
  compilation_cache.reset_cache()
  jax.config.update("jax_compilation_cache_dir", str(directory))
  try:
    yield
  finally:
    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", previous)


@contextlib.contextmanager
def count_compilation_cache_use():
  """Counts the programs compiled through JAX's persistent cache, and those found there."""
  counts = {"requests": 0, "hits": 0}
  names = {
      "/jax/compilation_cache/compile_requests_use_cache": "requests",
      "/jax/compilation_cache/cache_hits": "hits",
  }

  def listen(event, **kwargs):
    if event in names:
      counts[names[event]] += 1

  jax.monitoring.register_event_listener(listen)
  try:
    yield counts
  finally:
    jax.monitoring.unregister_event_listener(listen)


@pytest.fixture
def parse_flags():
  def parse(*args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["classify", *args])

  yield parse
  flags.FLAGS.unparse_flags()


def load_config(path):
  spec = importlib.util.spec_from_file_location("digits_folder_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_two_trained_models_with_1_10_and_144_crops(tmp_path, parse_flags, capsys):
  data = tmp_path / "digits"
  write_digit_folder(data / "train", 4, split="train")
  written = write_digit_folder(data / "val", 2, split="test")
  # ml_collections reads --config.x=y overrides from sys.argv when the flag is defined, so an
  # in-process run takes its settings from a config file.
  config_file = tmp_path / "digits_folder.py"
  config_file.write_text(CONFIG_FILE.format(root=data))
  workdirs, summaries, uses = [str(tmp_path / f"seed{seed}") for seed in (0, 1)], [], []
  with fresh_compilation_cache(tmp_path / "xla_cache"):
    for seed, workdir in enumerate(workdirs):
      config = load_config(config_file)
      config.seed = seed
      with count_compilation_cache_use() as use:
        summaries.append(train_and_evaluate(config, workdir))
      uses.append(use)
  # Seed 0 compiled its programs (init, training and evaluation steps) into an empty cache;
  # seed 1 compiled nothing: its programs are seed 0's, as an ensemble's members find them.
  assert uses[0]["requests"] > uses[0]["hits"], uses
  assert uses[1]["requests"] > 0 and uses[1]["hits"] == uses[1]["requests"], uses

  output = tmp_path / "results.json"
  parse_flags(
      f'--models={",".join(workdirs)}',
      f"--config={config_file}",
      "--crops=144,1,10",
      "--params=raw",
      "--batch_size=8",
      f"--output={output}",
  )
  classify.main(["classify"])

  table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
  columns = [tuple(cell.strip() for cell in line.split("|")[1:4]) for line in table[1:]]
  assert columns[:6] == [
      ("1", "1", "1"),
      ("1", "10", "10"),
      ("1", "144", "144"),
      ("2", "1", "2"),
      ("2", "10", "20"),
      ("2", "144", "288"),
  ]
  assert [c[1:] for c in columns[6:]] == [("1", "1"), ("10", "10"), ("144", "144")]

  with open(output) as f:
    results = json.load(f)
  labels = [label for _, label in written]
  assert results["num_images"] == 20 and results["split"] == "val"
  assert results["predictions"]["labels"] == labels
  assert [
      len(results["predictions"]["by_crops"][c]["top5_classes"]) for c in ("1", "10", "144")
  ] == [20, 20, 20]
  assert len(results["cells"]) == 12  # 2 ensembles x 3 schemes + 2 single models x 3 schemes
  for cell in results["cells"]:
    assert cell["count"] == 20 and cell["per_class"]["count"] == [2] * 10
    assert cell["cost"] == cell["num_models"] * cell["crops"]
    assert 0.0 <= cell["top1_accuracy"] <= 1.0 - cell["top5_error"] <= 1.0
  assert len(results["views"]) == 145 and results["images_per_second"] > 0

  # Each model alone with 1 crop is what its training run measured on the same images with
  # the training pipeline's centre crop.
  single = {
      c["models"][0]: c for c in results["cells"] if c["kind"] == "single" and c["crops"] == 1
  }
  for index, summary in enumerate(summaries):
    assert single[index]["top1_accuracy"] == pytest.approx(summary["eval_top1"])
    # After 4 steps the 5th and 6th logits of an image can sit within float rounding of each
    # other, and the two paths batch (and so round) differently: one image of 20 may flip.
    assert 1.0 - single[index]["top5_error"] == pytest.approx(summary["eval_top5"], abs=0.051)
  best = results["best_single_model"]
  assert columns[6][0] == f"best single (seed{best})"

  # The heat-map beside the JSON: rows 1 model, 2 models, best single; columns 1, 10, 144 crops.
  assert_picture(tmp_path / "results.png", table_figure.WIDTH_PX, table_figure.HEIGHT_PX)
  labels, top5_error, top1_error = table_figure._grid(
      results["table"], [1, 10, 144], ["seed0", "seed1"]
  )
  assert labels == ["1 model", "2 models", f"best single\n(seed{best})"]
  assert top5_error[1, 2] == pytest.approx(results["table"][5]["top5_error"])
  assert top1_error[2, 0] == pytest.approx(1.0 - results["table"][6]["top1_accuracy"])


def test_picture_beside_the_json_never_replaces_it():
  assert classify.picture_path("/out/table3.json") == "/out/table3.png"
  assert classify.picture_path("/out/table3") == "/out/table3.png"
  assert classify.picture_path("/out/table3.PNG") == "/out/table3.PNG.png"


def test_heat_map_of_one_model_and_one_crop_scheme(tmp_path):
  # One cell: a colour scale of zero width must still draw (one colour, its value written).
  cell = {
      "kind": "ensemble",
      "models": [0],
      "num_models": 1,
      "crops": 1,
      "cost": 1,
      "top1_accuracy": 0.75,
      "top5_error": 0.0,
  }
  results = {
      "crops": [1],
      "models": [{"name": "/runs/a"}],
      "table": [cell],
      "num_images": 4,
      "source": "digits",
      "split": "test",
      "combine": "mean_softmax",
      "params": "ema",
  }
  path = table_figure.plot_table3(results, str(tmp_path / "one.png"))
  assert_picture(path, table_figure.WIDTH_PX, table_figure.HEIGHT_PX)
  assert table_figure._grid(results["table"], [1], ["a"])[0] == ["1 model"]
