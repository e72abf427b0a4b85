"""Import published GoogLeNet weights as an export that evaluation and `init_from` read.

    python -m inception.import_weights --from=torchvision --src=googlenet-1378be20.pth --out=DIR
    python -m inception.import_weights --from=caffe --src=bvlc_googlenet.caffemodel --out=DIR
    python -m inception.import_weights --from=slim --src=inception_v1.ckpt --out=DIR \\
        [--keep_background=false]

Common options: --num_classes (default: the file's), --aux_heads (default true; converted
from the file when it has them, else fresh from --seed).

| --from        | --src                                   | variant       | normalisation |
|---------------|-----------------------------------------|---------------|---------------|
| `torchvision` | googlenet-1378be20.pth (torch.save)     | `torchvision` | `unit`        |
| `caffe`       | bvlc_googlenet.caffemodel               | `paper`       | `caffe`       |
| `slim`        | inception_v1.ckpt (checkpoint prefix)   | `slim`        | `unit`        |

Nothing is downloaded here. `DIR` receives `variables/`, `model.json` and `input.json` (the
normalisation the weights expect, which evaluation checks; runtime/artifacts.py), so `--config.init_from=DIR` and evaluation
rebuild the model with `inception.create_model_from_config`. Every tensor of the file is checked
by name and shape against the variant's own variable tree; a wrong file stops with one message
naming each missing, unexpected or mis-shaped tensor. The conversion rules per source:
inception/torchvision_weights.py, caffe_weights.py, slim_weights.py.

Evaluate each import with the normalisation in the table: it is what the weights were trained
with (torchvision's `transform_input` is exactly 'unit'; Caffe's is BGR 0..255 minus the mean;
TF-slim's inception preprocessing is RGB in [-1, 1]).

Optional dependencies: PyTorch reads `.pth` files (`pip install torch==2.13.0`, the CPU build,
or elsewhere `pip install torch --index-url https://download.pytorch.org/whl/cpu`; torchvision is
not needed). Caffe files need neither Caffe nor OpenCV (inception/caffe_format.py); TF-slim
checkpoints are read with TensorFlow, already a dependency (tf-slim itself is not needed).
"""

from __future__ import annotations

from collections.abc import Mapping
import os
import time
from typing import Any

from absl import app, flags, logging
import numpy as np

from inception import caffe_format, caffe_weights, slim_weights, torchvision_weights
from inception.weight_layout import Conversion
from runtime import cli

SOURCES = ("torchvision", "caffe", "slim")
# What each import must be fed: config.data.normalization (input_pipeline/photometric.py).
NORMALIZATION = {"torchvision": "unit", "caffe": "caffe", "slim": "unit"}
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
  flags.DEFINE_string(
      "src",
      None,
      "The weights: a torch.save state dict (torchvision), a .caffemodel (caffe) or a "
      "TensorFlow checkpoint prefix (slim).",
  )
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
  flags.DEFINE_bool(
      "keep_background",
      False,
      "slim only: keep TF-slim's 1001 classes (index 0 = background) instead of dropping the "
      "background class to get ImageNet's 1000 in the usual order.",
  )
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


def _read_and_convert(
    source: str, src: str, *, num_classes, aux_heads, seed, keep_background
) -> tuple[Conversion, float]:
  """Returns the conversion and the seconds spent reading the file."""
  start = time.perf_counter()
  if source == "torchvision":
    state_dict = read_torch_state_dict(src)
    read_seconds = time.perf_counter() - start
    conversion = torchvision_weights.convert_state_dict(
        state_dict, num_classes=num_classes, aux_heads=aux_heads, seed=seed
    )
  elif source == "caffe":
    blobs = caffe_format.read_caffemodel(src)
    read_seconds = time.perf_counter() - start
    conversion = caffe_weights.convert_blobs(
        blobs, num_classes=num_classes, aux_heads=aux_heads, seed=seed
    )
  elif source == "slim":
    arrays = slim_weights.read_checkpoint(src)
    read_seconds = time.perf_counter() - start
    conversion = slim_weights.convert_checkpoint(
        arrays,
        keep_background=keep_background,
        num_classes=num_classes,
        aux_heads=aux_heads,
        seed=seed,
    )
  else:
    raise ValueError(f"Unknown weight source {source!r}; choose one of {SOURCES}.")
  return conversion, read_seconds


def import_weights(
    source: str,
    src: str,
    out: str,
    *,
    num_classes: int | None = None,
    aux_heads: bool = True,
    seed: int = 0,
    keep_background: bool = False,
) -> dict[str, Any]:
  """Reads `src` in `source`'s layout, converts, writes the export to `out`.

  Returns the model config written. Raises ValueError (a bad file, naming every problem)
  or ImportError (a missing optional dependency, with the install command).
  """
  if source == "torchvision":
    _import_torch()  # fail fast with the install hint, before the slow imports below
  # Imported here so that `--help` does not wait for orbax.
  from runtime.artifacts import save_model_variables, write_input_convention

  start = time.perf_counter()
  conversion, read_seconds = _read_and_convert(
      source,
      src,
      num_classes=num_classes,
      aux_heads=aux_heads,
      seed=seed,
      keep_background=keep_background,
  )
  convert_done = time.perf_counter()
  save_model_variables(out, conversion.variables, conversion.model_config)
  write_input_convention(out, NORMALIZATION[source], source=source, file=os.path.abspath(src))
  write_done = time.perf_counter()

  logging.info(
      "Converted %d tensors of %s; skipped on purpose: %d (%s).",
      len(conversion.converted),
      src,
      len(conversion.ignored),
      ", ".join(conversion.ignored[:3]) + (", ..." if len(conversion.ignored) > 3 else ""),
  )
  # Fresh aux heads are logged as a warning by the converter itself.
  if aux_heads and not conversion.fresh:
    untrained = (
        " (torchvision's published aux heads are untrained)" if source == "torchvision" else ""
    )
    logging.info("Aux heads converted from the file%s.", untrained)
  logging.info("Model config: %s", conversion.model_config)
  logging.info(
      "Time: read %.2f s, convert %.2f s, write %.2f s, total %.2f s.",
      read_seconds,
      convert_done - start - read_seconds,
      write_done - convert_done,
      write_done - start,
  )
  logging.info(
      "Wrote %s. Evaluate or fine-tune it with --config.model.variant=%s and "
      "--config.data.normalization=%s.",
      os.path.abspath(out),
      conversion.model_config["variant"],
      NORMALIZATION[source],
  )
  return conversion.model_config


def import_torchvision(src: str, out: str, **options: Any) -> dict[str, Any]:
  """`import_weights('torchvision', ...)`."""
  return import_weights("torchvision", src, out, **options)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # A bad file or no torch: cli.run makes it one error line, without a traceback.
  import_weights(
      flags.FLAGS["from"].value,
      flags.FLAGS.src,
      flags.FLAGS.out,
      num_classes=flags.FLAGS.num_classes,
      aux_heads=flags.FLAGS.aux_heads,
      seed=flags.FLAGS.seed,
      keep_background=flags.FLAGS.keep_background,
  )


if __name__ == "__main__":
  define_flags()
  cli.run(main)
