"""Prometheus metrics, served at `GET /metrics`.

Each daemon has its own registry, so tests can run several in one process. Counters are kept as
things happen. The journal's figures (deliveries by state, files waiting, stalled files) and the
printers' states are read at scrape time. The two latency histograms are fed at scrape time too,
from the `delivered` and `picked_up` transitions the journal recorded since the last scrape.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import journal
from .errors import TransientFetchError
from .fetch import BadContentError, StagingDiscarded

if TYPE_CHECKING:
    from .daemon import Daemon
    from .journal import Journal

PREFIX = "hotfolder_feeder"
CONTENT_TYPE = CONTENT_TYPE_LATEST
PRINTER_STATES = ("online", "paused", "offline", "outage")
DELIVERY_STATES = (
    journal.PENDING, journal.DOWNLOADING, journal.STAGED, journal.DELIVERED,
    journal.PICKED_UP, journal.FAILED, journal.CANCELLED,
)  # fmt: skip
# Results of the push endpoint by HTTP status. 400 is a body that is not JSON, 422 a JSON body
# that is not a valid job, 429 an address refused after repeated failures, 503 a journal that
# cannot be written.
PUSH_RESULTS = {
    202: "accepted",
    200: "duplicate",
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    413: "too_large",
    422: "invalid",
    429: "throttled",
    503: "unavailable",
}
# Downloads take seconds, but a file held back by a feed limit or a busy RIP waits for hours.
LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    """Owns one daemon's registry, its counters and histograms, and the scrape-time collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        self.jobs_received = Counter(
            f"{PREFIX}_jobs_received", "Pushes to the job endpoint, by result.", ["result"],
            registry=self.registry,
        )  # fmt: skip
        for result in (*PUSH_RESULTS.values(), "error"):
            self.jobs_received.labels(result)

        self.download_bytes = Counter(
            f"{PREFIX}_download_bytes",
            "Bytes received by downloads that finished.",
            registry=self.registry,
        )
        self.download_seconds = Counter(
            f"{PREFIX}_download_seconds",
            "Time spent in downloads that finished.",
            registry=self.registry,
        )
        self.download_retries = Counter(
            f"{PREFIX}_download_retries",
            "Downloads that failed and will be tried again, by reason.",
            ["reason"], registry=self.registry,
        )  # fmt: skip

        self.receive_to_delivered = Histogram(
            f"{PREFIX}_receive_to_delivered_seconds",
            "Time from a delivery's creation (the push) to its file landing in the hot folder.",
            ["printer"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.delivered_to_picked_up = Histogram(
            f"{PREFIX}_delivered_to_picked_up_seconds",
            "Time a file sat in the hot folder before the RIP took it.",
            ["printer"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip

        self._floor = _FloorCollector()
        self.registry.register(self._floor)
        ProcessCollector(registry=self.registry)
        self._last_transition = 0
        self._lock = asyncio.Lock()

    async def attach(self, journal: Journal) -> None:
        """Start the latency histograms after the journal's newest transition.

        Deliveries that happened before this start are not observed, so a restart counts nothing
        twice.
        """
        self._last_transition = await journal._run(_newest_transition, journal._db)

    def record_download(self, received: int, seconds: float) -> None:
        self.download_bytes.inc(received)
        self.download_seconds.inc(seconds)

    def record_retry(self, error: TransientFetchError) -> None:
        self.download_retries.labels(retry_reason(error)).inc()

    def record_push(self, status: int) -> None:
        self.jobs_received.labels(PUSH_RESULTS.get(status, "error")).inc()

    async def render(self, daemon: Daemon) -> bytes:
        """Read the journal and the printers, then return the text exposition of every metric."""
        async with self._lock:
            figures = await daemon.journal._run(self._read_journal, daemon.journal._db)
            figures.journal_bytes = await asyncio.to_thread(_journal_bytes, daemon.journal.path)
            figures.printers = {name: feed.state for name, feed in daemon.feeds.items()}
            self._floor.figures = figures
            return generate_latest(self.registry)

    def _read_journal(self, db: sqlite3.Connection) -> _Figures:
        figures = _read_figures(db)
        rows = db.execute(
            "SELECT t.id, t.state, d.printer, d.created_at, d.delivered_at, d.picked_up_at "
            "FROM transitions t JOIN deliveries d ON d.id = t.delivery_id "
            "WHERE t.id > ? AND t.state IN (?, ?) ORDER BY t.id",
            (self._last_transition, journal.DELIVERED, journal.PICKED_UP),
        ).fetchall()
        for row in rows:
            self._observe(row)
        if rows:
            self._last_transition = rows[-1]["id"]
        return figures

    def _observe(self, row: sqlite3.Row) -> None:
        printer = row["printer"] or ""
        if row["state"] == journal.DELIVERED and row["delivered_at"] is not None:
            self.receive_to_delivered.labels(printer).observe(
                max(0.0, row["delivered_at"] - row["created_at"])
            )
        elif row["state"] == journal.PICKED_UP and None not in (
            row["delivered_at"],
            row["picked_up_at"],
        ):
            self.delivered_to_picked_up.labels(printer).observe(
                max(0.0, row["picked_up_at"] - row["delivered_at"])
            )


def push_counter(metrics: Metrics, path: str) -> Middleware:
    """Return a middleware that counts the responses to pushes at `path`, by result."""

    @web.middleware
    async def count_pushes(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or request.path != path:
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as error:
            metrics.record_push(error.status)
            raise
        except Exception:
            metrics.record_push(500)
            raise
        metrics.record_push(response.status)
        return response

    return count_pushes


# The messages come from fetch.py. A new kind of transient error is counted as `other` until
# it gets a reason here.
RETRY_REASONS = (
    ("timeout", re.compile(r"^no data for ")),
    ("short_body", re.compile(r"^(body cut short|empty body)")),
    ("disk_space", re.compile(r"^not enough space|No space left on device")),
    ("staging_write", re.compile(r"^cannot write staging file ")),
    ("connection", re.compile(r"^(Client\w*Error|Server\w*Error|ClientPayloadError)\b")),
)
HTTP_STATUS = re.compile(r"^HTTP (\d{3})\b")


def retry_reason(error: TransientFetchError) -> str:
    """Name the reason of a transient download failure, as a label of few values."""
    message = str(error)
    if isinstance(error, BadContentError):
        return "bad_content"
    status = HTTP_STATUS.match(message)
    if status:
        return "resume_refused" if status.group(1) == "416" else f"http_{status.group(1)}"
    for reason, pattern in RETRY_REASONS:
        if pattern.search(message):
            return reason
    if isinstance(error, StagingDiscarded):
        return "staging_discarded"
    return "other"


@dataclass
class _Figures:
    deliveries: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    stalled: dict[str, int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
    last_pickup: dict[str, float] = field(default_factory=dict)
    printers: dict[str, str] = field(default_factory=dict)
    journal_bytes: int = 0


def _read_figures(db: sqlite3.Connection) -> _Figures:
    figures = _Figures()
    rows = db.execute(
        "SELECT printer, state, COUNT(*) AS n, SUM(stalled) AS stalled FROM deliveries "
        "GROUP BY printer, state"
    )
    for row in rows:
        state, printer, count = row["state"], row["printer"], row["n"]
        figures.deliveries[state] = figures.deliveries.get(state, 0) + count
        if printer is None:
            continue
        if state == journal.DELIVERED:
            figures.waiting[printer] = count
            figures.stalled[printer] = row["stalled"] or 0
        elif state in (journal.PENDING, journal.DOWNLOADING, journal.STAGED):
            figures.queued[printer] = figures.queued.get(printer, 0) + count
    for row in db.execute(
        "SELECT printer, MAX(picked_up_at) AS at FROM deliveries "
        "WHERE picked_up_at IS NOT NULL GROUP BY printer"
    ):
        figures.last_pickup[row["printer"]] = row["at"]
    return figures


def _newest_transition(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM transitions").fetchone()[0])


def _journal_bytes(path: Path) -> int:
    """Return the size of the journal: the database file and its write-ahead log."""
    total = 0
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            total += part.stat().st_size
        except FileNotFoundError:
            continue
    return total


class _FloorCollector(Collector):
    """Yields the figures read at the start of a scrape."""

    def __init__(self) -> None:
        self.figures = _Figures()

    def collect(self) -> Iterator[Metric]:
        figures = self.figures
        yield _gauge(
            "deliveries",
            "Deliveries in the journal, by state.",
            ["state"],
            {(state,): figures.deliveries.get(state, 0) for state in DELIVERY_STATES},
        )
        names = sorted(figures.printers)
        yield _gauge(
            "files_waiting",
            "Files in the printer's hot folder that the RIP has not taken.",
            ["printer"],
            {(name,): figures.waiting.get(name, 0) for name in names},
        )
        yield _gauge(
            "files_stalled",
            "Files waiting in the hot folder for longer than stall_after.",
            ["printer"],
            {(name,): figures.stalled.get(name, 0) for name in names},
        )
        yield _gauge(
            "files_queued",
            "Files not yet in the hot folder: pending, downloading or staged.",
            ["printer"],
            {(name,): figures.queued.get(name, 0) for name in names},
        )
        states: dict[tuple[str, ...], Any] = {
            (name, state): int(figures.printers[name] == state)
            for name in names
            for state in PRINTER_STATES
        }
        yield _gauge(
            "printer_state",
            "1 for the printer's current state (online, paused, offline, outage), else 0.",
            ["printer", "state"],
            states,
        )
        yield _gauge(
            "last_pickup_timestamp_seconds",
            "When the RIP last took a file, as a Unix time.",
            ["printer"],
            {(name,): figures.last_pickup[name] for name in names if name in figures.last_pickup},
        )
        yield _gauge(
            "journal_bytes",
            "Size of the journal database and its write-ahead log.",
            [],
            {(): figures.journal_bytes},
        )


def _gauge(
    name: str, documentation: str, labels: list[str], values: dict[tuple[str, ...], Any]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=labels)
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family
