"""Multi-host in miniature: 2 JAX processes x 4 CPU devices on 127.0.0.1 (tests/local_cluster.py).

One 2-process training run is preempted (SIGTERM to both processes, as a TPU maintenance
event does); its checkpoint is then compared with the same steps on 1 process x 8 devices,
resumed by a 1-process run, read on other topologies, and evaluated by `eval.classify` on 2
processes. The digits source with `data.train_order='global'` gives the same global batches
for any process count, so the runs can be compared parameter by parameter; the model is the
paper's (no BatchNorm), for the reason given at COMPARED_STEP.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import digits
from runtime import artifacts
from tests import child_process
from tests.child_process import HANG_GUARD_SECONDS
from tests.local_cluster import REPO_ROOT, LocalCluster
from train import PREEMPTED_EXIT_CODE, checkpoint, train_and_evaluate

DEVICES_PER_PROCESS = 4
OVERRIDES = {
    # The Caffe GoogLeNet (no BatchNorm): see COMPARED_STEP.
    "model.variant": "paper",
    "model.width": 0.125,
    "batch_size": 16,
    "eval_batch_size": 48,  # 360 test digits: 7.5 global batches, so padding must not count
    "num_train_steps": 1000,
    "log_every_steps": 1,
    "eval_every_steps": 2,
    "checkpoint_every_steps": 1,
    "keep_checkpoints": 100,
    "data.train_order": "global",
}
# The 2-process run against 1 process x 8 devices after the first step, where the difference
# between them can only be rounding, on any CPU. In that step each device computes the same
# forward and backward pass from the same initial parameters and the same examples, and without
# BatchNorm no value crosses devices before the gradients are summed, so the per-device work is
# the same program on the same numbers in both runs. The one difference is the order of that
# gradient all-reduce (gloo between processes, XLA:CPU's in-process reduction): an 8-term float32
# sum rounded another way (measured: 24 of 105,496 values differ, by at most 4e-7 relative and
# 1e-9 absolute). From step 2 on, or with BatchNorm (whose batch statistics are all-reduced in
# the forward pass), such rounding reaches ReLUs and max pools, and a value within rounding of a
# kink or a tie sends its gradient another way: with the BatchNorm variant one input of
# inception_5b/1x1 sat 7.7e-6 standard deviations from the kink, and the first step's gradient
# norms were 134.8 (1 process) and 136.7 (2 processes), which no tolerance separates from a bug.
PARAM_RTOL, PARAM_ATOL = 1e-5, 1e-8
COMPARED_STEP = 1


def main_command(workdir, **extra):
  flags = {**OVERRIDES, **extra}
  return [
      sys.executable,
      "main.py",
      "--config=configs/digits.py",
      f"--workdir={workdir}",
      "--config.distributed=true",
  ] + [f"--config.{k}={v}" for k, v in flags.items()]


def in_process_config(steps):
  config = digits.get_config()
  for key, value in {**OVERRIDES, "num_train_steps": steps}.items():
    section, _, field = key.rpartition(".")
    (config[section] if section else config)[field] = value
  return config


def leaves(workdir, use_ema, step=None):
  variables, _ = artifacts.load_model_variables(str(workdir), use_ema=use_ema, step=step)
  return jax.tree.leaves(variables)


def stopped_step(log):
  match = re.search(r"Stopped by (\S+) at step (\d+)", log)
  assert match, log[-3000:]
  return int(match.group(2))


@pytest.fixture(scope="module")
def preempted_run(tmp_path_factory):
  """2 processes, SIGTERM to both once both have logged step 2: the signal meets them while
  they save and evaluate step 2, so both vote to stop in step 3 and stop after step 4 (or,
  if a signal comes later, after step 5); never before step 2's evaluation has finished."""
  root = tmp_path_factory.mktemp("two_processes")
  workdir = root / "workdir"
  with LocalCluster(
      main_command(workdir),
      2,
      devices_per_process=DEVICES_PER_PROCESS,
      log_dir=str(root / "logs"),
      record_writes=True,
  ) as cluster:
    assert cluster.wait_for_log("step 2/", timeout=HANG_GUARD_SECONDS), "\n".join(cluster.logs())
    cluster.signal_all(signal.SIGTERM)
    results = cluster.wait(timeout=HANG_GUARD_SECONDS)
    writes = [cluster.written_files(i) for i in range(2)]
  return workdir, results, writes


