"""Training-step and inference throughput of GoogLeNet, optionally against torchvision's.

    python -m benchmarks.throughput --variant=torchvision --mode=train --batch=32 --steps=20
    python -m benchmarks.throughput --variant=torchvision --mode=infer --peer=torchvision

Prints one JSON line: images/sec in steady state (batch / median step time, compilation and
`--warmup` steps excluded), the step time's median, p10 and p90 in ms, compile seconds, the
step's FLOPs from XLA's cost analysis and the achieved FLOP/s, utilisation against the
device's peak (benchmarks/peaks.py on GPU/TPU; XLA's measured matmul peak on CPU), the
device kind, and the 1-minute load average before and after (the machine may be shared).
Runs on any backend: on a GPU or TPU, `--dtype=bfloat16 --batch=256` is the usual setting.

What is timed for ours:
  * train: the real training step, `train.step.make_train_step` with the real optimizer
    (`train.optim.create_optimizer`: momentum SGD, weight decay on weights, 2x bias lr) of
    `configs/googlenet.py`: forward with both auxiliary heads (weight 0.3), backward, update,
    Polyak EMA of the parameters and the step's metrics. jit with the state donated, as in
    `train/loop.py`. The batch is already on the device (the input pipeline is measured by
    `benchmarks.input_pipeline`).
  * infer: `model.apply(variables, images, train=False).logits` under jit: float32 logits.

`--peer=torchvision` runs `torchvision.models.googlenet` in the same process, alternating one
step of each, so both see the same machine load:
  * train: model.train(), aux_logits=True when our variant has aux heads (loss = main +
    0.3 x each aux loss, as ours), SGD momentum 0.9 with weight decay 2e-4 (torch decays
    biases too), plus an EMA of the parameters (torch._foreach_lerp_) to match ours.
    transform_input=False.
  * infer: model.eval() under torch.inference_mode().
  * memory format channels_last by default (torch's fastest on CPU), `--peer_layout=nchw`.
  * `--dtype=bfloat16`: the peer runs under torch.autocast("cpu", bfloat16), torch's mixed
    precision, as ours computes in bfloat16 with float32 parameters.
torch and torchvision are benchmark-only dependencies: `pip install -r benchmarks/requirements.txt`.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import json
import os
import time

from absl import app, flags

flags.DEFINE_string("variant", "torchvision", "Model variant: paper, bn or torchvision.")
flags.DEFINE_enum("mode", "train", ["train", "infer"], "Training step or inference forward.")
flags.DEFINE_integer("batch", 32, "Batch size (ours and the peer's).")
flags.DEFINE_integer("image_size", 224, "Square input size.")
flags.DEFINE_integer("num_classes", 1000, "Classifier outputs.")
flags.DEFINE_integer("steps", 20, "Timed steps (each framework).")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation (each framework).")
flags.DEFINE_string("dtype", "float32", "config.model.dtype for ours (float32 or bfloat16).")
flags.DEFINE_enum("peer", "none", ["none", "torchvision"], "Also run this peer, alternating.")
flags.DEFINE_enum(
    "peer_layout", "channels_last", ["channels_last", "nchw"], "Memory format of the torch peer."
)
flags.DEFINE_boolean(
    "cpu_fast_paths",
    True,
    "Use the CPU max-pool VJP, matmul 1x1 "
    "convolutions and training compiler options (kernels/max_pool.py, "
    "kernels/conv1x1.py, train/compiler_options.py); false measures XLA's "
    "defaults for a before/after comparison. The fused BatchNorm+ReLU "
    "(kernels/batch_norm_relu.py) is not CPU-specific and stays on.",
)
flags.DEFINE_integer(
    "peer_threads", 0, "torch.set_num_threads; 0 keeps torch's default " "(the number of cores)."
)
flags.DEFINE_integer(
    "peak_gemm_reps",
    5,
    "On CPU: timed calls per shape when measuring XLA's "
    "matmul peak for the utilisation figure; 0 skips it.",
)
FLAGS = flags.FLAGS

Step = Callable[[], None]


def utilisation(
    flops_per_step: float,
    step_seconds: float,
    device_kind: str,
    backend: str,
    dtype: str,
    gemm_reps: int,
) -> dict:
  """Achieved FLOP/s and its share of the device's peak (benchmarks/peaks.py).

  Accelerators: the vendor's dense bfloat16 peak per chip (a float32 step is still set
  against it, as TF32/bf16 units are what it could use). CPU: XLA's measured matmul peak
  in `dtype` (benchmarks/peaks.py), taken after the timed steps.
  """
  from benchmarks import peaks

  achieved = flops_per_step / step_seconds
  result = {"achieved_tflops_per_sec": round(achieved / 1e12, 4)}
  if backend == "cpu":
    if gemm_reps <= 0:
      return result
    peak = peaks.xla_gemm_gflops(dtype, gemm_reps) * 1e9
    source = f"XLA matmul peak measured here ({dtype})"
  else:
    known = peaks.peak_for(device_kind)
    if known is None:
      result["peak_source"] = f"no peak known for {device_kind!r} (benchmarks/peaks.py)"
      return result
    peak, source = known
  result.update(
      {
          "peak_tflops_per_sec": round(peak / 1e12, 4),
          "peak_source": source,
          "utilisation": round(achieved / peak, 4),
      }
  )
  return result


def build_ours(
    variant: str,
    mode: str,
    batch: int,
    image_size: int,
    num_classes: int,
    dtype: str,
    cpu_fast_paths: bool = True,
) -> tuple[Step, float, float]:
  """A closure running one synchronous step of ours, the compile+first-run seconds, and the
  step's floating-point operations as XLA's cost analysis counts them."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from configs import googlenet
  from inception import create_model
  from train import compiler_options
  from train.optim import create_optimizer
  from train.schedule import create_learning_rate_fn
  from train.state import create_train_state
  from train.step import make_train_step

  config = googlenet.get_config()
  model = create_model(
      variant, num_classes=num_classes, dtype=dtype, kernels="auto" if cpu_fast_paths else "xla"
  )
  rng = jax.random.key(0)
  init_rng, dropout_rng = jax.random.split(rng)
  shape = (batch, image_size, image_size, 3)
  images = jnp.asarray(np.random.default_rng(0).standard_normal(shape, np.float32))
  labels = jnp.asarray(np.random.default_rng(1).integers(0, num_classes, batch), jnp.int32)
  variables = jax.jit(lambda r: model.init({"params": r, "dropout": r}, images[:1], train=False))(
      init_rng
  )

  if mode == "train":
    learning_rate_fn = create_learning_rate_fn(config, num_train_examples=1_281_167)
    tx = create_optimizer(config, learning_rate_fn)
    state = create_train_state(variables, tx)
    options = compiler_options.train_step_options() if cpu_fast_paths else None
    batch_dict = {"image": images, "label": labels}
    start = time.perf_counter()
    train_step = (
        jax.jit(
            make_train_step(model, tx, learning_rate_fn, config),
            donate_argnums=(0,),
            compiler_options=options,
        )
        .lower(state, batch_dict, dropout_rng)
        .compile()
    )
    holder = {"state": state}

    def step() -> None:
      holder["state"], metrics = train_step(holder["state"], batch_dict, dropout_rng)
      jax.block_until_ready(metrics)

  else:
    start = time.perf_counter()
    forward = (
        jax.jit(lambda v, x: model.apply(v, x, train=False).logits)
        .lower(variables, images)
        .compile()
    )

    def step() -> None:
      jax.block_until_ready(forward(variables, images))

  compiled = train_step if mode == "train" else forward
  step()
  return step, time.perf_counter() - start, compiled_flops(compiled)


