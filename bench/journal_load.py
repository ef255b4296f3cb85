"""Scenarios that need a large journal, run in order on one daemon as its journal grows.

1. Empty journal: the status API and idle CPU, the references for scenarios 5 and 6.
2. Tiny files: jobs of tiny files, half to a polled printer, all delivered. The peak memory with
   that many deliveries in the journal is scenario 3's second part.
3. Idle with the polled printer's files waiting in its hot folder: the polling cost (scenario 5).
4. Pushes of large jobs, alone and while 8 large downloads run (scenario 4). They go to a
   printer whose hot folder is missing, so their deliveries wait in the journal without being
   downloaded, and the journal reaches its full size.
5. The status API with everything in the journal (scenario 6).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from hotfolder_feeder.config import STAGING_DIR_NAME

from .arrivals import Arrivals
from .artwork import Artwork, MiB
from .context import CONCURRENCY, POLL_INTERVAL, Bench
from .feeder import Feeder, Printer, delivered_name, job_body
from .origin import Origin
from .report import Row, Section, new_section, mebibytes, seconds
from .stats import median, percentile

PUSH_TARGET = 0.1
API_TARGET = 0.05
IDLE_CPU_TARGET = 0.05
MEMORY_TARGET = 100 * MiB
TINY_SIZE = 1024
DELIVERY_TIMEOUT = 1800.0
BACKGROUND_START_TIMEOUT = 60.0


@dataclass
class ApiTimes:
    jobs: list[float] = field(default_factory=list)
    printers: list[float] = field(default_factory=list)


@dataclass
class PushTimes:
    large: list[float] = field(default_factory=list)
    single: list[float] = field(default_factory=list)
    skipped: int = 0


@dataclass
class JournalFigures:
    empty_api: ApiTimes
    full_api: ApiTimes
    deliveries: int
    start_rss: int
    tiny_peak: int
    tiny_seconds: float
    idle_cpu: float
    polling_cpu: float
    alone: PushTimes
    loaded: PushTimes
    final_peak: int


class _Run:
    """One pass through the stages, with the daemon, the origin and a job id counter."""

    def __init__(self, bench: Bench, daemon: Feeder, origin: Origin, printers: dict[str, Printer]) -> None:
        self.bench = bench
        self.daemon = daemon
        self.origin = origin
        self.printers = printers
        self.next_job_id = 1

    def job_id(self) -> int:
        job_id = self.next_job_id
        self.next_job_id += 1
        return job_id

    async def api_times(self) -> ApiTimes:
        times = ApiTimes()
        for _ in range(self.bench.sizes.api_requests):
            times.jobs.append((await self.daemon.get("/api/jobs"))[1])
            times.printers.append((await self.daemon.get("/api/printers"))[1])
        return times

    async def idle_cpu(self) -> float:
        """Return the daemon's CPU use over the idle window, as a fraction of one core."""
        window = self.bench.sizes.idle_seconds
        before = self.daemon.cpu_seconds()
        started = time.perf_counter()
        # The measurement window itself: nothing happens in it but the daemon's own timers.
        await asyncio.sleep(window)
        return (self.daemon.cpu_seconds() - before) / (time.perf_counter() - started)

    async def deliver_tiny(self) -> float:
        """Push the tiny-file jobs, alternating the polled and unwatched printers; wait for all."""
        sizes = self.bench.sizes
        url = self.origin.url("tiny.png")
        expected: dict[str, list[str]] = {"polled": [], "unwatched": []}
        bodies = []
        for index in range(sizes.journal_jobs):
            job_id = self.job_id()
            printer = "polled" if index % 2 == 0 else "unwatched"
            urls = [f"{url}?n={job_id}-{item}" for item in range(sizes.journal_items)]
            sku = self.printers[printer].sku or "Jh001-PSTEST"
            bodies.append((job_id, job_body(job_id, urls, first_item_id=job_id * 100_000, sku=sku)))
            expected[printer] += [delivered_name(job_id, item) for item in range(sizes.journal_items)]

        job_ids = [job_id for job_id, _ in bodies]
        with Arrivals(self.printers["polled"].hotfolder, expected["polled"]) as polled, Arrivals(
            self.printers["unwatched"].hotfolder, expected["unwatched"]
        ) as unwatched:
            started = time.perf_counter()
            for _, body in bodies:
                await self.daemon.push(body)
            check = lambda: self.daemon.raise_for_failures(job_ids)  # noqa: E731
            finished = max(
                await polled.wait(DELIVERY_TIMEOUT, check), await unwatched.wait(DELIVERY_TIMEOUT, check)
            )
        return finished - started

    async def pushes(self, times: PushTimes, running: Arrivals | None = None) -> None:
        """Push a one-item job and a large job, `pushes` times, to the offline printer.

        With `running`, a pair counts only while none of the background files has arrived,
        so every counted push overlapped all 8 downloads.
        """
        sizes = self.bench.sizes
        url = self.origin.url("tiny.png")
        for _ in range(sizes.pushes):
            if running is not None and running.times:
                times.skipped += 1
                continue
            single_id, large_id = self.job_id(), self.job_id()
            single = job_body(single_id, [f"{url}?n={single_id}"], first_item_id=single_id * 100_000, sku="PARKED")
            urls = [f"{url}?n={large_id}-{item}" for item in range(sizes.push_items)]
            large = job_body(large_id, urls, first_item_id=large_id * 100_000, sku="PARKED")
            _, single_seconds = await self.daemon.push(single)
            _, large_seconds = await self.daemon.push(large)
            if running is not None and running.times:
                times.skipped += 1
                continue
            times.single.append(single_seconds)
            times.large.append(large_seconds)

    async def pushes_under_load(self, files: list[Artwork]) -> PushTimes:
        """Start 8 large downloads, then push while they all run."""
        job_id = self.job_id()
        hotfolder = self.printers["unwatched"].hotfolder
        names = [delivered_name(job_id, index) for index in range(CONCURRENCY)]
        times = PushTimes()
        with Arrivals(hotfolder, names) as background:
            await self.daemon.push(job_body(job_id, [self.origin.url(file.name) for file in files]))
            await _wait_for_staging_files(hotfolder, CONCURRENCY, lambda: self.daemon.raise_for_failures([job_id]))
            await self.pushes(times, running=background)
            await background.wait(DELIVERY_TIMEOUT, lambda: self.daemon.raise_for_failures([job_id]))
        return times

    async def delivery_count(self) -> int:
        data, _ = await self.daemon.get("/api/printers")
        return sum(sum(n for state, n in p["counts"].items() if state != "stalled") for p in data["printers"])


