"""Every binary answers a mistake with one `error:` line and exit status 1, no traceback
(runtime/cli.py); GOOGLENET_TRACEBACK=1 brings the traceback back."""

import os
import subprocess
import sys

import pytest

from tests import child_process
from tests.child_process import HANG_GUARD_SECONDS
from tests.local_cluster import REPO_ROOT


def run_binary(args, tmp_path, **env):
  # TensorFlow's own gs:// client, as a user has it (the suite's conftest routes gs:// through
  # gcsfs for its emulator, and TFDS's look-up of a dataset's files in its public bucket
  # would then log gcsfs's connection tracebacks on this machine without internet).
  environ = {
      **{k: v for k, v in os.environ.items() if k != "EPATH_USE_TF"},
      "JAX_PLATFORMS": "cpu",
      "JAX_NUM_CPU_DEVICES": "1",
      "XLA_FLAGS": child_process.xla_flags(suite_compile_flags=True),
      **env,
  }
  return subprocess.run(
      [sys.executable, *args],
      cwd=REPO_ROOT,
      env=environ,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
      check=False,
  )


MISTAKES = {
    "detect_unknown_field": (
        ["-m", "eval.detect", "--workdir={tmp}/detect", "--config.detection.bogus=1"],
        "error: --config.detection.bogus names no field of configs/rcnn_synthetic.py (closest: ",
    ),
    "classify_no_model": (
        ["-m", "eval.classify", "--models={tmp}/nothing_here", "--crops=1"],
        "error: {tmp}/nothing_here is neither an exported model",
    ),
    "import_missing_file": (
        [
            "-m",
            "inception.import_weights",
            "--from=torchvision",
            "--src={tmp}/missing.pth",
            "--out={tmp}/imported",
        ],
        "error: Could not read a state dict from {tmp}/missing.pth",
    ),
    "summary_bad_variant": (
        ["-m", "inception.summary", "--variant=nope"],
        "error: flag --variant=nope: value should be one of",
    ),
    "main_unknown_dataset": (
        ["main.py", "--workdir={tmp}/run", "--config.data.source=tfds:mnistt"],
        "error: config.data.source='tfds:mnistt': TFDS has no dataset 'mnistt'. Closest names: ",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_is_one_error_line_and_leaves_no_files(mistake, tmp_path):
  args, expected = MISTAKES[mistake]
  done = run_binary([a.format(tmp=tmp_path) for a in args], tmp_path)
  assert done.returncode == 1, done.stderr[-3000:]
  assert "Traceback" not in done.stderr, done.stderr[-3000:]
  errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith(expected.format(tmp=tmp_path)), errors
  assert os.listdir(tmp_path) == []  # no workdir, output or half-written file


def test_the_traceback_on_request(tmp_path):
  args, expected = MISTAKES["classify_no_model"]
  done = run_binary([a.format(tmp=tmp_path) for a in args], tmp_path, GOOGLENET_TRACEBACK="1")
  assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
  assert done.stderr.strip().splitlines()[-1].startswith(expected.format(tmp=tmp_path))
