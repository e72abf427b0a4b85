"""A Cloud Storage JSON API server on 127.0.0.1 for the `gs://` tests (gcp-storage-emulator).

`gcs_bucket` (session fixture) starts it in memory with one bucket, points every client of
this process at it, yields the bucket's URL, and stops it. How each client is pointed there:
- etils.epath (runtime/paths.py): `EPATH_USE_TF=false` (tests/conftest.py) routes gs://
  through fsspec's gcsfs, which honours `STORAGE_EMULATOR_HOST`; TensorFlow's own gs://
  client has no such setting and would call the real service;
- orbax's arrays (tensorstore): `TENSORSTORE_GCS_HTTP_URL`.
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


@pytest.fixture(scope="session")
def gcs_bucket():
  pytest.importorskip("gcsfs", reason="needs gcsfs (requirements.txt)")
  port = free_loopback_port()
  url = f"http://127.0.0.1:{port}"
  server = subprocess.Popen(
      [
          sys.executable,
          "-m",
          "gcp_storage_emulator",
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