async def _wait_for_staging_files(hotfolder: Path, count: int, check: Callable[[], Awaitable[None]]) -> None:
    """Wait until `count` downloads are writing staging files in the hot folder's dot-folder.

    `check` raises when a download failed, which would otherwise look like a slow start.
    """
    staging = hotfolder / STAGING_DIR_NAME
    deadline = time.monotonic() + BACKGROUND_START_TIMEOUT
    checked_at = time.monotonic()
    while time.monotonic() < deadline:
        parts = list(staging.glob("*.part")) if staging.exists() else []
        if len(parts) >= count:
            return
        if time.monotonic() - checked_at > 1:
            await check()
            checked_at = time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{count} downloads did not start within {BACKGROUND_START_TIMEOUT:g}s")


async def measure(bench: Bench) -> JournalFigures:
    sizes = bench.sizes
    bench.writer.write("tiny.png", TINY_SIZE)
    background = bench.writer.write_many("background", [sizes.background_size] * CONCURRENCY)
    folder = bench.folder("journal-daemon")
    printers = {
        "unwatched": Printer("unwatched", folder / "unwatched"),
        "polled": Printer("polled", folder / "polled", watch="polling", poll_interval=POLL_INTERVAL, sku="POLLED"),
        "parked": Printer("parked", folder / "parked", sku="PARKED", create=False),
    }  # fmt: skip
    async with bench.origin() as origin, Feeder(folder, list(printers.values()), CONCURRENCY) as daemon:
        run = _Run(bench, daemon, origin, printers)
        start_rss = daemon.rss()
        empty_api = await run.api_times()
        idle_cpu = await run.idle_cpu()

        tiny_seconds = await run.deliver_tiny()
        tiny_peak = daemon.peak_rss()
        # Only the polled printer's files should wait in a hot folder while the cost is measured.
        bench.remove(*(path for path in printers["unwatched"].hotfolder.iterdir() if path.is_file()))
        polling_cpu = await run.idle_cpu()

        alone = PushTimes()
        await run.pushes(alone)
        loaded = await run.pushes_under_load(background)

        full_api = await run.api_times()
        deliveries = await run.delivery_count()
        final_peak = daemon.peak_rss()
    bench.remove(folder, bench.origin_root / "tiny.png", *bench.origin_root.glob("background-*.png"))
    return JournalFigures(
        empty_api, full_api, deliveries, start_rss, tiny_peak, tiny_seconds, idle_cpu, polling_cpu, alone, loaded,
        final_peak,
    )


