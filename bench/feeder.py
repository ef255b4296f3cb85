"""The daemon under test: `hotfolder-feeder serve` as a child process, its jobs and its figures.

The daemon writes its JSON log lines to a file, not a pipe, so that reading them costs the
benchmark process nothing while the daemon runs. CPU time and peak memory come from /proc
through psutil, for the daemon's process only.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

# Versions that refuse plain http artwork URLs have this key; the origin serves plain http.
from hotfolder_feeder.config import DownloadSettings

START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
API_TIMEOUT = aiohttp.ClientTimeout(total=120)

# A Quick P name as the platform writes it: setup, id, pallet, artwork, copies, X and Y offsets.
QUICKP_NAME = "AV HD6 Black HQ_64021_Hoodies Full Size_{job_id}-{index:05d}_1_14_116.png"


@dataclass(frozen=True)
class Printer:
    """One [[printers]] entry of the daemon's config."""

    name: str
    hotfolder: Path
    watch: str = "off"
    poll_interval: float = 2.0
    # Jobs whose items carry this SKU are routed here; the first printer takes the rest.
    sku: str | None = None
    # False leaves the hot folder missing, so the printer is offline and its deliveries wait.
    create: bool = True


class DaemonError(RuntimeError):
    """Raised when the daemon fails to start, or a job fails where the benchmark needs success."""


