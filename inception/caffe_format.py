"""Reading and writing Caffe `.caffemodel` weights without Caffe, with the `protobuf` package.

A `.caffemodel` is a serialised `caffe.NetParameter` (BVLC caffe/src/caffe/proto/caffe.proto).
Only the part that carries weights is described here, with Caffe's own field numbers: layer
names and their blobs, in both the current `layer` list and the deprecated V1 `layers` list
that models trained in 2014 may still use, and both blob shape encodings (`shape` and the
legacy num/channels/height/width). Every other field of the file (layer parameters, solver
state) is an unknown field to this schema and is skipped by the protobuf parser itself.
The messages are generated from the schema at import time (`descriptor_pb2` + the message
factory), so no `protoc` step is needed.

Why not OpenCV: OpenCV 5 dropped its Caffe importer (`cv2.dnn.readNetFromCaffe` is gone from
the 5.x builds this project depends on); the tests use OpenCV 4's importer only as an
independent reference forward pass (tests/caffe_reference.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
import numpy as np

_FieldProto = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _FieldProto.LABEL_OPTIONAL, _FieldProto.LABEL_REPEATED
_PACKAGE = "googlenet_caffe_weights"

# (message, [(field, number, label, type, message type or None, packed)]), numbers as in
# caffe.proto. V1LayerParameter's `type` is an enum there; its values are varints on the wire,
# which an int32 field reads and writes identically.
_SCHEMA = (
    ("BlobShape", [("dim", 1, _REPEATED, _FieldProto.TYPE_INT64, None, True)]),
    (
        "BlobProto",
        [
            ("num", 1, _OPTIONAL, _FieldProto.TYPE_INT32, None, False),
            ("channels", 2, _OPTIONAL, _FieldProto.TYPE_INT32, None, False),
            ("height", 3, _OPTIONAL, _FieldProto.TYPE_INT32, None, False),
            ("width", 4, _OPTIONAL, _FieldProto.TYPE_INT32, None, False),
            ("data", 5, _REPEATED, _FieldProto.TYPE_FLOAT, None, True),
            ("shape", 7, _OPTIONAL, _FieldProto.TYPE_MESSAGE, "BlobShape", False),
            ("double_data", 8, _REPEATED, _FieldProto.TYPE_DOUBLE, None, True),
        ],
    ),
    (
        "LayerParameter",
        [
            ("name", 1, _OPTIONAL, _FieldProto.TYPE_STRING, None, False),
            ("type", 2, _OPTIONAL, _FieldProto.TYPE_STRING, None, False),
            ("blobs", 7, _REPEATED, _FieldProto.TYPE_MESSAGE, "BlobProto", False),
        ],
    ),
    (
        "V1LayerParameter",
        [
            ("name", 4, _OPTIONAL, _FieldProto.TYPE_STRING, None, False),
            ("type", 5, _OPTIONAL, _FieldProto.TYPE_INT32, None, False),
            ("blobs", 6, _REPEATED, _FieldProto.TYPE_MESSAGE, "BlobProto", False),
        ],
    ),
    (
        "NetParameter",
        [
            ("name", 1, _OPTIONAL, _FieldProto.TYPE_STRING, None, False),
            ("layers", 2, _REPEATED, _FieldProto.TYPE_MESSAGE, "V1LayerParameter", False),
            ("layer", 100, _REPEATED, _FieldProto.TYPE_MESSAGE, "LayerParameter", False),
        ],
    ),
)


def _message_classes() -> dict[str, type]:
  file_proto = descriptor_pb2.FileDescriptorProto(
      name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2"
  )
  for message_name, fields in _SCHEMA:
    message = file_proto.message_type.add(name=message_name)
    for name, number, label, field_type, type_name, packed in fields:
      field = message.field.add(name=name, number=number, label=label, type=field_type)
      if type_name:
        field.type_name = f".{_PACKAGE}.{type_name}"
      if packed:
        field.options.packed = True
  pool = descriptor_pool.DescriptorPool()
  pool.Add(file_proto)
  return {
      name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
      for name, _ in _SCHEMA
  }


MESSAGES = _message_classes()


class CaffeFormatError(ValueError):
  """The file is not a readable `.caffemodel`."""


def _blob_to_array(blob) -> np.ndarray:
  if blob.HasField("shape"):
    shape = tuple(int(d) for d in blob.shape.dim)
  else:  # legacy 4-d blob; InnerProduct weights were stored (1, 1, out, in)
    shape = (blob.num, blob.channels, blob.height, blob.width)
  values = blob.data if len(blob.data) else blob.double_data
  array = np.asarray(values, dtype=np.float32)
  if array.size != int(np.prod(shape)):
    raise CaffeFormatError(f"a blob holds {array.size} values but declares shape {shape}")
  return array.reshape(shape)


def read_caffemodel(path: str) -> dict[str, list[np.ndarray]]:
  """Layer name -> its blobs as float32 arrays, for every layer that has weights."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise CaffeFormatError(f"Cannot read {path}: {e.strerror}.") from e
  net = MESSAGES["NetParameter"]()
  try:
    net.ParseFromString(data)
  except Exception as e:  # protobuf raises DecodeError (or RuntimeError on some backends)
    raise CaffeFormatError(
        f"{path} is not a binary Caffe NetParameter ({type(e).__name__}: {e}). Pass the "
        ".caffemodel file, not the text .prototxt."
    ) from e
  blobs: dict[str, list[np.ndarray]] = {}
  for layer in list(net.layer) + list(net.layers):
    if not layer.blobs:
      continue
    if layer.name in blobs:
      raise CaffeFormatError(f"{path}: two layers named {layer.name!r} carry weights.")
    try:
      blobs[layer.name] = [_blob_to_array(blob) for blob in layer.blobs]
    except CaffeFormatError as e:
      raise CaffeFormatError(f"{path}: layer {layer.name!r}: {e}.") from None
  if not blobs:
    raise CaffeFormatError(
        f"{path} holds no layer with weights. Pass the .caffemodel file (e.g. "
        "bvlc_googlenet.caffemodel), not the deploy.prototxt."
    )
  return blobs


def write_caffemodel(
    path: str,
    blobs: Mapping[str, Sequence[np.ndarray]],
    *,
    name: str = "GoogleNet",
    layer_types: Mapping[str, str] | None = None,
    legacy_v1: bool = False,
) -> None:
  """Writes `blobs` (layer name -> arrays) as a `.caffemodel`.

  `legacy_v1=True` writes the deprecated V1 `layers` list with legacy 4-d blob dimensions, the
  encoding of models trained before 2015; otherwise the current `layer` list with `shape`.
  """
  net = MESSAGES["NetParameter"](name=name)
  for layer_name, arrays in blobs.items():
    if legacy_v1:
      layer = net.layers.add(name=layer_name)
    else:
      layer = net.layer.add(name=layer_name, type=(layer_types or {}).get(layer_name, ""))
    for array in arrays:
      array = np.asarray(array, np.float32)
      blob = layer.blobs.add()
      if legacy_v1:
        if array.ndim > 4:
          raise ValueError(f"{layer_name}: a legacy blob has at most 4 dimensions")
        blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
      else:
        blob.shape.dim.extend(array.shape)
      blob.data.extend(array.ravel().tolist())
  with open(path, "wb") as f:
    f.write(net.SerializeToString())