def compiled_flops(compiled) -> float:
  """Floating-point operations of one call, from XLA's cost analysis of the compiled program."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per device program
    analysis = analysis[0]
  return float(analysis["flops"])


def build_torch_peer(
    variant_has_aux: bool,
    mode: str,
    batch: int,
    image_size: int,
    num_classes: int,
    layout: str,
    threads: int,
    dtype: str = "float32",
) -> tuple[Step, dict]:
  try:
    import torch
    import torchvision
  except ImportError as error:
    raise SystemExit(
        f"--peer=torchvision needs torch and torchvision ({error}). They are benchmark-only "
        "dependencies: pip install -r benchmarks/requirements.txt (a separate virtualenv "
        "keeps the project's own torch pin untouched)."
    ) from None
  if threads:
    torch.set_num_threads(threads)
  aux = variant_has_aux and mode == "train"
  model = torchvision.models.googlenet(
      weights=None,
      aux_logits=aux,
      init_weights=True,
      transform_input=False,
      num_classes=num_classes,
  )
  images = torch.randn(batch, 3, image_size, image_size)
  labels = torch.randint(0, num_classes, (batch,))
  if layout == "channels_last":
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)

  def precision():
    # Our bfloat16 is compute dtype with float32 parameters: torch's counterpart is autocast.
    if dtype == "bfloat16":
      return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()

  info = {
      "peer": "torchvision.googlenet",
      "peer_layout": layout,
      "peer_aux_logits": aux,
      "peer_autocast": dtype if dtype != "float32" else None,
      "peer_threads": torch.get_num_threads(),
      "torch": torch.__version__,
      "torchvision": torchvision.__version__,
  }

  if mode == "train":
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=2e-4)
    ema = [p.detach().clone() for p in params]
    criterion = torch.nn.CrossEntropyLoss()

    def step() -> None:
      optimizer.zero_grad(set_to_none=True)
      with precision():
        outputs = model(images)
        if aux:
          loss = criterion(outputs.logits, labels) + 0.3 * (
              criterion(outputs.aux_logits1, labels) + criterion(outputs.aux_logits2, labels)
          )
        else:
          loss = criterion(outputs if torch.is_tensor(outputs) else outputs.logits, labels)
      loss.backward()
      optimizer.step()
      with torch.no_grad():
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1e-4)
      float(loss)

  else:
    model.eval()

    def step() -> None:
      with torch.inference_mode(), precision():
        model(images)

  return step, info


def time_alternating(
    steps: list[tuple[str, Step]], warmup: int, timed: int
) -> dict[str, list[float]]:
  """Seconds of each of `timed` calls per named step, the steps taking turns so that all of
  them see the same machine load (this VM's speed drifts by 20-30% within an hour)."""
  for _ in range(warmup):
    for _, run in steps:
      run()
  times = {name: [] for name, _ in steps}
  for _ in range(timed):
    for name, run in steps:
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return times


def summarise(times: list[float], batch: int, prefix: str = "") -> dict:
  import numpy as np

  ms = np.asarray(times) * 1e3
  median = float(np.median(ms))
  return {
      f"{prefix}images_per_sec": round(batch / median * 1e3, 2),
      f"{prefix}step_ms_median": round(median, 1),
      f"{prefix}step_ms_p10": round(float(np.percentile(ms, 10)), 1),
      f"{prefix}step_ms_p90": round(float(np.percentile(ms, 90)), 1),
  }


def main(argv):
  del argv
  import jax

  from inception import create_model

  peer = None
  peer_info = {}
  if FLAGS.peer == "torchvision":
    has_aux = create_model(FLAGS.variant).aux_heads
    # Built before ours so that a missing torch fails fast, before any compilation.
    peer, peer_info = build_torch_peer(
        has_aux,
        FLAGS.mode,
        FLAGS.batch,
        FLAGS.image_size,
        FLAGS.num_classes,
        FLAGS.peer_layout,
        FLAGS.peer_threads,
        FLAGS.dtype,
    )
  load_before = os.getloadavg()[0]
  ours_step, compile_seconds, flops = build_ours(
      FLAGS.variant,
      FLAGS.mode,
      FLAGS.batch,
      FLAGS.image_size,
      FLAGS.num_classes,
      FLAGS.dtype,
      FLAGS.cpu_fast_paths,
  )
  times = time_alternating(
      [("", ours_step)] + ([("peer_", peer)] if peer else []), FLAGS.warmup, FLAGS.steps
  )

  ours = summarise(times[""], FLAGS.batch)
  result = {
      "benchmark": "throughput",
      "variant": FLAGS.variant,
      "mode": FLAGS.mode,
      "batch": FLAGS.batch,
      "image_size": FLAGS.image_size,
      "dtype": FLAGS.dtype,
      "steps": FLAGS.steps,
      "warmup": FLAGS.warmup,
      "cpu_fast_paths": FLAGS.cpu_fast_paths,
      **ours,
      "compile_sec": round(compile_seconds, 1),
      # What the step costs in arithmetic and the rate it ran at: benchmarks.roofline sets
      # these against the machine's matmul peak.
      "gflop_per_image": round(flops / FLAGS.batch / 1e9, 3),
      "gflops_per_sec": round(flops / 1e9 / (ours["step_ms_median"] / 1e3), 1),
      "device_kind": jax.devices()[0].device_kind,
      "backend": jax.default_backend(),
      "jax": jax.__version__,
      "cpus": os.cpu_count(),
  }
  result.update(
      utilisation(
          flops,
          ours["step_ms_median"] / 1e3,
          result["device_kind"],
          result["backend"],
          FLAGS.dtype,
          FLAGS.peak_gemm_reps,
      )
  )
  if peer:
    result.update(summarise(times["peer_"], FLAGS.batch, "peer_"))
    result.update(peer_info)
    result["ratio"] = round(result["images_per_sec"] / result["peer_images_per_sec"], 3)
  # Allocator settings change both frameworks' speed (runtime/launch.py): record them.
  result["glibc_tunables"] = os.environ.get("GLIBC_TUNABLES")
  result["load_avg_1min_before"] = round(load_before, 2)
  result["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  from runtime import launch

  launch.reexec_with_allocator_settings()  # XLA:CPU buffers without page faults
  app.run(main)
