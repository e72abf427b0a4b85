"""Process start-up, the same in every binary that runs JAX beside tf.data.

Multi-host: `start_jax_process(distributed=True)` joins JAX's multi-controller runtime with
`jax.distributed.initialize()`. On TPU pods, SLURM and Open MPI JAX finds the coordinator, the
process count and this process's id itself. Anywhere else, name them in the environment:

    JAX_COORDINATOR_ADDRESS=10.0.0.1:1234   # host:port of process 0 (JAX reads it itself)
    JAX_NUM_PROCESSES=4                     # read here and passed on
    JAX_PROCESS_ID=0..3                     # read here and passed on
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging
import jax

from runtime import lost_host

NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"


def explicit_cluster(environ=os.environ) -> dict[str, int]:
  """{'num_processes', 'process_id'} from the environment, {} when neither is set."""
  raw = {name: environ.get(name) for name in (NUM_PROCESSES_ENV, PROCESS_ID_ENV)}
  given = {name: value for name, value in raw.items() if value not in (None, "")}
  if not given:
    return {}
  if len(given) == 1:
    missing = (set(raw) - set(given)).pop()
    raise ValueError(
        f"{next(iter(given))} is set but {missing} is not: set both (with "
        f"{COORDINATOR_ENV}=host:port of process 0) or neither."
    )
  try:
    count, index = int(given[NUM_PROCESSES_ENV]), int(given[PROCESS_ID_ENV])
  except ValueError:
    raise ValueError(
        f"{NUM_PROCESSES_ENV}={given[NUM_PROCESSES_ENV]!r} and {PROCESS_ID_ENV}="
        f"{given[PROCESS_ID_ENV]!r} must be integers."
    ) from None
  if count < 1 or not 0 <= index < count:
    raise ValueError(f"{PROCESS_ID_ENV}={index} must be in [0, {NUM_PROCESSES_ENV}={count}).")
  if not environ.get(COORDINATOR_ENV):
    raise ValueError(
        f"{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} are set but "
        f"{COORDINATOR_ENV} is not: set it to host:port of process 0."
    )
  return {"num_processes": count, "process_id": index}


def initialize_distributed(
    environ=os.environ, lost_host_seconds: float = lost_host.DEFAULT_SECONDS
) -> None:
  """jax.distributed.initialize() with the explicit cluster of the environment, if any, and
  a watch that ends this process plainly once another one is lost (runtime/lost_host.py)."""
  # Cross-process collectives on XLA:CPU need a CPU collectives implementation; gloo (over
  # TCP) is JAX 0.10's default, named here so an older or newer default cannot silently turn
  # multi-process CPU runs into process-local ones. GPU and TPU clients ignore the setting.
  if not environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      **explicit_cluster(environ),
      heartbeat_timeout_seconds=lost_host.jax_heartbeat_timeout(lost_host_seconds),
  )
  _use_coordination_service_barriers()
  lost_host.watch_peers(lost_host_seconds)


def _use_coordination_service_barriers() -> None:
  """orbax's checkpoint barriers through the coordination service, not XLA collectives.

  By default orbax synchronises processes with `sync_global_devices`, a collective program,
  and runs it from its asynchronous-save thread. That program then races the training step's
  collectives on the main thread, in an order that differs between processes: with a
  checkpoint at step 2 followed by an evaluation, 2 CPU processes (gloo) hung in 1 of 1
  tries. orbax's distributed barrier uses the coordination service instead.
  """

  name = "experimental_orbax_use_distributed_barrier"
  if name in flags.FLAGS:
    flags.FLAGS[name].value = True
    flags.FLAGS[name].present = 1


def compilation_cache_dir(setting: str, environ=os.environ) -> str | None:
  """Where JAX's persistent compilation cache lives for `config.compilation_cache`.

  'auto': $XDG_CACHE_HOME/googlenet_jax/xla (default ~/.cache/...), shared by every run on
  the machine, so a resumed job, a re-run or a restarted Colab runtime skips XLA compilation;
  'off': no cache; anything else: that directory.
  """
  if setting == "off":
    return None
  if setting == "auto":
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "googlenet_jax", "xla")
  return os.path.abspath(os.path.expanduser(setting))


def enable_compilation_cache(setting: str) -> str | None:
  """Turns JAX's persistent compilation cache on; returns its directory, or None when off.

  A directory that cannot be created or written (a read-only $HOME, common for batch jobs)
  costs only the compile time the cache would have saved: a warning names it and the run
  goes on without a cache.
  """
  directory = compilation_cache_dir(setting)
  if directory is None:
    return None
  try:
    os.makedirs(directory, exist_ok=True)
    if not os.access(directory, os.W_OK):
      raise PermissionError(f"{directory} is not writable")
  except OSError as error:
    logging.warning(
        "No persistent compilation cache: %s cannot be used (%s). Every program compiles "
        "afresh; give a writable directory with --config.compilation_cache=DIR, or "
        "--config.compilation_cache=off to silence this.",
        directory,
        error,
    )
    return None
  jax.config.update("jax_compilation_cache_dir", directory)
  # JAX's defaults skip programs that compile in under a second; cache everything the
  # binaries compile (init, train and eval steps), small entries included.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  _write_cpu_cache_entries_from_every_process()
  return directory


def _write_cpu_cache_entries_from_every_process() -> None:
  """Lets every process of a multi-process XLA:CPU job write its own cache entries.

  JAX (0.10) writes persistent cache entries from process 0 only, which is right where every
  process computes the same key (TPU and GPU: a shared file must not be written by all). On
  XLA:CPU the key includes a topology fingerprint that differs per process, so the others'
  entries were never written: on a warm restart process 0 loaded its programs in seconds while
  process 1 compiled them for minutes, and process 0 met the first collective alone until gloo
  gave up (30 s, not configurable). Here processes other than 0 write their entries too, under
  their own keys (distinct files, so no write contention), and a warm restart is warm on
  every process. If JAX's internals change, the cache still works as JAX ships it.
  """
  try:
    from jax._src import compilation_cache, compiler, distributed
  except ImportError:
    return
  jax_write = getattr(compiler, "_cache_write", None)
  if jax_write is None or getattr(jax_write, "every_process", False):
    return

  def cache_write(cache_key, compile_time_secs, module_name, backend, executable, host_callbacks):
    if distributed.global_state.process_id == 0 or getattr(backend, "platform", "") != "cpu":
      return jax_write(
          cache_key, compile_time_secs, module_name, backend, executable, host_callbacks
      )
    if host_callbacks:  # baked into the program: JAX never caches these
      return None
    if compile_time_secs < jax.config.jax_persistent_cache_min_compile_time_secs:
      return None
    try:
      compilation_cache.put_executable_and_time(
          cache_key, module_name, executable, backend, int(compile_time_secs)
      )
    except Exception as error:  # as JAX's own writer: a failed write costs only time
      logging.warning("Could not write the compilation cache entry of %s: %s", module_name, error)
    return None

  cache_write.every_process = True
  compiler._cache_write = cache_write


class _DropOrbaxInfo(logging.logging.Filter):

  def filter(self, record):
    return record.levelno > logging.logging.INFO or "/orbax/" not in record.pathname


def quiet_orbax_info_logs() -> None:
  """orbax logs a dozen INFO lines per checkpoint; keep its warnings, drop the chatter."""
  logging.get_absl_handler().addFilter(_DropOrbaxInfo())


def _is_late_callback_error(error: BaseException | None) -> bool:
  return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def drop_late_callbacks_into_closed_event_loops() -> None:
  """One warning instead of a traceback per array when a checkpoint write fails.

  orbax writes each checkpoint on an asyncio event loop of its own and closes it when the
  write fails (a full or read-only disk); TensorStore then completes the other arrays' writes
  into the closed loop, and Python prints each as an ignored `RuntimeError: Event loop is
  closed` with its traceback: 528 of them for a width-1/8 model on a full disk, burying the
  one error that says what happened (which train/loop.py reports). Every other unraisable
  exception goes to the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, "drops_late_callbacks", False):
    return
  dropped = []

  def hook(unraisable):
    if not _is_late_callback_error(unraisable.exc_value):
      previous(unraisable)
      return
    if not dropped:
      logging.warning(
          "Writes of an abandoned checkpoint kept completing into its closed event loop; "
          "their 'Event loop is closed' errors are not shown (the write's own error is)."
      )
    dropped.append(1)

  hook.drops_late_callbacks = True
  sys.unraisablehook = hook


def hide_accelerators_from_tensorflow() -> None:
  """tf.data runs on the host; TensorFlow must not claim the accelerators JAX uses."""
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")


def start_jax_process(
    distributed: bool,
    compilation_cache: str = "off",
    lost_host_seconds: float = lost_host.DEFAULT_SECONDS,
) -> None:
  """Joins the multi-host runtime if asked, keeps TensorFlow off the accelerators, logs devices.

  Also quiets orbax's per-checkpoint INFO lines.

  `compilation_cache` is `config.compilation_cache` ('auto', 'off' or a directory);
  `lost_host_seconds` is `config.lost_host_seconds`.
  """
  quiet_orbax_info_logs()
  drop_late_callbacks_into_closed_event_loops()
  if distributed:
    initialize_distributed(lost_host_seconds=lost_host_seconds)
  cache = enable_compilation_cache(compilation_cache)
  if cache:
    logging.info(
        "Persistent compilation cache: %s (--config.compilation_cache=off disables it)", cache
    )
  hide_accelerators_from_tensorflow()
  logging.info(
      "JAX process %d of %d, %d local / %d global devices (%s)",
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
      jax.devices()[0].device_kind,
  )
