"""The reference: curl fetching the same URLs in parallel, as a hot folder script would.

curl runs as a child process reaped with `os.wait4`, so its CPU time and peak memory come
from the kernel's resource usage of that child alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CurlRun:
    """One curl run: wall seconds, user plus system CPU seconds and peak RSS in bytes."""

    seconds: float
    cpu_seconds: float
    max_rss: int
    command: str


class CurlError(RuntimeError):
    """Raised when curl exits with an error."""


def curl_path() -> str | None:
    return shutil.which("curl")


def curl_version() -> str:
    curl = curl_path()
    if curl is None:
        return "not installed"
    result = subprocess.run([curl, "--version"], capture_output=True, text=True, check=False)
    return " ".join(result.stdout.split()[:2])


async def fetch(downloads: Sequence[tuple[str, Path]], parallel: int, config_path: Path) -> CurlRun:
    """Fetch each URL into its path, `parallel` transfers at a time, and measure curl.

    The URL list goes into a curl config file, so hundreds of files fit in one command.
    """
    curl = curl_path()
    if curl is None:
        raise CurlError("curl is not installed (apt-get install curl)")
    lines = []
    for url, path in downloads:
        lines += [f'url = "{url}"', f'output = "{path}"']
    config_path.write_text("\n".join(lines) + "\n")
    command = [
        curl, "--parallel", "--parallel-max", str(parallel), "--fail", "--silent", "--show-error",
        "--config", str(config_path),
    ]  # fmt: skip

    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = await asyncio.to_thread(os.wait4, process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise CurlError(f"curl exited with {process.returncode}: {error.strip()[:500]}")

    # The report names the config file only, because its folder is temporary.
    arguments = " ".join(command[1:-1] + [config_path.name])
    # ru_maxrss is in KiB on Linux.
    return CurlRun(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, f"curl {arguments}")


def fsync_files(paths: Sequence[Path]) -> float:
    """Flush files and their folders to disk as the daemon does before a hand-off; return seconds."""
    started = time.perf_counter()
    folders = set()
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        folders.add(path.parent)
    for folder in folders:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    return time.perf_counter() - started