class Feeder:
    """`hotfolder-feeder serve` running from a generated config in `folder`."""

    def __init__(self, folder: Path, printers: Sequence[Printer], concurrency: int = 8) -> None:
        self.folder = folder
        self.printers = list(printers)
        self.concurrency = concurrency
        self.url = ""
        self.log_path = folder / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._psutil: psutil.Process | None = None

    async def __aenter__(self) -> Feeder:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Write the config, start the daemon and wait for its `daemon_started` log line."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for printer in self.printers:
            if printer.create:
                printer.hotfolder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.toml"
        config.write_text(self._config_text())

        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hotfolder_feeder.cli", "serve", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # `-m` puts the working folder first on sys.path, so it must hold no other copy.
                cwd=self.folder,
            )  # fmt: skip
        self._psutil = psutil.Process(self.process.pid)
        started = await self._wait_for_event("daemon_started", START_TIMEOUT)
        self.url = started["url"]
        self._session = aiohttp.ClientSession(timeout=API_TIMEOUT)

    def _config_text(self) -> str:
        lines = [
            "[server]",
            'listen = "127.0.0.1:0"',
            "[storage]",
            f"state_dir = {json.dumps(str(self.folder / 'state'))}",
            "[download]",
            f"concurrency = {self.concurrency}",
            f"per_host = {self.concurrency}",
            "allow_private_networks = true",
            *(["allow_http = true"] if "allow_http" in DownloadSettings.model_fields else []),
            'stop_timeout = "5s"',
        ]
        for printer in self.printers:
            lines += [
                "[[printers]]",
                f"name = {json.dumps(printer.name)}",
                f"hotfolder = {json.dumps(str(printer.hotfolder))}",
                f"watch = {json.dumps(printer.watch)}",
                f'poll_interval = "{printer.poll_interval:g}s"',
            ]
        lines += ["[routing]", f"default = {json.dumps(self.printers[0].name)}"]
        for printer in self.printers:
            if printer.sku is not None:
                lines += ["[[routing.rules]]", f"sku = {json.dumps(printer.sku)}", f"printer = {json.dumps(printer.name)}"]
        return "\n".join(lines) + "\n"

    async def _wait_for_event(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_lines():
                if line.get("event") == event:
                    return line
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise DaemonError(
            f"the daemon logged no {event!r} within {timeout:g}s; the end of {self.log_path}:\n"
            + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        )

    def log_lines(self) -> list[dict[str, Any]]:
        """Return the daemon's log lines that parse as JSON objects."""
        lines = []
        for text in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                continue
        return lines

    async def stop(self) -> int:
        """Stop the daemon with SIGTERM and return its exit code."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.process.wait), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            return await asyncio.to_thread(self.process.wait)

    # The daemon's figures

    def cpu_seconds(self) -> float:
        """Return the user plus system CPU time the daemon's process has used so far."""
        assert self._psutil is not None
        times = self._psutil.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        assert self._psutil is not None
        return int(self._psutil.memory_info().rss)

    def peak_rss(self) -> int:
        """Return the daemon's peak resident memory since it started (VmHWM), in bytes."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise DaemonError(f"no VmHWM line in /proc/{self.process.pid}/status")

    # The HTTP interface

    async def push(self, body: bytes) -> tuple[int, float]:
        """Push a serialised job; return the status and the seconds until the whole response."""
        assert self._session is not None
        started = time.perf_counter()
        async with self._session.post(
            f"{self.url}/kornitx/jobs", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            answer = await response.read()
            seconds = time.perf_counter() - started
            status = response.status
        if status not in (200, 202):
            raise DaemonError(f"push failed with HTTP {status}: {answer[:500].decode(errors='replace')}")
        return status, seconds

    async def get(self, path: str) -> tuple[Any, float]:
        """GET an API path; return the decoded JSON and the seconds until the whole response."""
        assert self._session is not None
        started = time.perf_counter()
        async with self._session.get(f"{self.url}{path}") as response:
            data = await response.json()
            seconds = time.perf_counter() - started
            if response.status != 200:
                raise DaemonError(f"GET {path} failed with HTTP {response.status}: {data}")
        return data, seconds

    async def job(self, job_id: int) -> dict[str, Any]:
        data, _ = await self.get(f"/api/jobs/{job_id}")
        return dict(data)

    async def job_counts(self, limit: int = 100) -> dict[int, dict[str, int]]:
        """Return the delivery counts by state of the newest `limit` jobs, by job id."""
        data, _ = await self.get(f"/api/jobs?limit={limit}")
        return {job["id"]: job["counts"] for job in data["jobs"]}

    async def raise_for_failures(self, job_ids: Sequence[int]) -> None:
        """Raise DaemonError naming the first failed delivery among these jobs, if there is one."""
        counts = await self.job_counts(limit=min(max(len(job_ids), 1) + 50, 10_000))
        for job_id in job_ids:
            if counts.get(job_id, {}).get("failed"):
                job = await self.job(job_id)
                failed = next(d for d in job["deliveries"] if d["state"] == "failed")
                raise DaemonError(f"job {job_id}: delivery {failed['name']} failed: {failed['error']}")


def job_body(job_id: int, urls: Sequence[str], first_item_id: int = 1, sku: str = "Jh001-PSTEST") -> bytes:
    """Serialise a consolidation job with one item per URL, shaped like the platform's pushes.

    Each artwork gets a Quick P name unique to the job, so files of several jobs can share a
    hot folder.
    """
    items = []
    for index, url in enumerate(urls):
        item_id = first_item_id + index
        name = QUICKP_NAME.format(job_id=job_id, index=index)
        items.append({
            "id": item_id,
            "order_item_id": 70_000_000 + item_id,
            "batch_job_id": job_id,
            "order": {
                "id": f"POS-{item_id:06X}", "ref": f"{item_id:016X}", "external_ref": f"POS-{item_id:06X}",
                "shipping_country_code": "GB", "shipping_carrier": "", "shipping_method": "",
            },
            "order_item": {
                "id": 70_000_000 + item_id, "type": 2, "mapped_sku": "JH001 HEA XL",
                "sku": sku, "description": "AWDis Hooded Sweatshirt", "quantity": 1,
                "artwork": [{
                    "name": name, "nameSansExt": name.removesuffix(".png"), "ext": "png",
                    "clientUrl": url, "isThumbnail": False,
                }],
            },
        })  # fmt: skip
    return json.dumps({"id": job_id, "artwork": None, "items": items}).encode()


def delivered_name(job_id: int, index: int) -> str:
    """Return the hot folder name of artwork `index` of a job built by `job_body`."""
    return QUICKP_NAME.format(job_id=job_id, index=index)
