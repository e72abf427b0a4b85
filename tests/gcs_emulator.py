"""A Cloud Storage JSON API server on 127.0.0.1 for the `gs://` tests (gcp-storage-emulator).

`gcs_bucket` (session fixture) starts it in memory with one bucket, points every client of
this process at it, yields the bucket's URL, and stops it. How each client is pointed there:
- etils.epath (runtime/paths.py): `EPATH_USE_TF=false` (tests/conftest.py) routes gs://
  through fsspec's gcsfs, which honours `STORAGE_EMULATOR_HOST`; TensorFlow's own gs://
  client has no such setting and would call the real service;
- orbax's arrays (tensorstore): `TENSORSTORE_GCS_HTTP_URL`.

The emulator runs with one fix (`_SERVER`): its media downloads lack the `x-goog-generation`
header that Cloud Storage sends with every object read. tensorstore reads an object's
generation from it and, without it, fails on the second write to an OCDBT checkpoint
("Malformed StorageGeneration" reading manifest.ocdbt).
"""

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.local_cluster import free_loopback_port

BUCKET = "googlenet-test"
START_SECONDS = 60
_SERVER = """
import sys
from gcp_storage_emulator.handlers import objects

_download = objects.download

def download(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except Exception:  # not found: the original handler answered 404
    return
  response["x-goog-generation"] = str(obj["generation"])
  response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))

objects.download = download  # before the server module binds its routes to the handlers
from gcp_storage_emulator.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="session")
def gcs_bucket():
  pytest.importorskip("gcsfs", reason="needs gcsfs (requirements.txt)")
  port = free_loopback_port()
  url = f"http://127.0.0.1:{port}"
  server = subprocess.Popen(
      [
          sys.executable,
          "-c",
          _SERVER,
          "start",
          "--host=127.0.0.1",
          f"--port={port}",
          "--in-memory",
          f"--default-bucket={BUCKET}",
      ],
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
  )
  try:
    deadline = time.monotonic() + START_SECONDS
    while True:
      try:
        urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}", timeout=5)
        break
      except OSError:
        if server.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f"the Cloud Storage emulator did not start on {url}") from None
        time.sleep(0.2)
    assert os.environ.get("EPATH_USE_TF") == "false", "set by tests/conftest.py"
    settings = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url}
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    yield f"gs://{BUCKET}"
  finally:
    server.kill()
    server.wait()
    for name, value in locals().get("before", {}).items():
      if value is None:
        os.environ.pop(name, None)
      else:
        os.environ[name] = value