def push_section(bench: Bench, figures: JournalFigures) -> Section:
    sizes = bench.sizes
    section = new_section(4)
    items = f"{sizes.push_items:,}-item push"
    for label, times in (("alone", figures.alone), (f"while {CONCURRENCY} downloads run", figures.loaded)):
        if not times.large:
            section.rows.append(Row(f"median, {items}, {label}", "no push overlapped the downloads"))
            continue
        large_median, single_median = median(times.large), median(times.single)
        section.rows.append(Row(
            f"median, {items}, {label} ({len(times.large)} pushes)", seconds(large_median),
            f"1 item: {seconds(single_median)}", large_median / single_median,
            f"< {seconds(PUSH_TARGET)}", large_median < PUSH_TARGET,
        ))  # fmt: skip
        large_p99, single_p99 = percentile(times.large, 99), percentile(times.single, 99)
        section.rows.append(Row(
            f"p99, {items}, {label}", seconds(large_p99), f"1 item: {seconds(single_p99)}",
            large_p99 / single_p99,
        ))  # fmt: skip
    section.notes.append(
        f"Pushes ran against a journal that already held {sizes.journal_jobs * sizes.journal_items:,} "
        f"delivered files and grew by {sizes.push_items + 1:,} deliveries per pair. With "
        f"{sizes.pushes} samples the p99 is the slowest push."
    )
    if figures.loaded.skipped:
        section.notes.append(
            f"{figures.loaded.skipped} push pairs were left out because a background download had "
            "already finished, so fewer than 8 ran during them."
        )
    return section


def status_section(bench: Bench, figures: JournalFigures) -> Section:
    section = new_section(6)
    requests = bench.sizes.api_requests
    for path, full, empty in (
        ("/api/jobs", figures.full_api.jobs, figures.empty_api.jobs),
        ("/api/printers", figures.full_api.printers, figures.empty_api.printers),
    ):
        p95, reference = percentile(full, 95), percentile(empty, 95)
        section.rows.append(Row(
            f"p95 of `GET {path}`, {figures.deliveries:,} deliveries ({requests} requests)", seconds(p95),
            f"empty journal: {seconds(reference)}", p95 / reference, f"< {seconds(API_TARGET)}", p95 < API_TARGET,
        ))  # fmt: skip
        section.notes.append(
            f"`GET {path}`: median {seconds(median(full))} with {figures.deliveries:,} deliveries, "
            f"{seconds(median(empty))} empty."
        )
    return section


def memory_rows(bench: Bench, figures: JournalFigures) -> list[Row]:
    deliveries = bench.sizes.journal_jobs * bench.sizes.journal_items
    reference = f"same daemon at start: {mebibytes(figures.start_rss)}"
    return [
        Row(
            f"peak RSS with {deliveries:,} tiny deliveries in the journal", mebibytes(figures.tiny_peak),
            reference, figures.tiny_peak / figures.start_rss, "< 100 MiB", figures.tiny_peak < MEMORY_TARGET,
        ),
        Row(
            f"peak RSS at the end of scenarios 4 and 6, {figures.deliveries:,} deliveries",
            mebibytes(figures.final_peak), reference, figures.final_peak / figures.start_rss, "< 100 MiB",
            figures.final_peak < MEMORY_TARGET,
        ),
    ]


def memory_note(bench: Bench, figures: JournalFigures) -> str:
    deliveries = bench.sizes.journal_jobs * bench.sizes.journal_items
    rate = deliveries / figures.tiny_seconds
    return (
        f"The {deliveries:,} tiny deliveries ({TINY_SIZE} bytes each, {bench.sizes.journal_jobs} jobs) "
        f"took {seconds(figures.tiny_seconds)} from the first push to the last file, {rate:.0f} files/s."
    )


def polling_row(bench: Bench, figures: JournalFigures) -> Row:
    waiting = bench.sizes.journal_jobs * bench.sizes.journal_items // 2
    return Row(
        f"daemon CPU, polling {waiting:,} waiting files every {POLL_INTERVAL:g} s "
        f"({bench.sizes.idle_seconds:g} s idle)", f"{figures.polling_cpu:.1%} of a core",
        f"empty hot folders: {figures.idle_cpu:.1%}", _ratio(figures.polling_cpu, figures.idle_cpu),
        f"< {IDLE_CPU_TARGET:.0%} of a core", figures.polling_cpu < IDLE_CPU_TARGET,
    )


def _ratio(value: float, reference: float) -> float | None:
    return value / reference if reference > 0 else None
