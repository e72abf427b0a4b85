"""XLA's direct 3x3 convolution against Winograd F(2x2,3x3) and F(4x4,3x3) at GoogLeNet's shapes.

    python -m benchmarks.conv_algorithms
    python -m benchmarks.conv_algorithms --layers=conv2,inception_3b --tiles=4 --batch=32

The question: can a convolution with fewer multiplications (benchmarks/winograd.py) beat the
direct convolution that XLA:CPU already runs at its matmul peak? Prints one JSON line per layer
with, in ms (medians; compiled with the training step's CPU options,
`train/compiler_options.py`, as in training):
  * `direct_fwd`, `direct_fwd_bwd`: lax.conv_general_dilated, forward and forward plus both
    gradients (input and kernel);
  * per tile size m: `winograd{m}_fwd`, `winograd{m}_fwd_bwd`, and the forward's stages apart:
    `_input_transform`, `_tile_products` (the batched matmul, with its GFLOP and GFLOP/s) and
    `_output_transform`; `_max_rel_error` against the direct convolution's output.
"""

from __future__ import annotations

import json

from absl import app, flags

from benchmarks import timing, winograd

# (height = width, C_in, C_out) of GoogLeNet's 3x3 convolutions (paper Table 1).
LAYERS = {
    "conv2": (56, 64, 192),
    "inception_3a": (28, 96, 128),
    "inception_3b": (28, 128, 192),
    "inception_4d": (14, 144, 288),
    "inception_4e": (14, 160, 320),
    "inception_5b": (7, 192, 384),
}

flags.DEFINE_list("layers", list(LAYERS), f"Layers to time, of {list(LAYERS)}.")
flags.DEFINE_list("tiles", [str(m) for m in winograd.TILE_SIZES], "Winograd output tiles m.")
flags.DEFINE_integer("batch", 32, "Batch size.")
flags.DEFINE_integer("reps", 5, "Timed calls per measurement.")
FLAGS = flags.FLAGS


def median_ms(function, *args, reps: int) -> float:
  import jax

  return round(timing.median_seconds(lambda: jax.block_until_ready(function(*args)), reps) * 1e3, 1)


def measure_layer(
    batch: int, size: int, c_in: int, c_out: int, tiles: list[int], reps: int
) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from train import compiler_options

  options = compiler_options.train_step_options()

  def jit(function):
    return jax.jit(function, compiler_options=options)

  def with_gradients(convolution):
    def run(x, kernel, cotangent):
      _, vjp = jax.vjp(convolution, x, kernel)
      return vjp(cotangent)

    return run

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, size, size, c_in), np.float32))
  kernel = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out), np.float32) / np.sqrt(9 * c_in))
  cotangent = jnp.asarray(rng.standard_normal((batch, size, size, c_out), np.float32))
  direct = jit(winograd.direct_conv3x3)
  reference = direct(x, kernel)
  result = {
      "direct_gflop_fwd": round(2 * batch * size * size * 9 * c_in * c_out / 1e9, 2),
      "direct_fwd": median_ms(direct, x, kernel, reps=reps),
      "direct_fwd_bwd": median_ms(
          jit(with_gradients(winograd.direct_conv3x3)), x, kernel, cotangent, reps=reps
      ),
  }
  tile_products = jit(winograd.tile_products)
  for m in tiles:

    def convolution(x, kernel, m=m):
      return winograd.winograd_conv3x3(x, kernel, m)

    forward = jit(convolution)
    input_transform = jit(lambda x, m=m: winograd.input_transform(x, m))
    output_transform = jit(lambda p, m=m: winograd.output_transform(p, x.shape[:3], m))
    v = input_transform(x)
    u = jit(lambda k, m=m: winograd.kernel_transform(k, m))(kernel)
    products = tile_products(v, u)
    gemm_gflop = 2 * v.shape[0] * v.shape[1] * c_in * c_out / 1e9
    gemm_ms = median_ms(tile_products, v, u, reps=reps)
    error = jnp.max(jnp.abs(forward(x, kernel) - reference)) / jnp.max(jnp.abs(reference))
    prefix = f"winograd{m}_"
    result.update(
        {
            prefix + "fwd": median_ms(forward, x, kernel, reps=reps),
            prefix
            + "fwd_bwd": median_ms(
                jit(with_gradients(convolution)), x, kernel, cotangent, reps=reps
            ),
            prefix + "input_transform": median_ms(input_transform, x, reps=reps),
            prefix + "tile_products": gemm_ms,
            prefix + "tile_products_gflop": round(gemm_gflop, 2),
            prefix + "tile_products_gflops_per_sec": round(gemm_gflop / gemm_ms * 1e3, 1),
            prefix + "output_transform": median_ms(output_transform, products, reps=reps),
            prefix + "max_rel_error": float(f"{float(error):.2g}"),
        }
    )
  return result


def main(argv):
  del argv
  import jax

  unknown = sorted(set(FLAGS.layers) - set(LAYERS))
  if unknown:
    raise app.UsageError(f"unknown --layers {unknown}; choose from {list(LAYERS)}")
  unsupported = sorted(set(FLAGS.tiles) - {str(m) for m in winograd.TILE_SIZES})
  if unsupported:  # before any compilation
    raise app.UsageError(
        f"unsupported --tiles {unsupported}; choose from {list(winograd.TILE_SIZES)}"
    )
  tiles = [int(m) for m in FLAGS.tiles]
  for name in FLAGS.layers:
    size, c_in, c_out = LAYERS[name]
    row = {
        "benchmark": "conv_algorithms",
        "layer": name,
        "batch": FLAGS.batch,
        "shape_hw_cin_cout": [size, c_in, c_out],
        "backend": jax.default_backend(),
    }
    row.update(measure_layer(FLAGS.batch, size, c_in, c_out, tiles, FLAGS.reps))
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  from runtime import launch

  launch.reexec_with_allocator_settings()  # as in training: huge-page buffers
  app.run(main)
