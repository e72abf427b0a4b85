"""Nothing lost, nothing silent: a held workdir, saves finished on every exit, damaged and
foreign checkpoints, signals and exit statuses, one-line errors for user mistakes."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from runtime import artifacts
from tests import child_process
from tests.child_process import HANG_GUARD_SECONDS
from tests.local_cluster import REPO_ROOT
from tests.test_train_loop import tiny_config
from train import (
    NonFiniteLossError,
    WorkdirBusyError,
    checkpoint,
    resume,
    train_and_evaluate,
    workdir_lock,
)


@pytest.fixture
def live_process():
  child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({HANG_GUARD_SECONDS})"])
  yield child
  child.kill()
  child.wait()


def write_lock(workdir, pid, host=None, age=0.0):
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, workdir_lock.LOCK_FILE)
  with open(path, "w") as f:
    json.dump({"host": host or socket.gethostname(), "pid": pid, "started": "earlier"}, f)
  if age:
    then = time.time() - age
    os.utime(path, (then, then))
  return path


def test_second_run_on_a_held_workdir_stops_at_once_naming_the_holder(
    tmp_path, live_process, monkeypatch
):
  from train import loop

  def the_run_itself(*unused_args):
    raise AssertionError("the run started on a workdir another process holds")

  # Stopped before any data, model or compilation: the run proper is never entered.
  monkeypatch.setattr(loop, "_train_and_evaluate", the_run_itself)
  write_lock(tmp_path, live_process.pid)
  with pytest.raises(
      WorkdirBusyError,
      match=rf"process {live_process.pid} on host " rf"{re.escape(socket.gethostname())}",
  ):
    train_and_evaluate(tiny_config(2), str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


def test_lock_of_a_dead_process_or_a_silent_host_is_taken_over(tmp_path, live_process):
  live_process.kill()
  live_process.wait()
  path = write_lock(tmp_path / "dead_pid", live_process.pid)
  with workdir_lock.WorkdirLock(str(tmp_path / "dead_pid")):
    with open(path) as f:
      assert json.load(f)["pid"] == os.getpid()
  assert not os.path.exists(path)  # released on exit

  # Another host: alive as long as its heartbeat is recent.
  fresh = write_lock(tmp_path / "other_host", 12345, host="elsewhere", age=10)
  with pytest.raises(WorkdirBusyError, match="process 12345 on host elsewhere"):
    workdir_lock.WorkdirLock(str(tmp_path / "other_host")).acquire()
  silent = workdir_lock.STALE_AFTER_SECONDS + 60
  write_lock(tmp_path / "other_host", 12345, host="elsewhere", age=silent)
  with workdir_lock.WorkdirLock(str(tmp_path / "other_host")):
    with open(fresh) as f:
      assert json.load(f)["host"] == socket.gethostname()


def test_nan_stop_leaves_the_checkpoint_it_names_complete(tmp_path):
  config = tiny_config(40)
  config.base_learning_rate = 1e9  # diverges at once (loss NaN at step 3 when written)
  config.log_every_steps = 1
  config.checkpoint_every_steps = 1  # so a save is in flight when the NaN is seen
  with pytest.raises(NonFiniteLossError, match="last good checkpoint") as raised:
    train_and_evaluate(config, str(tmp_path))
  named = re.search(r"last good checkpoint is (\S+?)\.", str(raised.value)).group(1)
  checkpoints = tmp_path / "checkpoints"
  if named.startswith("none"):
    pytest.skip("diverged before the first checkpoint; nothing in flight to check")
  # Right when the exception arrives: the named step is on disk, finished, and restorable.
  assert not [p for p in os.listdir(checkpoints) if "tmp" in p], os.listdir(checkpoints)
  step = int(os.path.basename(named))
  assert checkpoint.checkpoint_manager(str(tmp_path)).latest_step() == step
  variables, _ = artifacts.load_model_variables(str(tmp_path))
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(variables))


def small_checkpoints(directory, steps=(1, 2)):
  manager = checkpoint.checkpoint_manager(str(directory))
  for step in steps:
    state = {"weights": jnp.full((64,), float(step)), "count": jnp.asarray(step)}
    manager.save(step, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  manager.close()
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


@pytest.mark.parametrize("damage", ["truncated_arrays", "empty_step_dir", "only_tmp_subdir"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage, caplog):
  abstract = small_checkpoints(tmp_path)
  steps_dir = tmp_path / "checkpoints"
  if damage == "truncated_arrays":
    bad = 2
    for root, _, files in os.walk(steps_dir / "2"):
      for name in files:
        if os.sep + "d" == root[-2:]:
          path = os.path.join(root, name)
          os.truncate(path, os.path.getsize(path) // 2)
  else:
    bad = 3
    os.makedirs(steps_dir / "3")
    if damage == "only_tmp_subdir":
      os.makedirs(steps_dir / "3" / "default.orbax-checkpoint-tmp-1795304352")
  manager = checkpoint.checkpoint_manager(str(tmp_path))
  with caplog.at_level("WARNING"):
    state, step = resume.restore_newest_good(manager, abstract)
  manager.close()
  expected = 1 if damage == "truncated_arrays" else 2
  assert step == expected and float(state["weights"][0]) == expected
  assert f"Checkpoint {steps_dir}/{bad} cannot be restored" in caplog.text
  # Set aside, not deleted; orbax no longer sees it.
  assert [p for p in os.listdir(steps_dir) if p.startswith(f"{bad}.damaged-")]
  assert checkpoint.checkpoint_manager(str(tmp_path)).latest_step() == expected


def test_no_restorable_checkpoint_is_an_error_that_moves_nothing(tmp_path):
  small_checkpoints(tmp_path, steps=(1,))
  other = {"something_else": jax.ShapeDtypeStruct((3,), jnp.float32)}
  manager = checkpoint.checkpoint_manager(str(tmp_path))
  with pytest.raises(ValueError, match="No checkpoint in .* can be restored"):
    resume.restore_newest_good(manager, other)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]


def test_resuming_with_another_model_names_the_fields(tmp_path):
  config = tiny_config(1)
  (tmp_path / "checkpoints" / "1").mkdir(parents=True)
  with open(tmp_path / artifacts.MODEL_CONFIG_FILE, "w") as f:
    json.dump({**config.model.to_dict(), "width": 0.25}, f)
  config.model.width = 0.5
  with pytest.raises(
      ValueError, match=r"model.width: 0.25 in the workdir, 0.5 now.*" r"--config.model.width=0.25"
  ):
    train_and_evaluate(config, str(tmp_path))


def run_main(*args, compile_fast=False):
  """main.py in a child on one CPU device; `compile_fast` keeps the suite's XLA -O0 (conftest)."""
  flags = child_process.xla_flags(suite_compile_flags=compile_fast)
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags, "JAX_NUM_CPU_DEVICES": "1"}
  return subprocess.run(
      [sys.executable, "main.py", *args],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
      check=False,
  )


