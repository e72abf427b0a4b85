"""train_and_evaluate: the whole run, from config to final checkpoint, resumable at any point.

One jit-compiled step over a mesh of every device ('data' axis): batches sharded, state
replicated and donated. The run resumes from the latest checkpoint in the workdir before
anything else, and the data order and dropout stream are functions of the step, so an
interrupted-and-resumed run ends with the parameters of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import json
import os
import signal
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from inception import create_model_from_config
import input_pipeline
from runtime import artifacts, lost_host, paths, progress
from runtime import mesh as mesh_lib
from train import checkpoint, compiler_options, curves, reporting, resume, schedule, tasks
from train.config import check_config
from train.evaluators import build_evaluators
from train.init_from import load_initial_variables
from train.optim import create_optimizer
from train.state import create_train_state
from train.step import make_train_step
from train.workdir_lock import WorkdirBusyError, WorkdirLock

# Exit status of a run stopped by SIGTERM/SIGINT after saving its checkpoint (sysexits.h
# EX_TEMPFAIL, "try again later"): not success, so schedulers requeue it; not 1, the status of
# an error, which would fail the same way again.
PREEMPTED_EXIT_CODE = 75


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (read-only or full disk); earlier ones are intact."""


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or inf; the last good checkpoint is kept."""


class _StopRequest:
  """Turns SIGTERM (preemption) and SIGINT (Ctrl-C) into a checkpoint-and-exit at a step end.

  The signal only sets a flag: when to stop is agreed by all processes (see `_StopVotes`).
  A second signal, while a stop is already pending, ends the process at once, after the
  `on_second_signal` calls (releasing the workdir lock, so that a rerun need not wait for it
  to go stale).
  """

  def __init__(self):
    self.signal_name: str | None = None
    self.first_step_done = False
    self.on_second_signal: list[Callable[[], None]] = []
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (e.g. some notebook runners): no handler
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signal_name is not None:
      for last_call in self.on_second_signal:
        try:
          last_call()
        except Exception as error:  # the process must still end at once
          logging.error("While stopping at once: %s", error)
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
      return
    self.signal_name = signal.Signals(signum).name
    logging.warning(
        "%s received: saving a checkpoint at a step all processes agree on, then "
        "stopping (a second signal stops at once, without saving).%s",
        self.signal_name,
        ""
        if self.first_step_done
        else " The run is still starting (XLA compiles the training step, which can take "
        "minutes): the checkpoint is written right after the first step.",
    )

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class _StopVotes:
  """Agrees across processes on the step at which to stop.

  Each step carries every device's vote (this process's stop flag) into the jitted step,
  which returns their maximum, replicated: identical on every process. The loop reads the
  result of step k - 1 after dispatching step k (so one step stays queued on the devices) and,
  if any process voted to stop, every process stops after step k and saves that step. A
  per-process decision would stop processes at different steps, one waiting in the
  checkpoint's barrier and the other in a collective, forever.
  """

  def __init__(self, mesh: jax.sharding.Mesh):
    self._sharding = mesh_lib.batch_sharding(mesh)
    self._local_devices = len(self._sharding.addressable_devices)
    self._previous: jax.Array | None = None
    self._any = jax.jit(jnp.any, out_shardings=mesh_lib.replicated(mesh))

  def ballot(self, stop: bool) -> jax.Array:
    return jax.make_array_from_process_local_data(
        self._sharding, np.full((self._local_devices,), stop, np.bool_)
    )

  def agree_now(self, stop: bool) -> bool:
    """Whether any process votes to stop at this point (every process must call it here)."""
    return bool(self._any(self.ballot(stop)))

  def agreed_after(self, result: jax.Array) -> bool:
    """True once the step before the one just dispatched returned a stop vote."""
    previous, self._previous = self._previous, result
    return previous is not None and bool(previous)


def _format_metrics(results: dict[str, float]) -> str:
  return " ".join(f"{name} {value:.4f}" for name, value in results.items() if name != "count")


class _PendingMetrics:
  """Per-step metrics stay on device until a log or checkpoint point needs them."""

  def __init__(self):
    self._steps: list[dict[str, jax.Array]] = []

  def add(self, metrics: dict[str, jax.Array]) -> None:
    self._steps.append(metrics)

  def drain(self, step: int, last_good_checkpoint: str) -> dict[str, float] | None:
    """Mean of the pending steps; raises NonFiniteLossError if any loss was NaN/inf."""
    if not self._steps:
      return None
    fetched = jax.device_get(self._steps)
    self._steps = []
    losses = np.array([m["loss"] for m in fetched])
    if not np.all(np.isfinite(losses)):
      bad = step - len(losses) + int(np.argmin(np.isfinite(losses))) + 1
      raise NonFiniteLossError(
          f"The training loss became {losses[~np.isfinite(losses)][0]} at step {bad}. "
          f"Stopped without saving; the last good checkpoint is {last_good_checkpoint}. "
          "Lower --config.base_learning_rate, enable --config.grad_clip_norm, or check the "
          "input data, then rerun with the same workdir to resume from that checkpoint."
      )
    return {name: float(np.mean([m[name] for m in fetched])) for name in fetched[0]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from `workdir` when it holds a checkpoint), evaluates, returns a summary.

  SIGTERM/SIGINT at any point, compilation included, end the run with a checkpoint.
  """
  check_config(config)
  # The data's mistakes (a missing dataset, a class count that does not match) stop the run
  # before its workdir, lock or checkpoint directory is made: a failed start leaves nothing.
  num_train = _checked_training_examples(config)
  with (
      _StopRequest() as stop,
      _hold_workdir(workdir) as lock,
      # Outside the manager: unwinding an error waits for the saves in flight, and a lost
      # peer can be what it waits for.
      lost_host.farewell(lambda: _lost_host_farewell(lock, workdir)),
      _open_manager(config, workdir) as manager,
  ):
    if lock is not None:
      stop.on_second_signal.append(lock.release)
    return _train_and_evaluate(config, workdir, stop, manager, num_train)


