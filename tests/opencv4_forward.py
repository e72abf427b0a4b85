"""Runs a Caffe model with OpenCV 4's DNN module (a subprocess of tests/caffe_reference.py).

    python opencv4_forward.py DEPLOY.prototxt WEIGHTS.caffemodel INPUTS.npy OUT.npz LAYER...

Must see OpenCV 4 first on PYTHONPATH; refuses any other build, so a comparison can never run
silently against something else.
"""

import sys

import cv2
import numpy as np


def main(prototxt, caffemodel, inputs, out, *layers):
  if not cv2.__version__.startswith("4.") or not hasattr(cv2.dnn, "readNetFromCaffe"):
    sys.exit(f"expected OpenCV 4 with the Caffe importer, got {cv2.__version__} ({cv2.__file__})")
  net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
  net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
  net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
  net.setInput(np.load(inputs))
  outputs = net.forward(list(layers))
  np.savez(out, **{f"out{i}": np.asarray(o) for i, o in enumerate(outputs)})


if __name__ == "__main__":
  main(*sys.argv[1:])
