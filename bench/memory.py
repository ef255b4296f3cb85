"""Scenario 3, first part: the daemon's peak memory while it streams large files concurrently.

A fresh daemon downloads one job of `memory_count` files at once, first small files, then large
ones. Its peak RSS (VmHWM, the kernel's high-water mark for the process) must stay under the
target and must not grow with the file size. curl fetching the large files is the reference.
The journal part of this scenario runs in `journal_load`.
"""

from __future__ import annotations

import time

from . import curl
from .arrivals import Arrivals
from .artwork import MiB
from .context import CONCURRENCY, Bench
from .feeder import Feeder, Printer, delivered_name, job_body
from .report import Row, Section, new_section, mebibytes, seconds

MEMORY_TARGET = 100 * MiB
FLAT_TARGET = 1.10
DELIVERY_TIMEOUT = 1800.0


async def measure(bench: Bench) -> Section:
    sizes = bench.sizes
    section = new_section(3)

    peaks = {}
    for size in (sizes.memory_small, sizes.memory_large):
        peaks[size], elapsed, reference = await _measure_size(bench, size, size == sizes.memory_large)
        label = f"peak RSS, {sizes.memory_count} × {_size_text(size)} streamed concurrently"
        if reference is None:
            section.rows.append(Row(label, mebibytes(peaks[size]), target="< 100 MiB", met=peaks[size] < MEMORY_TARGET))
        else:
            section.rows.append(Row(
                label, mebibytes(peaks[size]), f"curl: {mebibytes(reference)}", peaks[size] / reference,
                "< 100 MiB", peaks[size] < MEMORY_TARGET,
            ))  # fmt: skip
        section.notes.append(f"{sizes.memory_count} × {_size_text(size)}: delivered in {seconds(elapsed)}.")

    growth = peaks[sizes.memory_large] / peaks[sizes.memory_small]
    section.rows.append(Row(
        f"peak RSS growth from {_size_text(sizes.memory_small)} to {_size_text(sizes.memory_large)} files",
        mebibytes(peaks[sizes.memory_large]), mebibytes(peaks[sizes.memory_small]), growth,
        f"flat (≤ {FLAT_TARGET:.2f}×)", growth <= FLAT_TARGET,
    ))  # fmt: skip
    section.headline = 1
    if not bench.has_curl:
        section.notes.append("curl is not installed, so its reference was skipped (apt-get install curl).")
    return section


async def _measure_size(bench: Bench, size: int, with_curl: bool) -> tuple[int, float, int | None]:
    """Return the daemon's peak RSS, its delivery time and curl's peak RSS (None when skipped)."""
    count = bench.sizes.memory_count
    files = bench.writer.write_many(f"memory-{size}", [size] * count)
    folder = bench.folder("memory-daemon")
    hotfolder = folder / "hot"
    async with bench.origin() as origin:
        urls = [origin.url(file.name) for file in files]
        async with Feeder(folder, [Printer("printer-1", hotfolder)], CONCURRENCY) as daemon:
            names = [delivered_name(1, index) for index in range(count)]
            with Arrivals(hotfolder, names) as arrivals:
                started = time.perf_counter()
                await daemon.push(job_body(1, urls))
                finished = await arrivals.wait(DELIVERY_TIMEOUT, lambda: daemon.raise_for_failures([1]))
            peak = daemon.peak_rss()
        bench.remove(folder)

        reference = None
        if with_curl and bench.has_curl:
            output = bench.folder("curl-output")
            paths = [output / file.name for file in files]
            run = await curl.fetch(list(zip(urls, paths, strict=True)), CONCURRENCY, bench.workdir / "curl-urls.txt")
            reference = run.max_rss
            bench.remove(output)
    bench.remove(*(bench.origin_root / file.name for file in files))
    return peak, finished - started, reference


def _size_text(size: int) -> str:
    return f"{size / 1024**3:g} GiB" if size >= 1024**3 else f"{size // MiB} MiB"