def _checked_training_examples(config: ml_collections.ConfigDict) -> int:
  """The training split's size, once the dataset is found and its classes match the model."""
  num_train = input_pipeline.num_examples(config.data, config.data.train_split)
  data_classes = input_pipeline.num_classes(config.data)
  if data_classes != config.model.num_classes:
    raise ValueError(
        f"config.model.num_classes={config.model.num_classes} but the dataset "
        f"{config.data.source!r} has {data_classes} classes; set "
        f"--config.model.num_classes={data_classes}."
    )
  return num_train


def _lost_host_farewell(lock: WorkdirLock | None, workdir: str) -> str:
  """Said by a survivor when another process of the job is lost (runtime/lost_host.py)."""
  if lock is not None:
    lock.release()
  directory = checkpoint.checkpoint_directory(workdir)
  last = checkpoint.describe_newest(directory, checkpoint.complete_steps(directory))
  return f"The last complete checkpoint is {last}; relaunch the job to resume from it."


@contextlib.contextmanager
def _open_manager(config: ml_collections.ConfigDict, workdir: str):
  manager = checkpoint.checkpoint_manager(workdir, max_to_keep=config.keep_checkpoints)
  try:
    yield manager
  except BaseException:
    _finish_saves(manager, raise_errors=False)  # the error in flight is the one to report
    raise
  _finish_saves(manager, raise_errors=True)


def _write_error(
    manager: ocp.CheckpointManager, steps: tuple[int | None, ...], error: Exception
) -> CheckpointWriteError:
  """Names the checkpoint that failed (the newest of `steps` not on disk) and the newest one
  that is complete, read from the disk: an asynchronous write of an earlier step can be the
  one that failed, reported by orbax only at the next save or wait."""
  done = checkpoint.complete_steps(manager.directory)
  failed = [step for step in steps if step is not None and step not in done]
  which = (
      f"checkpoint {manager.directory}/{failed[0]}"
      if failed
      else f"a checkpoint in {manager.directory}"
  )
  last = checkpoint.describe_newest(manager.directory, done)
  return CheckpointWriteError(
      f"Could not write {which} ({type(error).__name__}: {error}). The last complete "
      f"checkpoint is {last}. Free space or make the workdir writable, then run the same "
      "command again to resume."
  )


def _finish_saves(manager: ocp.CheckpointManager, raise_errors: bool) -> None:
  """Lets the saves in flight finish and closes the manager, on every exit (done, stopped,
  NaN, error), so the checkpoint a message names is on disk when the process ends."""
  try:
    manager.wait_until_finished()
    manager.close()
  except Exception as error:  # a failed asynchronous write
    if raise_errors:
      raise _write_error(manager, (), error) from error
    logging.error("Also, a checkpoint write in %s failed: %s", manager.directory, error)


