"""Can a throughput target be reached at all on this machine? The step's FLOPs at matmul peak.

    python -m benchmarks.roofline --variant=torchvision --mode=train --peer=torchvision
    python -m benchmarks.roofline --variant=torchvision --mode=infer --peer=torchvision

A training step or forward pass can run no faster than its arithmetic at the best matmul rate
the machine reaches; everything else in it (BatchNorm, pooling, concatenation, the optimizer
update: memory-bound work) only adds time. This prints one JSON line with:
  * `gemm_gflops_per_sec`: the best median rate of XLA's matmul in `--dtype`, over a large
    square GEMM and GoogLeNet's own 1x1-convolution shapes, measured before and after the
    steps (the larger of the two: the machine's speed drifts);
  * `gflop_per_step`: the step's FLOPs, from XLA's cost analysis of our compiled step (the
    same program `benchmarks.throughput` times);
  * `floor_ms`: gflop_per_step / gemm rate, the step's time if every FLOP ran at that rate and
    nothing else took any;
  * our measured step, and with `--peer=torchvision` the peer's (alternating, as in
    `benchmarks.throughput`) and torch's own best matmul rate;
  * `target_ms` = the peer's step time / `--target_ratio`, and `floor_share_of_target` =
    floor_ms / target_ms. At 1 or above the target cannot be reached in this dtype on this
    machine by any implementation of the same network; below it, 1 - share of the target step
    is all that is left for the memory-bound work.
"""

from __future__ import annotations

import json

from absl import app, flags

from benchmarks import throughput
from benchmarks.peaks import GEMM_SHAPES, xla_gemm_gflops
from benchmarks.timing import median_seconds

flags.DEFINE_float("target_ratio", 1.5, "Our images/sec over the peer's that is asked for.")
flags.DEFINE_integer("gemm_reps", 10, "Timed calls per matmul shape.")
FLAGS = flags.FLAGS


def torch_gemm_gflops(dtype: str, reps: int) -> float:
  import torch

  m, k, n = GEMM_SHAPES[0]
  torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
  a = torch.ones(m, k, dtype=torch_dtype)
  b = torch.ones(k, n, dtype=torch_dtype)
  return 2 * m * k * n / median_seconds(lambda: a @ b, reps) / 1e9


def budget(
    gflop_per_step: float,
    gemm_gflops_per_sec: float,
    peer_step_ms: float | None,
    target_ratio: float,
) -> dict:
  """The FLOP floor of a step and, given the peer's step time, its share of the target."""
  floor_ms = gflop_per_step / gemm_gflops_per_sec * 1e3
  result = {"floor_ms": round(floor_ms, 1)}
  if peer_step_ms is not None:
    target_ms = peer_step_ms / target_ratio
    result.update(
        target_ms=round(target_ms, 1),
        floor_share_of_target=round(floor_ms / target_ms, 3),
        ms_left_for_memory_bound_work=round(target_ms - floor_ms, 1),
    )
  return result


def main(argv):
  del argv
  import jax

  peer = None
  peer_info = {}
  if FLAGS.peer == "torchvision":
    from inception import create_model

    peer, peer_info = throughput.build_torch_peer(
        create_model(FLAGS.variant).aux_heads,
        FLAGS.mode,
        FLAGS.batch,
        FLAGS.image_size,
        FLAGS.num_classes,
        FLAGS.peer_layout,
        FLAGS.peer_threads,
        FLAGS.dtype,
    )
  gemm_before = xla_gemm_gflops(FLAGS.dtype, FLAGS.gemm_reps)
  ours, _, flops = throughput.build_ours(
      FLAGS.variant,
      FLAGS.mode,
      FLAGS.batch,
      FLAGS.image_size,
      FLAGS.num_classes,
      FLAGS.dtype,
      FLAGS.cpu_fast_paths,
  )
  times = throughput.time_alternating(
      [("", ours)] + ([("peer_", peer)] if peer else []), FLAGS.warmup, FLAGS.steps
  )
  gemm_after = xla_gemm_gflops(FLAGS.dtype, FLAGS.gemm_reps)
  gemm = max(gemm_before, gemm_after)

  summary = throughput.summarise(times[""], FLAGS.batch)
  result = {
      "benchmark": "roofline",
      "variant": FLAGS.variant,
      "mode": FLAGS.mode,
      "batch": FLAGS.batch,
      "image_size": FLAGS.image_size,
      "dtype": FLAGS.dtype,
      "gemm_gflops_per_sec": round(gemm, 1),
      "gemm_gflops_per_sec_before_after": [round(gemm_before, 1), round(gemm_after, 1)],
      "gflop_per_step": round(flops / 1e9, 1),
      "step_ms_median": summary["step_ms_median"],
      "images_per_sec": summary["images_per_sec"],
  }
  peer_step_ms = None
  if peer:
    peer_summary = throughput.summarise(times["peer_"], FLAGS.batch, "peer_")
    peer_step_ms = peer_summary["peer_step_ms_median"]
    result.update(peer_summary)
    result["peer_gemm_gflops_per_sec"] = round(torch_gemm_gflops(FLAGS.dtype, FLAGS.gemm_reps), 1)
    result.update(peer_info)
  result["target_ratio"] = FLAGS.target_ratio
  result.update(budget(flops / 1e9, gemm, peer_step_ms, FLAGS.target_ratio))
  result["device_kind"] = jax.devices()[0].device_kind
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  from runtime import launch

  launch.reexec_with_allocator_settings()
  app.run(main)