def test_preempted_processes_save_the_same_step(preempted_run):
  workdir, results, _ = preempted_run
  logs = [r.log for r in results]
  # Same exit status as a single-process preemption (main.py): saved, requeue me.
  assert [r.returncode for r in results] == [PREEMPTED_EXIT_CODE] * 2, "\n".join(logs)
  steps = [stopped_step(log) for log in logs]
  assert steps[0] == steps[1] >= 3
  assert checkpoint.checkpoint_manager(str(workdir)).latest_step() == steps[0]
  assert "JAX process 1 of 2, 4 local / 8 global devices" in logs[1]
  with open(workdir / "summary.json") as f:
    summary = json.load(f)
  assert summary["stopped_by"] == "SIGTERM" and summary["step"] == steps[0]
  assert summary["process_count"] == 2
  # Evaluation at step 2 over both processes: every test digit exactly once.
  assert summary["eval_images"] == 360
  assert "on 360 images" in logs[0]


def test_only_process_0_writes_the_run_files(preempted_run):
  workdir, results, writes = preempted_run
  run_files = {str(workdir / name) for name in ("summary.json", "model.json", "input.json")}
  assert run_files <= writes[0]
  assert not run_files & writes[1], writes[1]
  events = glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))
  # TensorFlow names event files after the writing process's pid.
  assert len(events) == 1, events
  assert results[0].log and os.path.exists(events[0])


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
  """The same steps on 1 process x 8 devices (this test process, tests/conftest.py)."""
  assert jax.device_count() == 8
  workdir = tmp_path_factory.mktemp("one_process") / "workdir"
  train_and_evaluate(in_process_config(COMPARED_STEP), str(workdir))
  return workdir


def test_two_processes_equal_one_process_on_the_same_global_batches(preempted_run, one_process_run):
  workdir, _, _ = preempted_run
  for use_ema in (False, True):
    pairs = zip(
        leaves(workdir, use_ema, COMPARED_STEP),
        leaves(one_process_run, use_ema, COMPARED_STEP),
        strict=True,
    )
    for a, b in pairs:
      np.testing.assert_allclose(a, b, rtol=PARAM_RTOL, atol=PARAM_ATOL)


def test_one_process_resumes_the_two_process_checkpoint(preempted_run, tmp_path, caplog, absl_info):
  """This test process (1 process x 8 devices) continues the 2-process run's checkpoint."""
  workdir, results, _ = preempted_run
  steps = stopped_step(results[0].log)
  resumed = tmp_path / "resumed"
  shutil.copytree(workdir, resumed)
  config = in_process_config(steps + 2)
  config.eval_every_steps = -1
  with caplog.at_level("INFO"):
    summary = train_and_evaluate(config, str(resumed))
  assert f"Resumed from {resumed}/checkpoints at step {steps}" in caplog.text
  assert f"step {steps + 1}/{steps + 2}" in caplog.text and "step 1/" not in caplog.text
  assert summary["step"] == steps + 2 and summary["process_count"] == 1
  assert summary["eval_images"] == 360
  with open(resumed / "summary.json") as f:
    assert json.load(f)["step"] == steps + 2


def test_variables_restore_on_one_device_from_any_topology(preempted_run, one_process_run):
  workdir, _, _ = preempted_run
  eight_devices = one_process_run
  script = (
      "import sys, jax\n"
      "from runtime import artifacts\n"
      "assert jax.device_count() == 1\n"
      "for path in sys.argv[1:]:\n"
      "  variables, _ = artifacts.load_model_variables(path, use_ema=True)\n"
      "  print(path, len(jax.tree.leaves(variables)))\n"
  )
  env = {
      **os.environ,
      "JAX_NUM_CPU_DEVICES": "1",
      "XLA_FLAGS": child_process.xla_flags(suite_compile_flags=False),
      "JAX_PLATFORMS": "cpu",
  }
  done = subprocess.run(
      [sys.executable, "-c", script, str(eight_devices), str(workdir)],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
      check=False,
  )
  assert done.returncode == 0, done.stderr[-5000:]
  counts = [int(line.split()[-1]) for line in done.stdout.splitlines()]
  assert len(counts) == 2 and counts[0] == counts[1] > 0


