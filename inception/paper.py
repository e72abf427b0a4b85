"""Figures printed in Table 1 of Szegedy et al., "Going Deeper with Convolutions" (arXiv 1409.4842).

The channel columns define the model (googlenet.py builds from them); the params and ops
columns are kept verbatim so the summary can show them next to what the model computes.
Params are printed in K = 1024 weights (biases not counted) and ops in M = 10^6 multiply-adds:
with those units the rows whose channel counts are self-consistent reproduce exactly
(e.g. 3a: 163,328 weights = 159.5K, 128.0M ops at 28x28).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class InceptionChannels:
  """The six channel columns of Table 1 for one inception module."""

  conv1x1: int
  reduce3x3: int
  conv3x3: int
  reduce5x5: int
  conv5x5: int
  pool_proj: int

  @property
  def out_channels(self) -> int:
    return self.conv1x1 + self.conv3x3 + self.conv5x5 + self.pool_proj


INCEPTION_CHANNELS: dict[str, InceptionChannels] = {
    "3a": InceptionChannels(64, 96, 128, 16, 32, 32),
    "3b": InceptionChannels(128, 128, 192, 32, 96, 64),
    "4a": InceptionChannels(192, 96, 208, 16, 48, 64),
    "4b": InceptionChannels(160, 112, 224, 24, 64, 64),
    "4c": InceptionChannels(128, 128, 256, 24, 64, 64),
    "4d": InceptionChannels(112, 144, 288, 32, 64, 64),
    "4e": InceptionChannels(256, 160, 320, 32, 128, 128),
    "5a": InceptionChannels(256, 160, 320, 32, 128, 128),
    "5b": InceptionChannels(384, 192, 384, 48, 128, 128),
}

STEM_CHANNELS = {"conv1": 64, "conv2_reduce": 64, "conv2": 192}
AUX_CONV_CHANNELS = 128  # Section 5: "1x1 convolution with 128 filters"
AUX_HIDDEN_UNITS = 1024  # Section 5: "fully connected layer with 1024 units"


@dataclasses.dataclass(frozen=True)
class PrintedRow:
  """A Table-1 row as printed: params in K (1024) weights, ops in M (10^6) multiply-adds."""

  params_k: float | None
  ops_m: float | None


# Keys are the report's row names. Rows without params (pools, dropout, softmax) print none.
PRINTED: dict[str, PrintedRow] = {
    "conv1": PrintedRow(2.7, 34),
    "conv2": PrintedRow(112, 360),
    "inception_3a": PrintedRow(159, 128),
    "inception_3b": PrintedRow(380, 304),
    "inception_4a": PrintedRow(364, 73),
    "inception_4b": PrintedRow(437, 88),
    "inception_4c": PrintedRow(463, 100),
    "inception_4d": PrintedRow(580, 119),
    "inception_4e": PrintedRow(840, 170),
    "inception_5a": PrintedRow(1072, 54),
    "inception_5b": PrintedRow(1388, 71),
    "classifier": PrintedRow(1000, 1),
}

# Section 1 keeps "a computational budget of 1.5 billion multiply-adds at inference time".
# (The parameter total usually quoted, 6.8M, is the sum of Table 1's params column, which the
# report computes from PRINTED.)
PRINTED_TOTAL_OPS_G = 1.5

# A row is flagged when the computed figure differs from the printed one by more than this.
# Printed values are rounded to 2-3 digits and a few are off by ~1-2% (4a, 4d, 5b), while the
# known typos (conv1, 4c params, 5a) are off by 5% or more (docs/paper_notes.md, "Table 1 and its misprints").
FLAG_RELATIVE_TOLERANCE = 0.03
