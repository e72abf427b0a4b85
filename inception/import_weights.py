"""Import published GoogLeNet weights as an export that evaluation and `init_from` read.

    python -m inception.import_weights --from=torchvision --src=googlenet.pth --out=DIR \\
        [--num_classes=1000] [--aux_heads=true] [--seed=0]

`--src` is a torchvision GoogLeNet state dict saved with `torch.save` (the published file is
googlenet-1378be20.pth; nothing is downloaded here). `DIR` receives `variables/` and
`model.json` (runtime/artifacts.py `save_model_variables`), so `--config.init_from=DIR` and
evaluation rebuild the `torchvision` variant with `inception.create_model_from_config`.
The conversion rules and checks are in inception/torchvision_weights.py.

Feed the imported model RGB in [-1, 1] (`config.data.normalization = 'unit'`): that is exactly
torchvision's `transform_input=True` applied to ImageNet-normalised input (derivation in
torchvision_weights.py), the setting the published weights were trained and scored with.

PyTorch is only needed to read the `.pth` file and is an optional dependency:
`pip install torch==2.13.0` (the CPU build), or elsewhere
`pip install torch --index-url https://download.pytorch.org/whl/cpu`. torchvision is not needed.
"""

from __future__ import annotations

from collections.abc import Mapping
import os
import sys
import time
from typing import Any

from absl import app, flags, logging
import numpy as np

from inception import torchvision_weights

SOURCES = ("torchvision",)
TORCH_INSTALL_HINT = (
    "Reading a .pth file needs PyTorch, an optional dependency of this project. Install the CPU "
    "build with `pip install torch==2.13.0` (or `pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu`); torchvision is not needed."
)
# Containers some training scripts wrap a state dict in.
_WRAPPER_KEYS = ("state_dict", "model")


def define_flags() -> None:
  """Called only when run as a program, so importing this module registers no global flags
  (another CLI in the same process, e.g. under pytest, may define --seed or --num_classes)."""
  flags.DEFINE_enum("from", "torchvision", SOURCES, "Layout of the weights in --src.")
  flags.DEFINE_string("src", None, "State dict file written by torch.save (e.g. googlenet.pth).")
  flags.DEFINE_string("out", None, "Export directory to write (variables/ and model.json).")
  flags.DEFINE_integer(
      "num_classes",
      None,
      "Classes of the model; default: the size of the "
      "file's classifier. Must agree with the file.",
  )
  flags.DEFINE_bool(
      "aux_heads",
      True,
      "Give the model auxiliary heads: converted from the file "
      "when it has them, else initialised fresh.",
  )
  flags.DEFINE_integer("seed", 0, "Seed of the model init used for aux heads absent from the file.")
  flags.mark_flags_as_required(["src", "out"])


def _import_torch():
  try:
    import torch
  except ImportError as e:
    raise ImportError(TORCH_INSTALL_HINT) from e
  return torch


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """name -> numpy array from a `.pth` file; unwraps {'state_dict': ...} and `module.` prefixes."""
  torch = _import_torch()
  try:
    # weights_only: a state dict needs no arbitrary unpickling, and a downloaded file is untrusted.
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises UnpicklingError/RuntimeError depending on the problem
    raise ValueError(
        f"Could not read a state dict from {path} ({type(e).__name__}: {e}). Save "
        "`model.state_dict()` rather than the whole model."
    ) from e
  for key in _WRAPPER_KEYS:
    if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
      loaded = loaded[key]
  if not isinstance(loaded, Mapping):
    raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict (name -> tensor).")
  names = list(loaded)
  if names and all(name.startswith("module.") for name in names):  # saved from DataParallel
    loaded = {name[len("module.") :]: value for name, value in loaded.items()}
  arrays = {}
  for name, value in loaded.items():
    if not isinstance(value, torch.Tensor):
      raise ValueError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor.")
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.to(torch.float32)  # half-precision files convert too
    arrays[name] = value.numpy()
  return arrays


def import_torchvision(
    src: str, out: str, *, num_classes: int | None = None, aux_heads: bool = True, seed: int = 0
) -> dict[str, Any]:
  """Reads `src`, converts, writes the export to `out`; returns the model config written."""
  _import_torch()  # fail fast with the install hint, before the slow imports below
  # Imported here so that `--help` does not wait for orbax.
  from runtime.artifacts import save_model_variables

  start = time.perf_counter()
  state_dict = read_torch_state_dict(src)
  read_done = time.perf_counter()
  conversion = torchvision_weights.convert_state_dict(
      state_dict, num_classes=num_classes, aux_heads=aux_heads, seed=seed
  )
  convert_done = time.perf_counter()
  save_model_variables(out, conversion.variables, conversion.model_config)
  write_done = time.perf_counter()

  counters = sum(name.endswith(torchvision_weights.IGNORED_SUFFIX) for name in conversion.ignored)
  logging.info(
      "Converted %d tensors of %s; skipped on purpose: %d num_batches_tracked, %d aux " "tensors.",
      len(conversion.converted),
      src,
      counters,
      len(conversion.ignored) - counters,
  )
  # Fresh aux heads are logged as a warning by the converter itself.
  if aux_heads and not conversion.fresh:
    logging.info(
        "Aux heads converted from the file (torchvision's published aux heads are " "untrained)."
    )
  logging.info("Model config: %s", conversion.model_config)
  logging.info(
      "Time: read %.2f s, convert %.2f s, write %.2f s, " "total %.2f s.",
      read_done - start,
      convert_done - read_done,
      write_done - convert_done,
      write_done - start,
  )
  logging.info(
      "Wrote %s. Evaluate or fine-tune it with data.normalization='unit' (torchvision's "
      "transform_input).",
      os.path.abspath(out),
  )
  return conversion.model_config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if flags.FLAGS["from"].value == "torchvision":
    try:
      import_torchvision(
          flags.FLAGS.src,
          flags.FLAGS.out,
          num_classes=flags.FLAGS.num_classes,
          aux_heads=flags.FLAGS.aux_heads,
          seed=flags.FLAGS.seed,
      )
    except (ImportError, ValueError) as e:  # a bad file or no torch: the message, no traceback
      sys.exit(f"import_weights: {e}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
