"""Measure the daemon's peak resident memory while it delivers one large artwork.

Usage: python bench/large_file.py [--size 2GiB]

Starts a local origin serving generated PNG bytes, runs `hotfolder-feeder serve` as a child
process on a temporary folder, pushes one job, samples the child's RSS every 50 ms until the
file is delivered, and prints the peak. Everything stays on loopback and in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

from hotfolder_feeder.config import parse_size
from hotfolder_feeder.origin import ArtworkOrigin

CONFIG = """
[server]
listen = "127.0.0.1:0"
[storage]
state_dir = "{folder}/state"
[download]
allow_http = true
allow_private_networks = true
[[printers]]
name = "printer-1"
hotfolder = "{folder}/hot"
watch = "off"
[routing]
default = "printer-1"
"""


async def measure(size: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="hotfolder-feeder-bench-"))
    (folder / "hot").mkdir()
    config = folder / "config.toml"
    config.write_text(CONFIG.format(folder=folder))

    async with ArtworkOrigin() as origin:
        url = origin.add_generated("/large.png", "png", size)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotfolder_feeder.cli", "serve", "--config", str(config),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        base = ""
        while not base:
            line = json.loads(await process.stdout.readline())
            base = line.get("url", "") if line.get("event") == "daemon_started" else ""
        drain = asyncio.create_task(_drain(process.stdout))

        job = {"id": 1, "artwork": None, "items": [{"id": 1, "order_item_id": 1, "order_item": {
            "id": 1, "artwork": [{"name": "large.png", "ext": "png", "clientUrl": url}]}}]}
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            await session.post(f"{base}/kornitx/jobs", json=job)
            peak = await _sample_until_delivered(session, base, psutil.Process(process.pid))
        seconds = time.monotonic() - started

        process.terminate()
        await process.wait()
        drain.cancel()

    delivered = folder / "hot" / "large.png"
    print(f"size {size} bytes, delivered {delivered.stat().st_size} bytes in {seconds:.1f}s")
    print(f"peak RSS of the daemon process: {peak / 2**20:.1f} MiB")


async def _sample_until_delivered(session: aiohttp.ClientSession, base: str, process: psutil.Process) -> int:
    peak = 0
    last_check = 0.0
    while True:
        peak = max(peak, process.memory_info().rss)
        if time.monotonic() - last_check > 1:
            last_check = time.monotonic()
            async with session.get(f"{base}/api/jobs/1") as response:
                job = await response.json()
            if job["deliveries"][0]["state"] in ("delivered", "failed"):
                return peak
        await asyncio.sleep(0.05)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2GiB", help="artwork size, for example 2GiB (default)")
    asyncio.run(measure(parse_size(parser.parse_args().size)))


if __name__ == "__main__":
    main()
