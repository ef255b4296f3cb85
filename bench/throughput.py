"""Scenarios 1 and 2: wall time and CPU per GiB of one job's downloads, against curl.

Each run starts a fresh daemon, pushes one job with every file and times from the push to the
last file's rename into the hot folder. curl fetches the same URLs with the same parallelism
into a plain folder. Runs alternate between the two, and each run's output is deleted and
flushed before the next, so neither inherits the other's writeback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import curl
from .arrivals import Arrivals
from .artwork import GiB, MiB, Artwork
from .context import CONCURRENCY, Bench
from .feeder import Feeder, Printer, delivered_name, job_body
from .origin import Origin
from .report import Row, Section, new_section, ratio_text, seconds
from .stats import median

WALL_TARGET = 1.10
CPU_TARGET = 2.0
DELIVERY_TIMEOUT = 900.0


@dataclass
class Runs:
    """Wall and CPU seconds of each run of one side."""

    seconds: list[float]
    cpu_seconds: list[float]


@dataclass
class Comparison:
    label: str
    total_bytes: int
    daemon: Runs
    curl: Runs | None
    curl_fsync_seconds: list[float]


async def measure(bench: Bench) -> tuple[Section, Section]:
    """Run both workloads and return the throughput section and the CPU section."""
    sizes = bench.sizes
    fixed = [sizes.throughput_size] * sizes.throughput_count
    mixed = bench.writer.mixed_sizes(sizes.mix_count, sizes.mix_smallest, sizes.mix_largest)
    workloads = [
        (f"{sizes.throughput_count} × {sizes.throughput_size // MiB} MiB", "fixed", fixed),
        (f"{sizes.mix_count} files of {_size_text(sizes.mix_smallest)}–{_size_text(sizes.mix_largest)}", "mixed", mixed),
    ]  # fmt: skip

    comparisons = []
    for label, prefix, workload in workloads:
        files = bench.writer.write_many(prefix, workload)
        async with bench.origin() as origin:
            comparisons.append(await _compare(bench, origin, label, files))
        bench.remove(*(bench.origin_root / file.name for file in files))
    return _throughput_section(bench, comparisons), _cpu_section(bench, comparisons)


async def _compare(bench: Bench, origin: Origin, label: str, files: list[Artwork]) -> Comparison:
    urls = [origin.url(file.name) for file in files]
    daemon = Runs([], [])
    reference = Runs([], []) if bench.has_curl else None
    fsync_seconds: list[float] = []
    for run in range(bench.sizes.runs):
        if reference is not None:
            curl_run, fsync = await _run_curl(bench, urls, files)
            reference.seconds.append(curl_run.seconds)
            reference.cpu_seconds.append(curl_run.cpu_seconds)
            fsync_seconds.append(curl_run.seconds + fsync)
        wall, cpu = await _run_daemon(bench, urls, run + 1)
        daemon.seconds.append(wall)
        daemon.cpu_seconds.append(cpu)
    return Comparison(label, sum(file.size for file in files), daemon, reference, fsync_seconds)


async def _run_curl(bench: Bench, urls: list[str], files: list[Artwork]) -> tuple[curl.CurlRun, float]:
    output = bench.folder("curl-output")
    paths = [output / file.name for file in files]
    result = await curl.fetch(list(zip(urls, paths, strict=True)), CONCURRENCY, bench.workdir / "curl-urls.txt")
    fsync = curl.fsync_files(paths)
    bench.remove(output)
    return result, fsync


async def _run_daemon(bench: Bench, urls: list[str], job_id: int) -> tuple[float, float]:
    folder = bench.folder("throughput-daemon")
    hotfolder = folder / "hot"
    async with Feeder(folder, [Printer("printer-1", hotfolder)], CONCURRENCY) as daemon:
        names = [delivered_name(job_id, index) for index in range(len(urls))]
        body = job_body(job_id, urls)
        with Arrivals(hotfolder, names) as arrivals:
            cpu_before = daemon.cpu_seconds()
            started = time.perf_counter()
            await daemon.push(body)
            finished = await arrivals.wait(DELIVERY_TIMEOUT, lambda: daemon.raise_for_failures([job_id]))
            cpu = daemon.cpu_seconds() - cpu_before
    bench.remove(folder)
    return finished - started, cpu


def _throughput_section(bench: Bench, comparisons: list[Comparison]) -> Section:
    section = new_section(1)
    for comparison in comparisons:
        daemon = median(comparison.daemon.seconds)
        figure = f"wall time, {comparison.label} (median of {bench.sizes.runs})"
        value = f"{seconds(daemon)} ({_rate(comparison.total_bytes, daemon)})"
        if comparison.curl is None:
            section.rows.append(Row(figure, value, "curl not installed", None, f"≤ {WALL_TARGET:.2f}× curl"))
            continue
        reference = median(comparison.curl.seconds)
        ratio = daemon / reference
        section.rows.append(Row(
            figure, value, f"{seconds(reference)} ({_rate(comparison.total_bytes, reference)})", ratio,
            f"≤ {WALL_TARGET:.2f}× curl", ratio <= WALL_TARGET,
        ))  # fmt: skip
        synced = median(comparison.curl_fsync_seconds)
        section.rows.append(Row(
            f"wall time, {comparison.label}, against curl then fsync of its files", seconds(daemon),
            seconds(synced), daemon / synced,
        ))  # fmt: skip
    for comparison in comparisons:
        section.notes.append(_runs_note(comparison.label, comparison.daemon.seconds, comparison.curl))
    section.notes.append(
        "The daemon fsyncs each file before its rename, so a delivered file survives a power cut; "
        "curl does not, and its files may still be in the page cache when it exits. The "
        "\"curl then fsync\" rows add the time to flush curl's files the same way."
    )
    if comparisons and comparisons[0].curl is None:
        section.notes.append("curl is not installed, so the reference was skipped (apt-get install curl).")
    return section


def _cpu_section(bench: Bench, comparisons: list[Comparison]) -> Section:
    section = new_section(2)
    for comparison in comparisons:
        gib = comparison.total_bytes / GiB
        daemon = median(comparison.daemon.cpu_seconds) / gib
        figure = f"CPU seconds per GiB, {comparison.label} (median of {bench.sizes.runs})"
        if comparison.curl is None:
            section.rows.append(Row(figure, f"{daemon:.2f} s", "curl not installed", None, f"≤ {CPU_TARGET:g}× curl"))
            continue
        reference = median(comparison.curl.cpu_seconds) / gib
        ratio = daemon / reference
        section.rows.append(
            Row(figure, f"{daemon:.2f} s", f"{reference:.2f} s", ratio, f"≤ {CPU_TARGET:g}× curl", ratio <= CPU_TARGET)
        )
    if comparisons and comparisons[0].curl is None:
        section.notes.append("curl is not installed, so the reference was skipped (apt-get install curl).")
    return section


def _runs_note(label: str, daemon: list[float], reference: Runs | None) -> str:
    daemon_runs = ", ".join(seconds(value) for value in daemon)
    if reference is None:
        return f"{label}: daemon runs {daemon_runs}."
    curl_runs = ", ".join(seconds(value) for value in reference.seconds)
    ratios = ", ".join(ratio_text(d / c) for d, c in zip(daemon, reference.seconds, strict=True))
    return f"{label}: daemon runs {daemon_runs}; curl runs {curl_runs}; ratio per run {ratios}."


def _rate(total_bytes: int, elapsed: float) -> str:
    return f"{total_bytes / elapsed / 1e6:.0f} MB/s"


def _size_text(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // 1024} KiB"
