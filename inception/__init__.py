"""GoogLeNet (Inception v1) as pure Flax linen modules: no I/O, no training code.

The names below are imported on first use, so `from inception import config` (as config files
do) imports no Flax.
"""

from runtime import lazy

_EXPORTS = {
    "AuxHead": "inception.googlenet",
    "GoogLeNet": "inception.googlenet",
    "GoogLeNetOutput": "inception.googlenet",
    "InceptionModule": "inception.googlenet",
    "CeilMaxPool": "inception.layers",
    "ConvBlock": "inception.layers",
    "LocalResponseNorm": "inception.layers",
    "VARIANTS": "inception.variants",
    "create_model": "inception.variants",
    "create_model_from_config": "inception.models",
    "register_model": "inception.models",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS)
