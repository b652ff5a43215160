"""An S3-compatible server for the lab: moto's standalone server (PyPI `moto[server]`, in
build/moto, made by `make s3server`), on 127.0.0.1 of the host where the master runs.

`server()` is a context manager: the process is killed when it ends, also when the test
fails or is interrupted, so no run leaves it behind.
"""

import contextlib
import socket
import subprocess
import time

from labkit.errors import LabError
from labkit.preflight import REPO

MOTO = REPO / "build" / "moto" / "bin" / "moto_server"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(log_path, timeout=30):
    """Yield "127.0.0.1:<port>" of a running moto server; its output goes to `log_path`."""
    if not MOTO.exists():
        raise LabError(f"{MOTO} is missing: run `make s3server`")
    port = _free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(  # noqa: S603 (our own venv's binary)
            [str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise LabError(f"moto did not listen on 127.0.0.1:{port} (see {log_path})") from None
                    time.sleep(0.2)
            yield f"127.0.0.1:{port}"
        finally:
            proc.kill()
            proc.wait(timeout=10)