def test_eval_classify_on_two_processes_counts_each_image_once_in_the_split_s_order(
    preempted_run, tmp_path
):
  workdir, _, _ = preempted_run
  output = tmp_path / "table.json"
  command = [
      sys.executable,
      "-m",
      "eval.classify",
      "--config=configs/digits.py",
      "--config.distributed=true",
      f"--models={workdir}",
      "--crops=1",
      "--batch_size=48",
      f"--output={output}",
  ]
  with LocalCluster(
      command,
      2,
      devices_per_process=DEVICES_PER_PROCESS,
      log_dir=str(tmp_path / "logs"),
      record_writes=True,
  ) as cluster:
    results = cluster.wait(timeout=HANG_GUARD_SECONDS)
    writes = [cluster.written_files(i) for i in range(2)]
  assert [r.returncode for r in results] == [0, 0], "\n".join(r.log[-3000:] for r in results)
  with open(output) as f:
    table = json.load(f)
  assert table["num_images"] == 360
  assert str(output) in writes[0] and str(output) not in writes[1]
  assert "360 images of digits/test" in results[0].log
  assert "| Models |" in results[0].log and "| Models |" not in results[1].log

  # Per-image predictions in the split's order, as one process (8 devices) lists them: the
  # 2 processes interleave their strided shards batch by batch, and the pipeline's 'index'
  # undoes that. Labels must match exactly; each top-1 class too, wherever one process's
  # winning score leads by more than float32 noise (other batch compositions per device).
  from configs import digits
  from eval import classification

  one = classification.evaluate(
      classification.load_models([str(workdir)], use_ema=True),
      digits.get_config().data,
      crops=(1,),
      batch_size=48,
  )["predictions"]
  two = table["predictions"]
  assert two["labels"] == one["labels"] and len(set(one["labels"][:20])) > 1
  one_top, two_top = (np.asarray(p["by_crops"]["1"]["top5_classes"]) for p in (one, two))
  scores = np.asarray(one["by_crops"]["1"]["top5_scores"])
  clear = scores[:, 0] - scores[:, 1] > 1e-4
  assert clear.sum() > 300
  np.testing.assert_array_equal(two_top[clear, 0], one_top[clear, 0])
  np.testing.assert_allclose(two["by_crops"]["1"]["top5_scores"], scores, atol=1e-4)


def test_eval_detect_on_two_processes_shares_the_work_and_writes_once(tmp_path):
  """R-CNN end to end on 2 processes: proposals computed once per image over both processes,
  region records and the report written by process 0 only, and the same detections as one
  process scoring with the same classifier."""
  pytest.importorskip("cv2.ximgproc", reason="needs opencv-contrib-python-headless")
  from detection import run
  from tests.test_detection_end_to_end import TINY_OVERRIDES, tiny_config

  workdir, cache = tmp_path / "workdir", tmp_path / "proposals"
  overrides = {**TINY_OVERRIDES, "detection.proposals.cache_dir": cache}
  command = [
      sys.executable,
      "-m",
      "eval.detect",
      "--config=configs/rcnn_synthetic.py",
      f"--workdir={workdir}",
      "--config.distributed=true",
  ] + [f"--config.{k}={v}" for k, v in overrides.items()]
  # One device per process: the sharing between processes is what is tested here (devices
  # within a process are the training system's, tested above), and it compiles faster.
  with LocalCluster(
      command, 2, devices_per_process=1, log_dir=str(tmp_path / "logs"), record_writes=True
  ) as cluster:
    results = cluster.wait(timeout=HANG_GUARD_SECONDS)
    writes = [cluster.written_files(i) for i in range(2)]
  assert [r.returncode for r in results] == [0, 0], "\n".join(r.log[-4000:] for r in results)
  with open(workdir / "detection" / "metrics.json") as f:
    summary = json.load(f)
  assert summary["process_count"] == 2 and summary["num_test_images"] == 3
  # 4 train + 3 test images, each searched by exactly one of the two processes.
  assert summary["proposal_cache"] == {"hits": 0, "misses": 7}
  # (TensorFlow writes the .tfrecord files from C++, out of the audit hook's sight.)
  leader_only = [
      str(workdir / "detection" / n) for n in ("metrics.json", "detections.json", "report.md")
  ]
  leader_only.append(str(workdir / "regions" / "manifest.json"))
  assert set(leader_only) <= writes[0]
  assert not {w for w in writes[1] if "/detection/" in w or "/regions/" in w}, writes[1]
  assert "mAP@0.5" in results[0].log and "mAP@0.5" not in results[1].log
  with open(workdir / "detection" / "detections.json") as f:
    two_process_detections = json.load(f)["detections"]

  # One process x 8 devices scores the same proposals with the same classifier.
  single = tiny_config(cache)
  single.detection.train = False
  again = run.run(single, str(workdir))
  assert again["proposal_cache"] == {"hits": 3, "misses": 0}
  assert again["num_detections"] == summary["num_detections"] > 0
  for key in ("mAP_voc07", "mAP_voc10", "mAP_coco_ap50", "proposal_recall_iou50"):
    assert again[key] == pytest.approx(summary[key], abs=1e-6), key
  with open(workdir / "detection" / "detections.json") as f:
    one_process_detections = json.load(f)["detections"]
  # Same boxes and classes; scores (written to 6 decimals) to float32 rounding, as the
  # devices see other batch compositions.
  strip = lambda ds: [{k: v for k, v in d.items() if k != "score"} for d in ds]
  assert strip(one_process_detections) == strip(two_process_detections)
  np.testing.assert_allclose(
      [d["score"] for d in one_process_detections],
      [d["score"] for d in two_process_detections],
      rtol=1e-5,
      atol=2e-6,
  )
