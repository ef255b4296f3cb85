"""The artwork origin: nginx serving a folder on 127.0.0.1, or the project's Python origin.

nginx runs as a child process in the foreground (`daemon off`) from a config generated into a
temporary prefix folder, so it touches nothing under /etc or /var. It serves Range requests for
static files by itself. Where nginx is not installed, `hotfolder_feeder.origin.ArtworkOrigin`
runs in a child process instead, streaming the same files from disk, and a warning says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
PYTHON_ORIGIN_SCRIPT = Path(__file__).with_name("python_origin.py")

NGINX_CONFIG = """\
daemon off;
{user}# One worker: with sendfile it serves several GB/s on loopback and leaves the cores to the
# process being measured.
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{
        image/png png;
    }}
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
        }}
    }}
}}
"""


class OriginError(RuntimeError):
    """Raised when the origin cannot be started."""


class Origin:
    """A running origin: its base URL, a description for the report, and its child process."""

    def __init__(self, base_url: str, description: str, process: subprocess.Popen[bytes]) -> None:
        self.base_url = base_url
        self.description = description
        self.process = process

    def url(self, name: str, query: str = "") -> str:
        """Return the URL of the file `name` in the served folder, with an optional query string."""
        url = f"{self.base_url}/{quote(name)}"
        return f"{url}?{query}" if query else url


def nginx_path() -> str | None:
    """Return the nginx executable, looking in sbin folders that a non-root PATH may lack."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")


@contextlib.asynccontextmanager
async def serve_folder(root: Path, workdir: Path, use_nginx: bool = True) -> AsyncIterator[Origin]:
    """Serve the files in `root` on 127.0.0.1 until the block ends.

    Uses nginx when it is installed and `use_nginx` is true, else the Python origin with a
    warning on stderr. Files must exist before the Python origin starts, because it registers
    them at start.
    """
    nginx = nginx_path() if use_nginx else None
    if nginx is None and use_nginx:
        print(
            "warning: nginx is not installed, so the project's Python origin serves the artwork; "
            "it uses far more CPU than nginx, which lowers every figure (apt-get install nginx)",
            file=sys.stderr,
        )
    origin = await (_start_nginx(nginx, root, workdir) if nginx else _start_python(root))
    try:
        yield origin
    finally:
        await _stop(origin.process)


async def _start_nginx(nginx: str, root: Path, workdir: Path) -> Origin:
    prefix = workdir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    # The workers drop to an unprivileged user when nginx starts as root, so they need to read
    # the served folder.
    root.chmod(0o755)
    version = _nginx_version(nginx)
    last_error = ""
    for _ in range(3):
        port = _free_port()
        config = prefix / "nginx.conf"
        # As root, workers would drop to nobody, who cannot enter a private folder such as
        # pytest's temporary ones; they stay root, serving only loopback.
        user = "user root;\n" if os.geteuid() == 0 else ""
        config.write_text(NGINX_CONFIG.format(prefix=prefix, port=port, root=root, user=user))
        process = subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        if await _wait_listening(process, port):
            return Origin(f"http://127.0.0.1:{port}", version, process)
        last_error = await _stop(process)
        if "Address already in use" not in last_error:
            break
    raise OriginError(f"nginx did not start on 127.0.0.1 (config {prefix / 'nginx.conf'}): {last_error}")


def _nginx_version(nginx: str) -> str:
    result = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    return (result.stderr.strip() or result.stdout.strip()).removeprefix("nginx version: ")


async def _start_python(root: Path) -> Origin:
    process = subprocess.Popen(
        [sys.executable, str(PYTHON_ORIGIN_SCRIPT), "--root", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), START_TIMEOUT)
    except TimeoutError:
        line = b""
    if not line:
        error = await _stop(process)
        raise OriginError(f"the Python origin did not start within {START_TIMEOUT:g}s: {error}")
    started = json.loads(line)
    return Origin(started["url"], "Python origin (hotfolder_feeder.origin.ArtworkOrigin)", process)


def _free_port() -> int:
    # NOTE: another process may take the port between this check and nginx's bind; the caller
    # retries on "Address already in use".
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return True
    return False


async def _stop(process: subprocess.Popen[bytes]) -> str:
    """Stop a child origin and return what it wrote to stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, error = await asyncio.wait_for(asyncio.to_thread(process.communicate), STOP_TIMEOUT)
    except TimeoutError:
        process.kill()
        _, error = await asyncio.to_thread(process.communicate)
    return (error or b"").decode(errors="replace").strip()
