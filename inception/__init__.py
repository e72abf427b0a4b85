"""GoogLeNet (Inception v1) as pure Flax linen modules: no I/O, no training code."""
from inception.googlenet import AuxHead, GoogLeNet, InceptionModule
from inception.layers import CeilMaxPool, ConvBlock, LocalResponseNorm
from inception.variants import VARIANTS, create_model, create_model_from_config

__all__ = [
    "AuxHead", "CeilMaxPool", "ConvBlock", "GoogLeNet", "InceptionModule", "LocalResponseNorm",
    "VARIANTS", "create_model", "create_model_from_config",
]