@contextlib.contextmanager
def _hold_workdir(workdir: str):
  """The workdir lock (train/workdir_lock.py), held by process 0 for the whole job."""
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
  error = None
  if lock is not None:
    try:
      lock.acquire()
    except WorkdirBusyError as busy:
      error = busy
  if jax.process_count() > 1:  # every process stops if process 0 could not take the lock
    busy = bool(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if busy and error is None:
      error = WorkdirBusyError(f"{workdir} is in use by another run (see process 0's log).")
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()


def _train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    stop: _StopRequest,
    manager: ocp.CheckpointManager,
    num_train: int,
) -> dict[str, Any]:
  start_time = time.time()
  workdir = paths.absolute(workdir)
  if manager.all_steps():  # before any compilation: a foreign model fails in seconds
    resume.check_same_model(workdir, config.model.to_dict())
  mesh = mesh_lib.create_data_mesh()
  input_pipeline.per_host_batch_size(config.batch_size, jax.process_count(), jax.device_count())
  input_pipeline.per_host_batch_size(
      config.eval_batch_size, jax.process_count(), jax.device_count()
  )
  total_steps = schedule.total_train_steps(config, num_train)
  per_epoch = schedule.steps_per_epoch(num_train, config.batch_size)

  model = create_model_from_config(config.model)
  dtype_warning = compiler_options.compute_dtype_warning(config.model.dtype)
  if dtype_warning:
    logging.warning(dtype_warning)
  learning_rate_fn = schedule.create_learning_rate_fn(config, num_train)
  tx = create_optimizer(config, learning_rate_fn)
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  replicated = mesh_lib.replicated(mesh)
  size = config.data.image_size

  def init_state(rng):
    dummy = jax.numpy.zeros((1, size, size, 3), jax.numpy.float32)
    variables = model.init({"params": rng, "dropout": rng}, dummy, train=False)
    return create_train_state(variables, tx)

  platform = compiler_options.mesh_platform(mesh)
  state = jax.jit(
      init_state,
      out_shardings=replicated,
      compiler_options=compiler_options.init_options(platform),
  )(init_rng)
  latest = None
  if manager.all_steps():
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    restored, latest = resume.restore_newest_good(manager, abstract)
    if latest is not None:
      state = restored
      logging.info("Resumed from %s at step %d.", manager.directory, latest)
  if latest is None and config.init_from:
    state = load_initial_variables(state, config, tx, replicated)
  if jax.process_index() == 0:
    artifacts.write_model_config(workdir, config.model.to_dict())
    artifacts.write_input_convention(workdir, config.data.normalization)

  start_step = int(jax.device_get(state.step))
  step_fn = make_train_step(model, tx, learning_rate_fn, config)
  task = tasks.get_task(config.task)
  dropout_rng = jax.jit(lambda key: key, out_shardings=replicated)(dropout_rng)

  def step_and_vote(state, batch, ballot, dropout_rng):
    return (*step_fn(state, batch, dropout_rng), jnp.any(ballot))

  train_step = jax.jit(
      step_and_vote,
      donate_argnums=(0,),
      out_shardings=(replicated, replicated, replicated),
      compiler_options=compiler_options.train_step_options(platform),
  )
  votes = _StopVotes(mesh)
  evaluate = build_evaluators(tuple(config.evaluators), model, config, mesh)
  writer = reporting.MetricWriter(workdir)
  dataset = input_pipeline.create_train_dataset(
      config.data, config.batch_size, seed=config.seed, start_step=start_step
  )
  batches = input_pipeline.prefetch_to_mesh(dataset.as_numpy_iterator(), mesh)
  pending = _PendingMetrics()
  last_checkpoint = f"{manager.directory}/{latest}" if latest is not None else "none (no save yet)"
  step = start_step
  interval_start, interval_steps = time.time(), 0
  eval_results: dict[str, dict[str, float]] = {}
  stop_reason = None

  saved_step = latest

  def save(step: int) -> str:
    nonlocal saved_step
    pending.drain(step, last_checkpoint)  # never checkpoint parameters after a NaN
    # Skips a step already saved (a stop right after a periodic save; a finished run restarted).
    # Decided from this loop's own record, never from manager.latest_step(): that depends on
    # whether this process's asynchronous save has finished yet, so processes could disagree
    # and one would enter the save's barrier alone.
    if step != saved_step:
      try:
        manager.save(step, args=ocp.args.StandardSave(state), force=True)
      except Exception as error:  # orbax wraps OS errors variously
        # orbax reports a failed asynchronous write of the previous save here, at the next one.
        raise _write_error(manager, (saved_step, step), error) from error
      saved_step = step
    return f"{manager.directory}/{step}"

  def run_eval(step: int) -> None:
    for name, variables in (("eval", state.variables), ("eval_ema", state.ema_variables)):
      eval_results[name] = evaluate(variables)
      writer.write_scalars(
          step, {f"{name}/{k}": v for k, v in eval_results[name].items() if k != "count"}
      )
    logging.info(
        "eval at step %d: %s (EMA: %s) on %d images",
        step,
        _format_metrics(eval_results["eval"]),
        _format_metrics(eval_results["eval_ema"]),
        eval_results["eval"]["count"],
    )

  logging.info(
      "Training %s for %d steps (%.1f epochs of %d examples) on %d devices, global batch %d.",
      config.model.variant,
      total_steps,
      total_steps / per_epoch,
      num_train,
      jax.device_count(),
      config.batch_size,
  )
  bar = progress.progress_bar(total_steps, "training", initial=start_step)
  try:
    while step < total_steps:
      state, metrics, stop_vote = train_step(
          state, next(batches), votes.ballot(stop.signal_name is not None), dropout_rng
      )
      pending.add(metrics)
      step += 1
      bar.update(1)
      stop_agreed = votes.agreed_after(stop_vote)
      interval_steps += 1
      if not stop.first_step_done:
        # Rates and ETAs leave the first step out: it includes XLA's compilation.
        jax.block_until_ready(metrics)
        logging.info(
            "First step done in %.1f s (XLA compilation included).", time.time() - interval_start
        )
        stop.first_step_done = True
        interval_start, interval_steps = time.time(), 0
      if step % config.log_every_steps == 0 or step == total_steps:
        means = pending.drain(step, last_checkpoint)
        elapsed = time.time() - interval_start
        images_per_sec = interval_steps * config.batch_size / elapsed if interval_steps else None
        reporting.log_train_line(
            step,
            total_steps,
            step / per_epoch,
            means,
            images_per_sec,
            elapsed / interval_steps if interval_steps else None,
            task.headline,
        )
        bar.set_postfix_str(reporting.headline_text(means, task.headline))
        writer.write_scalars(
            step,
            {f"train/{k}": v for k, v in means.items()}
            | ({"train/images_per_sec": images_per_sec} if interval_steps else {}),
        )
        interval_start, interval_steps = time.time(), 0
      if step % config.checkpoint_every_steps == 0 and step < total_steps:
        last_checkpoint = save(step)
      if stop_agreed:
        stop_reason = stop.signal_name or "a signal to another process"
        break
      if config.eval_every_steps > 0 and step % config.eval_every_steps == 0 and step < total_steps:
        run_eval(step)
    last_checkpoint = save(step)
    try:
      manager.wait_until_finished()
    except Exception as error:  # the asynchronous write failed
      raise _write_error(manager, (saved_step,), error) from error
    if not stop_reason and votes.agree_now(stop.signal_name is not None):
      # A signal during the final save: the last step is saved, the final evaluation (minutes
      # on ImageNet, longer than a preemption's grace period) is left to the rerun.
      stop_reason = stop.signal_name or "a signal to another process"
    if stop_reason:
      logging.warning(
          "Stopped by %s at step %d; saved %s. Run the same command again to resume.",
          stop_reason,
          step,
          last_checkpoint,
      )
    else:
      run_eval(step)
  finally:
    bar.close()
    try:
      writer.close()
    except Exception as error:  # e.g. the disk became read-only
      logging.error("Closing the TensorBoard writer failed: %s", error)

  summary = {
      "step": step,
      "total_steps": total_steps,
      "stopped_by": stop_reason,
      "checkpoint": last_checkpoint,
      "wall_seconds": round(time.time() - start_time, 1),
      **{
          f"{name}_{metric}": value
          for name, values in eval_results.items()
          for metric, value in values.items()
          if metric not in ("count", "loss")
      },
      "eval_images": int(eval_results["eval"]["count"]) if eval_results else 0,
      "process_count": jax.process_count(),
  }
  if jax.process_index() == 0:
    paths.write_text(paths.join(workdir, "summary.json"), json.dumps(summary, indent=2))
    curves.write_training_curves(workdir)  # after the writer's close: every event is on disk
  if not stop_reason:
    logging.info(
        "Done: %s (EMA %s) after %d steps in %s; checkpoint %s",
        _format_metrics(eval_results["eval"]),
        _format_metrics(eval_results["eval_ema"]),
        step,
        progress.format_eta(summary["wall_seconds"]),
        last_checkpoint,
    )
  return summary
