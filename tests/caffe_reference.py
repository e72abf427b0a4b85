"""An independent forward pass of BVLC's bvlc_googlenet: OpenCV 4's Caffe importer and DNN engine.

The network description is written here from the paper's Table 1 (inception/paper.py) in
Caffe's prototxt text format, with the reference build's layer names and settings (BVLC caffe
models/bvlc_googlenet/deploy.prototxt: 7x7/2 conv1 padded 3, 3x3/2 max pools, LRN of size 5
with alpha 1e-4 and beta 0.75 after pool1 and conv2, 3x3/1 padded max pool in each inception
module, 7x7/1 average pool5; the train_val.prototxt aux heads: 5x5/3 average pool, 1x1 conv
of 128, fc 1024). OpenCV then parses that text and a `.caffemodel` with its own copy of
caffe.proto and runs its own layers, so nothing of our model code is on the reference side.

OpenCV 5 (this project's dependency) dropped the Caffe importer, so OpenCV 4 is installed
into its own directory (`.ci/run`: `pip install --target`) and run in a subprocess with that
directory first on PYTHONPATH; the two builds never meet in one interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from inception import paper
from tests.child_process import HANG_GUARD_SECONDS

OPENCV4_DIR = os.environ.get(
    "GOOGLENET_OPENCV4_DIR", os.path.join(os.path.expanduser("~"), ".cache/googlenet/opencv4")
)
OPENCV4_HINT = (
    "the Caffe comparison needs OpenCV 4's Caffe importer (OpenCV 5 has none), installed apart "
    "from this project's OpenCV 5: `pip install --no-deps --target "
    f"{OPENCV4_DIR} opencv-python-headless==4.14.0.94` (.ci/run does this)"
)
_FORWARD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opencv4_forward.py")
OUTPUTS = ("loss3/classifier", "loss1/classifier", "loss2/classifier")


def opencv4_available() -> bool:
  return os.path.isfile(os.path.join(OPENCV4_DIR, "cv2", "__init__.py"))


def require_opencv4() -> None:
  """Skips without OpenCV 4, except in CI, where a skipped equality test would hide a gap."""
  if opencv4_available():
    return
  if os.environ.get("CI"):
    pytest.fail(f"CI must run the Caffe equality test: {OPENCV4_HINT}")
  pytest.skip(OPENCV4_HINT)


class _Prototxt:

  def __init__(self, batch: int, size: int):
    self.lines = [
        'name: "GoogleNet"',
        'input: "data"',
        f"input_shape {{ dim: {batch} dim: 3 dim: {size} dim: {size} }}",
    ]

  def layer(self, name, kind, bottoms, top, params=""):
    bottoms = " ".join(f'bottom: "{b}"' for b in bottoms)
    self.lines.append(f'layer {{ name: "{name}" type: "{kind}" {bottoms} top: "{top}" {params}}}')
    return top

  def conv(self, name, bottom, outputs, kernel, stride=1, pad=0):
    self.layer(
        name,
        "Convolution",
        [bottom],
        name,
        f"convolution_param {{ num_output: {outputs} kernel_size: {kernel} stride: {stride} "
        f"pad: {pad} }} ",
    )
    return self.layer(f"{name}_relu", "ReLU", [name], name)

  def pool(self, name, bottom, method, kernel, stride, pad=0):
    return self.layer(
        name,
        "Pooling",
        [bottom],
        name,
        f"pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride} pad: {pad} }} ",
    )

  def lrn(self, name, bottom):
    return self.layer(
        name, "LRN", [bottom], name, "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } "
    )

  def inner_product(self, name, bottom, outputs):
    return self.layer(
        name, "InnerProduct", [bottom], name, f"inner_product_param {{ num_output: {outputs} }} "
    )


def bvlc_googlenet_prototxt(num_classes: int, *, aux_heads: bool, batch: int, size: int) -> str:
  """deploy.prototxt of bvlc_googlenet (plus train_val's aux heads when `aux_heads`)."""
  net = _Prototxt(batch, size)
  stem = paper.STEM_CHANNELS
  x = net.conv("conv1/7x7_s2", "data", stem["conv1"], 7, stride=2, pad=3)
  x = net.pool("pool1/3x3_s2", x, "MAX", 3, 2)
  x = net.lrn("pool1/norm1", x)
  x = net.conv("conv2/3x3_reduce", x, stem["conv2_reduce"], 1)
  x = net.conv("conv2/3x3", x, stem["conv2"], 3, pad=1)
  x = net.lrn("conv2/norm2", x)
  x = net.pool("pool2/3x3_s2", x, "MAX", 3, 2)

  def inception(tag, x):
    c = paper.INCEPTION_CHANNELS[tag]
    name = f"inception_{tag}"
    b1 = net.conv(f"{name}/1x1", x, c.conv1x1, 1)
    b2 = net.conv(f"{name}/3x3_reduce", x, c.reduce3x3, 1)
    b2 = net.conv(f"{name}/3x3", b2, c.conv3x3, 3, pad=1)
    b3 = net.conv(f"{name}/5x5_reduce", x, c.reduce5x5, 1)
    b3 = net.conv(f"{name}/5x5", b3, c.conv5x5, 5, pad=2)
    b4 = net.pool(f"{name}/pool", x, "MAX", 3, 1, pad=1)
    b4 = net.conv(f"{name}/pool_proj", b4, c.pool_proj, 1)
    return net.layer(f"{name}/output", "Concat", [b1, b2, b3, b4], f"{name}/output")

  def aux(loss, x):
    x = net.pool(f"{loss}/ave_pool", x, "AVE", 5, 3)
    x = net.conv(f"{loss}/conv", x, paper.AUX_CONV_CHANNELS, 1)
    x = net.inner_product(f"{loss}/fc", x, paper.AUX_HIDDEN_UNITS)
    x = net.layer(f"{loss}/relu_fc", "ReLU", [x], x)
    net.inner_product(f"{loss}/classifier", x, num_classes)

  x = inception("3b", inception("3a", x))
  x = net.pool("pool3/3x3_s2", x, "MAX", 3, 2)
  x = inception("4a", x)
  if aux_heads:
    aux("loss1", x)
  x = inception("4d", inception("4c", inception("4b", x)))
  if aux_heads:
    aux("loss2", x)
  x = inception("4e", x)
  x = net.pool("pool4/3x3_s2", x, "MAX", 3, 2)
  x = inception("5b", inception("5a", x))
  x = net.pool("pool5/7x7_s1", x, "AVE", 7, 1)
  x = net.layer("pool5/drop_7x7_s1", "Dropout", [x], x, "dropout_param { dropout_ratio: 0.4 } ")
  net.inner_product("loss3/classifier", x, num_classes)
  return "\n".join(net.lines) + "\n"


def opencv4_forward(
    tmp_path, prototxt: str, caffemodel: str, images_nchw: np.ndarray, outputs=OUTPUTS
) -> dict[str, np.ndarray]:
  """Runs OpenCV 4's forward pass in a subprocess; returns output layer name -> array."""
  prototxt_path = tmp_path / "deploy.prototxt"
  prototxt_path.write_text(prototxt)
  inputs, result = tmp_path / "inputs.npy", tmp_path / "outputs.npz"
  np.save(inputs, images_nchw.astype(np.float32))
  env = {**os.environ, "PYTHONPATH": OPENCV4_DIR}
  completed = subprocess.run(
      [sys.executable, _FORWARD_SCRIPT, str(prototxt_path), caffemodel, str(inputs), str(result)]
      + list(outputs),
      env=env,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  with np.load(result) as data:
    return {name: data[f"out{i}"] for i, name in enumerate(outputs)}