def test_unusable_workdir_is_named(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("not a directory")
  with pytest.raises(
      ValueError,
      match=rf"--workdir={re.escape(str(a_file))} cannot be used: "
      r".*Choose a writable directory",
  ):
    train_and_evaluate(tiny_config(1), str(a_file))


def test_user_mistakes_end_in_one_line_errors(tmp_path):
  missing = tmp_path / "no_such_folder"
  done = run_main(
      "--config=configs/digits.py",
      f"--workdir={tmp_path / 'w'}",
      f"--config.data.source=folder:{missing}",
  )
  assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("error: config.data.source=") and f"{missing} is not a directory" in last
  assert not (tmp_path / "w").exists()  # a failed start makes no workdir

  done = run_main(
      "--config=configs/digits.py", f"--workdir={tmp_path / 'w'}", "--config.modle.width=0.5"
  )
  assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
  assert done.stderr.strip().splitlines() == [
      "error: --config.modle.width names no field of configs/digits.py (closest: "
      "--config.model.width, --config.model.dtype, --config.model.variant)."
  ], done.stderr


def test_second_signal_stops_at_once_and_frees_the_workdir(tmp_path):
  # The stop handler of the training loop, in a child that holds a workdir lock (as
  # train_and_evaluate does, releasing it on a second signal) and sleeps instead of training.
  script = (
      "import os, signal, time\n"
      "from train.loop import _StopRequest\n"
      "from train.workdir_lock import WorkdirLock\n"
      f"lock = WorkdirLock({str(tmp_path)!r})\n"
      "lock.acquire()\n"
      "with _StopRequest() as stop:\n"
      "  stop.on_second_signal.append(lock.release)\n"
      "  os.kill(os.getpid(), signal.SIGINT)\n"
      "  print('first', stop.signal_name, flush=True)\n"
      "  os.kill(os.getpid(), signal.SIGINT)\n"
      "  time.sleep(30)\n"
      "  print('second signal ignored', flush=True)\n"
  )
  env = {
      **os.environ,
      "JAX_PLATFORMS": "cpu",
      "XLA_FLAGS": child_process.xla_flags(suite_compile_flags=False),
  }
  done = subprocess.run(
      [sys.executable, "-c", script],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=HANG_GUARD_SECONDS,
      check=False,
  )
  assert "first SIGINT" in done.stdout and "ignored" not in done.stdout
  # Killed by the second signal: had it been ignored, the child would print after its sleep.
  assert done.returncode == -signal.SIGINT
  assert "still starting" in done.stderr  # no step had run: the log says compilation waits
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()


def test_signal_during_evaluation_saves_stops_and_resumes(tmp_path, monkeypatch, caplog, absl_info):
  from train import loop

  build_evaluators = loop.build_evaluators
  calls = []

  def evaluators_that_get_preempted(*args):
    evaluate = build_evaluators(*args)

    def evaluate_and_get_preempted(variables):
      if not calls:
        os.kill(os.getpid(), signal.SIGTERM)
      calls.append(1)
      return evaluate(variables)

    return evaluate_and_get_preempted

  monkeypatch.setattr(loop, "build_evaluators", evaluators_that_get_preempted)
  config = tiny_config(8)
  config.eval_every_steps = 2
  config.log_every_steps = 1
  with caplog.at_level("INFO"):
    stopped = train_and_evaluate(config, str(tmp_path))
  assert stopped["stopped_by"] == "SIGTERM" and 2 < stopped["step"] < 8
  assert checkpoint.checkpoint_manager(str(tmp_path)).latest_step() == stopped["step"]
  # Rates and ETAs leave the compiling first step out (it is logged on its own).
  assert "First step done in" in caplog.text
  first_line = next(line for line in caplog.text.splitlines() if "step 1/8" in line)
  assert "ETA" not in first_line and "the first one compiled" in first_line
  assert re.search(r"step 2/8 .* img/s ETA", caplog.text)

  monkeypatch.setattr(loop, "build_evaluators", build_evaluators)
  resumed = train_and_evaluate(config, str(tmp_path))
  assert resumed["stopped_by"] is None and resumed["step"] == 8


def test_signal_during_the_final_save_leaves_the_final_evaluation_to_the_rerun(
    tmp_path, monkeypatch
):
  from train import loop

  make_manager = checkpoint.checkpoint_manager

  def manager_preempted_at_the_last_save(*args, **kwargs):
    manager = make_manager(*args, **kwargs)
    save = manager.save

    def save_then_signal(step, *save_args, **save_kwargs):
      saved = save(step, *save_args, **save_kwargs)
      if step == 3:
        os.kill(os.getpid(), signal.SIGTERM)
      return saved

    manager.save = save_then_signal
    return manager

  monkeypatch.setattr(loop.checkpoint, "checkpoint_manager", manager_preempted_at_the_last_save)
  config = tiny_config(3)
  config.checkpoint_every_steps = 100
  stopped = train_and_evaluate(config, str(tmp_path))
  assert stopped["stopped_by"] == "SIGTERM" and stopped["step"] == 3
  assert "eval_top1" not in stopped  # the final evaluation was not started
  monkeypatch.setattr(loop.checkpoint, "checkpoint_manager", make_manager)
  done = train_and_evaluate(config, str(tmp_path))
  assert done["stopped_by"] is None and done["step"] == 3 and 0.0 <= done["eval_top1"] <= 1.0


def mounted_tmpfs(point, size):
  """A tmpfs of `size` (mount's notation) at `point`; skips where mounting is not allowed."""
  point.mkdir(parents=True)
  if subprocess.run(
      ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
      capture_output=True,
      check=False,
  ).returncode:
    pytest.skip("mounting a tmpfs needs privileges this machine does not give")
  return point


@pytest.fixture
def small_filesystem(tmp_path):
  """A workdir whose checkpoints directory is a 64 MB tmpfs of its own, which a test can turn
  read-only or fill: the run keeps its TensorBoard file open for writing elsewhere in the
  workdir, and a file open for writing makes a file system refuse to turn read-only (EBUSY)."""
  workdir = mounted_tmpfs(tmp_path / "mnt", "64m") / "run"
  checkpoints = mounted_tmpfs(workdir / "checkpoints", "64m")
  yield workdir
  for point in (checkpoints, workdir.parent):
    subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def test_a_full_disk_ends_main_in_its_error_not_in_a_flood_of_tracebacks(tmp_path):
  # 1 MB holds the run's small files but not the first checkpoint (1.3 MB at width 1/8).
  point = mounted_tmpfs(tmp_path / "mnt", "1m")
  try:
    done = run_main(
        "--config=configs/digits.py",
        f"--workdir={point / 'run'}",
        "--config.model.width=0.125",
        "--config.batch_size=16",
        "--config.num_train_steps=4",
        "--config.checkpoint_every_steps=2",
        "--config.compilation_cache=off",
        compile_fast=True,
    )
  finally:
    subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
  assert done.returncode == 1, done.stderr[-3000:]
  # The run's one-line error; not always the very last line: a write thread of orbax can still
  # log its own failure while the interpreter exits (seen in 1 of 3 runs).
  error = f"error: Could not write checkpoint {point}/run/checkpoints/2"
  assert any(line.startswith(error) for line in done.stderr.splitlines()), done.stderr[-3000:]
  # Before: one 'RuntimeError: Event loop is closed' traceback per array still being written
  # (528; 3,602 lines of output). Now orbax's own error logs and the run's remain (6 tracebacks
  # on a quiet machine, 35 under the suite's load: how many write threads fail varies).
  assert "RuntimeError: Event loop is closed" not in done.stderr


def fill(directory):
  """Writes zeros into `directory` until its file system has no space left."""
  with open(os.path.join(directory, "filler"), "wb") as f:
    try:
      while True:
        f.write(b"\0" * (1 << 20))
        f.flush()
    except OSError:
      pass


def make_read_only(point):
  # A remount fails (EBUSY) while a write is in progress on the file system, e.g. a
  # TensorBoard flush in the background, so it is retried until the hang guard (a loaded
  # machine can take long to finish a write).
  deadline = time.monotonic() + HANG_GUARD_SECONDS
  while time.monotonic() < deadline:
    if (
        subprocess.run(
            ["mount", "-o", "remount,ro", str(point)], capture_output=True, check=False
        ).returncode
        == 0
    ):
      return
    time.sleep(0.1)
  raise RuntimeError(f"could not remount {point} read-only")


@pytest.mark.parametrize("spoil", [make_read_only, fill], ids=["read_only", "full"])
def test_unwritable_disk_at_checkpoint_time_names_the_directory_and_keeps_the_last(
    small_filesystem, monkeypatch, spoil
):
  from train import loop

  workdir = small_filesystem
  spoiled = workdir / "checkpoints"
  make_manager = checkpoint.checkpoint_manager

  def manager_whose_disk_turns_read_only(*args, **kwargs):
    manager = make_manager(*args, **kwargs)
    save = manager.save

    def save_on_a_read_only_disk(step, *save_args, **save_kwargs):
      if step == 4:
        manager.wait_until_finished()  # step 2 is complete, as it would be by then
        spoil(spoiled)
      return save(step, *save_args, **save_kwargs)

    manager.save = save_on_a_read_only_disk
    return manager

  monkeypatch.setattr(loop.checkpoint, "checkpoint_manager", manager_whose_disk_turns_read_only)
  config = tiny_config(6)
  config.checkpoint_every_steps = 2
  with pytest.raises(
      OSError,
      match=rf"checkpoint {workdir}/checkpoints/4 .*"
      rf"The last complete checkpoint is {workdir}/checkpoints/2",
  ):
    train_and_evaluate(config, str(workdir))
  monkeypatch.setattr(loop.checkpoint, "checkpoint_manager", make_manager)
  subprocess.run(["mount", "-o", "remount,rw", str(spoiled)], check=True)
  if os.path.exists(spoiled / "filler"):
    os.remove(spoiled / "filler")
  assert checkpoint.checkpoint_manager(str(workdir)).latest_step() == 2
  variables, _ = artifacts.load_model_variables(str(workdir), step=2)
  assert jax.tree.leaves(variables)
