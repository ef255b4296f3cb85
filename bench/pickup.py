"""Scenario 5, first part: how soon a file leaving the hot folder shows as picked up.

The benchmark plays the RIP: it deletes delivered files one at a time, notes the wall-clock
time of each deletion, and reads each delivery's `picked_up_at` from the API. Deletions are
spaced by a fraction of the poll interval that does not divide it, so in polling mode they fall
at every phase of the daemon's poll cycle rather than all at the same one. The reference for
native mode is the benchmark's own inotify watch on the same folder, the floor any watcher
pays. For polling mode the reference is the poll interval.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .arrivals import Arrivals
from .context import CONCURRENCY, POLL_INTERVAL, Bench
from .feeder import DaemonError, Feeder, Printer, delivered_name, job_body
from .report import Row, Section, new_section, seconds
from .stats import median, percentile

NATIVE_TARGET = 0.5
POLLING_MARGIN = 0.5
NATIVE_SPACING = 0.1
# 0.37 of the interval: deletions land at phases spread over the whole poll cycle.
POLLING_SPACING = 0.37 * POLL_INTERVAL
TINY_SIZE = 1024


class DeletionWatch(FileSystemEventHandler):
    """Records the wall-clock time at which inotify reports each file deleted from a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.times: dict[str, float] = {}
        self._observer = Observer()

    def __enter__(self) -> DeletionWatch:
        self._observer.schedule(self, str(self.folder))
        self._observer.daemon = True
        self._observer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._observer.stop()
        self._observer.join(10)

    def on_deleted(self, event: FileSystemEvent) -> None:
        self.times.setdefault(os.path.basename(os.fsdecode(event.src_path)), time.time())


async def measure(bench: Bench) -> Section:
    section = new_section(5)
    bench.writer.write("tiny.png", TINY_SIZE)
    folder = bench.folder("pickup-daemon")
    printers = [
        Printer("native", folder / "native", watch="native"),
        Printer("polling", folder / "polling", watch="polling", poll_interval=POLL_INTERVAL, sku="POLLING"),
    ]
    async with bench.origin() as origin, Feeder(folder, printers, CONCURRENCY) as daemon:
        native, floor = await _latencies(bench, daemon, origin.url("tiny.png"), printers[0], 1, NATIVE_SPACING)
        polling, _ = await _latencies(bench, daemon, origin.url("tiny.png"), printers[1], 2, POLLING_SPACING)
    bench.remove(folder)

    count = bench.sizes.pickup_samples
    native_p95 = percentile(native, 95)
    section.rows.append(Row(
        f"native watch: p95 from deletion to picked_up_at ({count} files)", seconds(native_p95),
        f"inotify alone: {seconds(percentile(floor, 95))}", None, f"< {seconds(NATIVE_TARGET)}",
        native_p95 < NATIVE_TARGET,
    ))  # fmt: skip
    polling_p95 = percentile(polling, 95)
    section.rows.append(Row(
        f"polling every {POLL_INTERVAL:g} s: p95 from deletion to picked_up_at ({count} files)",
        seconds(polling_p95), f"interval: {seconds(POLL_INTERVAL)}", polling_p95 / POLL_INTERVAL,
        f"< {seconds(POLL_INTERVAL + POLLING_MARGIN)}", polling_p95 < POLL_INTERVAL + POLLING_MARGIN,
    ))  # fmt: skip
    section.notes.append(
        f"Medians: native {seconds(median(native))}, polling {seconds(median(polling))}. With "
        f"{count} samples the p95 is the {_ordinal(count)} smallest (nearest rank)."
    )
    return section


async def _latencies(
    bench: Bench, daemon: Feeder, url: str, printer: Printer, job_id: int, spacing: float
) -> tuple[list[float], list[float]]:
    """Deliver tiny files to `printer`, delete them one by one and return each pickup latency.

    Also returns the benchmark's own inotify latencies for the same deletions.
    """
    count = bench.sizes.pickup_samples
    names = [delivered_name(job_id, index) for index in range(count)]
    urls = [f"{url}?n={job_id}-{index}" for index in range(count)]
    with Arrivals(printer.hotfolder, names) as arrivals:
        await daemon.push(job_body(job_id, urls, sku=printer.sku or "Jh001-PSTEST"))
        await arrivals.wait(120, lambda: daemon.raise_for_failures([job_id]))
    await _wait_for_states(daemon, job_id, "delivered", 60)

    deleted_at = {}
    with DeletionWatch(printer.hotfolder) as watch:
        for name in names:
            deleted_at[name] = time.time()
            (printer.hotfolder / name).unlink()
            # Pacing between deletions, not a wait for an outcome.
            await asyncio.sleep(spacing)
        job = await _wait_for_states(daemon, job_id, "picked_up", printer.poll_interval * 3 + 30)

    picked_up = {d["name"]: _timestamp(d["picked_up_at"]) for d in job["deliveries"]}
    latencies = [picked_up[name] - deleted_at[name] for name in names]
    floor = [watch.times[name] - deleted_at[name] for name in names if name in watch.times]
    return latencies, floor


async def _wait_for_states(daemon: Feeder, job_id: int, state: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = await daemon.job(job_id)
        states = [delivery["state"] for delivery in job["deliveries"]]
        if all(current == state for current in states):
            return job
        if "failed" in states or time.monotonic() > deadline:
            raise DaemonError(f"job {job_id}: expected every delivery {state} within {timeout:g}s, states {states}")
        await asyncio.sleep(0.2)


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _ordinal(count: int) -> str:
    rank = max(-(-95 * count // 100), 1)
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(rank % 10 if rank % 100 not in (11, 12, 13) else 0, "th")
    return f"{rank}{suffix}"
