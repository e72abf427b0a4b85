"""Shared pytest set-up.

Eight simulated CPU devices let the sharding tests run on one CPU; the flag must be set
before JAX initialises its backend, which is why it lives here and not in a test.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# TensorFlow must never grab an accelerator that JAX wants, and its C++ logging is noise here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
