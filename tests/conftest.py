"""Shared pytest set-up.

Eight simulated CPU devices let the sharding tests run on one CPU; the flag must be set
before JAX initialises its backend, which is why it lives here and not in a test.
"""
import os

# XLA's LLVM optimisation passes dominate compile time for the tiny test models (a narrow
# GoogLeNet's init compiles in ~15 s with them and ~4 s without) while their run time is
# negligible, so the suite compiles at optimisation level 0. Behaviour is unchanged.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
# TensorFlow must never grab an accelerator that JAX wants, and its C++ logging is noise here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
