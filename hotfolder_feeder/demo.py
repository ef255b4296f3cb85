"""`hotfolder-feeder demo`: the whole flow on this machine, with nothing leaving it.

A daemon on embedded defaults in a temporary folder, a local artwork origin standing in for S3,
the platform's two example jobs with their URLs pointed at that origin, and a simulated RIP that
takes files from the hot folder. Prints each change as it happens, then a summary.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

from . import config
from .daemon import Daemon
from .origin import ArtworkOrigin
from .rip import SimulatedRip

EXAMPLES = ("artwork-processing-job.json", "consolidation-job.json")
# The example payloads escape slashes, as real pushes do: `https:\/\/s3-eu-west-1...`.
S3_URL = re.compile(r"https:(?:\\/|/){2}s3-eu-west-1\.amazonaws\.com((?:(?:\\/|/)[^\"]*))")
DEMO_TIMEOUT = 60.0


def example_payload(name: str) -> str:
    return resources.files("hotfolder_feeder").joinpath("examples", name).read_text(encoding="utf-8")


def point_at_origin(payload: str, origin: ArtworkOrigin, size: int = 256 * 1024) -> str:
    """Rewrite a payload's S3 URLs to the local origin, keeping escaped slashes, and serve them.

    Each URL gets generated artwork whose format follows the file extension of the URL.
    """
    escaped_base = origin.base_url.replace("/", "\\/")

    def replace(match: re.Match[str]) -> str:
        escaped_path = match.group(1)
        path = escaped_path.replace("\\/", "/")
        kind = path.rpartition(".")[2].lower() if "." in path else "png"
        origin.add_generated(path, kind if kind in ("png", "jpg", "pdf", "tif") else "png", size, seed=zlib.crc32(path.encode()))
        return escaped_base + escaped_path

    return S3_URL.sub(replace, payload)


def demo_settings(folder: Path) -> config.Settings:
    return config.build(
        {
            "server": {"listen": "127.0.0.1:0"},
            "storage": {"state_dir": "state"},
            "download": {"allow_http": True, "allow_private_networks": True},
            "printers": [{"name": "printer-1", "hotfolder": "hotfolders/printer-1", "poll_interval": "1s"}],
            "routing": {"default": "printer-1"},
        },
        base=folder,
        source="demo",
    )


async def run(keep: bool = False) -> int:
    folder = Path(tempfile.mkdtemp(prefix="hotfolder-feeder-demo-"))
    settings = demo_settings(folder)
    settings.printers[0].hotfolder.mkdir(parents=True)
    print(f"demo folder: {folder}")

    async with ArtworkOrigin() as origin:
        payloads = [point_at_origin(example_payload(name), origin) for name in EXAMPLES]
        daemon = Daemon(settings)
        await daemon.start()
        rip = SimulatedRip(settings.printers[0].hotfolder, interval=0.3, settle=0.5)
        try:
            await rip.start()
            print(f"daemon listening on {daemon.listen_url} (dashboard: {daemon.listen_url}/)")
            job_ids = await _push_all(daemon, payloads)
            completed = await _follow(daemon, job_ids)
            _print_summary(await _jobs(daemon, job_ids), rip)
            if keep:
                print("running until Ctrl+C")
                await asyncio.Event().wait()
        finally:
            await rip.stop()
            await daemon.stop()
    return 0 if completed and not rip.problems else 1


async def _push_all(daemon: Daemon, payloads: list[str]) -> list[int]:
    url = daemon.listen_url + daemon.settings.server.path
    job_ids = []
    async with aiohttp.ClientSession() as session:
        for payload in payloads:
            async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as response:
                answer = await response.json()
                print(f"pushed job {answer['job_id']}: HTTP {response.status}, {answer['deliveries']} deliveries")
                job_ids.append(answer["job_id"])
    return job_ids


async def _follow(daemon: Daemon, job_ids: list[int]) -> bool:
    """Print each delivery state change until every job is completed or the time runs out."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + DEMO_TIMEOUT
    while time.monotonic() < deadline:
        jobs = await _jobs(daemon, job_ids)
        for job in jobs:
            for delivery in job["deliveries"]:
                if seen.get(delivery["id"]) != delivery["state"]:
                    seen[delivery["id"]] = delivery["state"]
                    print(f"  job {job['id']} {delivery['name'] or delivery['artwork_name']}: {delivery['state']}")
        if all(job["state"] in ("completed", "failed") for job in jobs):
            return all(job["state"] == "completed" for job in jobs)
        await asyncio.sleep(0.2)
    print(f"gave up waiting after {DEMO_TIMEOUT:g}s")
    return False


async def _jobs(daemon: Daemon, job_ids: list[int]) -> list[dict[str, Any]]:
    return [job for job_id in job_ids if (job := await daemon.journal.job(job_id)) is not None]


def _print_summary(jobs: list[dict[str, Any]], rip: SimulatedRip) -> None:
    print("\nsummary")
    for job in jobs:
        print(f"job {job['id']} ({job['kind']}): {job['state']}")
        for delivery in job["deliveries"]:
            print(
                f"  {delivery['name']}  {delivery['bytes']} bytes  {delivery['state']}"
                f"  sha256 {str(delivery['sha256'])[:12]}"
            )
    print(f"the simulated RIP took {len(rip.taken)} files; problems: {json.dumps(rip.problems) if rip.problems else 'none'}")
