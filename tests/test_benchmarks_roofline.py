"""The roofline benchmark's arithmetic: FLOPs from XLA's cost analysis and the target budget."""

import jax
import jax.numpy as jnp
import pytest

from benchmarks import roofline, throughput


def test_compiled_flops_counts_a_matmul():
  a = jnp.ones((8, 16))
  b = jnp.ones((16, 4))
  compiled = jax.jit(jnp.dot).lower(a, b).compile()
  assert throughput.compiled_flops(compiled) == pytest.approx(2 * 8 * 16 * 4)


def test_budget_sets_the_flop_floor_against_the_target():
  # 300 GFLOP at 400 GFLOP/s is 750 ms; a peer at 1200 ms and a 1.5x target leave 800 ms.
  result = roofline.budget(300.0, 400.0, peer_step_ms=1200.0, target_ratio=1.5)
  assert result == {
      "floor_ms": 750.0,
      "target_ms": 800.0,
      "floor_share_of_target": 0.938,
      "ms_left_for_memory_bound_work": 50.0,
  }


def test_budget_without_a_peer_is_only_the_floor():
  assert roofline.budget(100.0, 200.0, peer_step_ms=None, target_ratio=1.5) == {"floor_ms": 500.0}


def test_peak_table_knows_the_usual_accelerators():
  from benchmarks import peaks

  assert peaks.peak_for("NVIDIA H100 80GB HBM3")[0] == 989e12
  assert peaks.peak_for("NVIDIA H100 PCIe")[0] == 756e12
  assert peaks.peak_for("NVIDIA H100 NVL")[0] == 835e12
  assert peaks.peak_for("NVIDIA A100-SXM4-40GB")[0] == 312e12
  assert peaks.peak_for("TPU v5 lite")[0] == 197e12
  assert peaks.peak_for("TPU v5")[0] == 459e12
  assert peaks.peak_for("TPU v4")[0] == 275e12
  assert peaks.peak_for("cpu") is None
  result = throughput.utilisation(2e12, 0.01, "NVIDIA H100 80GB HBM3", "gpu", "bfloat16", 0)
  assert result["utilisation"] == pytest.approx(200e12 / 989e12, abs=1e-4)
