"""What the floor sees: printers, the jobs of the day and failures, read in one call.

`read()` feeds `GET /api/floor`, the dashboard and `hotfolder-feeder status`. `status_line()` is
the one-line summary sent to systemd. Both only read the journal, on its own thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import journal
from .journal import DELIVERED, DOWNLOADING, FAILED, PENDING, PICKED_UP, STAGED, WAITING_STATES

if TYPE_CHECKING:
    from .daemon import Daemon
    from .feed import PrinterFeed

# A board longer than this is unreadable across the room anyway, and a search narrows it.
MAX_JOBS = 300
MAX_FAILURES = 100
# A search looks this far back, besides an exact job id, which is found at any age.
SEARCH_DAYS = 7
SEARCH_WINDOW = SEARCH_DAYS * 86400.0
TAKEN_WINDOW = 3600.0


@dataclass
class FloorView:
    """Reads the floor from the journal, keeping each job's orders once they are parsed."""

    # job id -> (pushes when parsed, received_at, orders). A re-push may change the orders, so a
    # job is parsed again when its push count changes.
    _orders: dict[int, tuple[int, float, Orders]] = field(default_factory=dict)

    async def read(self, daemon: Daemon, query: str = "") -> dict[str, Any]:
        """Return printers, jobs and failures. With `query`, return only the jobs that match it."""
        now = time.time()
        midnight = _local_midnight(now)
        snapshot = await daemon.journal._run(
            self._read, daemon.journal._db, now, midnight, query.strip()
        )
        printers = [
            _printer(feed, snapshot.printers.get(feed.name, {}), now)
            for feed in daemon.feeds.values()
        ]
        return {
            "generated_at": _iso(now),
            "query": query.strip(),
            "search_days": SEARCH_DAYS,
            "printers": printers,
            "totals": _totals(printers, snapshot.failed_total),
            "jobs": snapshot.jobs,
            "failures": snapshot.failures,
            "failures_total": snapshot.failed_total,
        }

    def _read(self, db: sqlite3.Connection, now: float, midnight: float, query: str) -> _Snapshot:
        job_rows = (
            _search(db, query, now, self._orders_of) if query else _jobs_of_the_day(db, midnight)
        )
        snapshot = _Snapshot(
            printers=_printer_figures(db, now),
            jobs=self._jobs(db, job_rows),
            failures=_failures(db),
            failed_total=db.execute(
                "SELECT COUNT(*) FROM deliveries WHERE state = ?", (FAILED,)
            ).fetchone()[0],
        )
        self._forget_orders({row["id"] for row in job_rows}, now - SEARCH_WINDOW)
        return snapshot

    def _jobs(self, db: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
        counts = _job_counts(db, [row["id"] for row in rows])
        return [_job(row, counts.get(row["id"], {}), self._orders_of(db, row)) for row in rows]

    def _orders_of(self, db: sqlite3.Connection, job: sqlite3.Row) -> Orders:
        cached = self._orders.get(job["id"])
        if cached is not None and cached[0] == job["pushes"]:
            return cached[2]
        orders = _read_orders(db, job["id"])
        self._orders[job["id"]] = (job["pushes"], job["received_at"], orders)
        return orders

    def _forget_orders(self, shown: set[int], since: float) -> None:
        """Drop the orders of jobs that are neither shown nor recent enough to be searched."""
        for job_id, (_, received_at, _) in list(self._orders.items()):
            if received_at < since and job_id not in shown:
                del self._orders[job_id]


@dataclass(frozen=True)
class Orders:
    """The orders of a job's items: one ref per order to show, and every id and ref to search."""

    shown: list[str]
    searched: list[str]


@dataclass
class _Snapshot:
    printers: dict[str, dict[str, Any]]
    jobs: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    failed_total: int


# Printers


def _printer_figures(db: sqlite3.Connection, now: float) -> dict[str, dict[str, Any]]:
    """Count, per printer, deliveries by waiting state, stalled files, pickups and the oldest."""
    figures: dict[str, dict[str, Any]] = {}
    marks = ",".join("?" * len(WAITING_STATES))
    rows = db.execute(
        f"SELECT printer, state, COUNT(*) AS n, SUM(stalled) AS stalled FROM deliveries "
        f"WHERE state IN ({marks}) AND printer IS NOT NULL GROUP BY printer, state",
        WAITING_STATES,
    )
    for row in rows:
        printer = figures.setdefault(row["printer"], {})
        printer[row["state"]] = row["n"]
        if row["state"] == DELIVERED:
            printer["stalled"] = row["stalled"] or 0

    # NOTE: no index covers picked_up_at, so this scans the picked-up history on every read.
    taken = db.execute(
        "SELECT printer, COUNT(*) AS n FROM deliveries WHERE state = ? AND picked_up_at >= ? "
        "GROUP BY printer",
        (PICKED_UP, now - TAKEN_WINDOW),
    )
    for row in taken:
        figures.setdefault(row["printer"], {})["taken_last_hour"] = row["n"]

    # SQLite takes the bare columns of a MIN() aggregate from the row that has the minimum.
    oldest = db.execute(
        "SELECT printer, MIN(delivered_at) AS delivered_at, name, job_id, id FROM deliveries "
        "WHERE state = ? GROUP BY printer",
        (DELIVERED,),
    )
    for row in oldest:
        figures.setdefault(row["printer"], {})["oldest"] = dict(row)
    return figures


def _printer(feed: PrinterFeed, figures: dict[str, Any], now: float) -> dict[str, Any]:
    oldest = figures.get("oldest")
    return {
        "name": feed.name,
        "state": feed.state,
        "outage": feed.outage,
        "paused": feed.paused,
        "group": feed.printer.group,
        "watch": feed.mode,
        "max_waiting": feed.printer.max_waiting,
        "waiting": figures.get(DELIVERED, 0),
        "staged": figures.get(STAGED, 0),
        "queued": figures.get(PENDING, 0) + figures.get(DOWNLOADING, 0),
        "stalled": figures.get("stalled", 0),
        "taken_last_hour": figures.get("taken_last_hour", 0),
        "oldest_waiting": _oldest(oldest, now) if oldest else None,
        "last_pickup_at": _iso(feed.last_pickup_at),
    }


def _oldest(row: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        "name": row["name"],
        "job_id": row["job_id"],
        "delivery_id": row["id"],
        "delivered_at": _iso(row["delivered_at"]),
        "age_seconds": round(max(0.0, now - row["delivered_at"]), 1),
    }


def _totals(printers: list[dict[str, Any]], failed: int) -> dict[str, int]:
    return {
        "printers": len(printers),
        "online": sum(printer["state"] == "online" for printer in printers),
        "waiting": sum(printer["waiting"] for printer in printers),
        "queued": sum(printer["queued"] + printer["staged"] for printer in printers),
        "stalled": sum(printer["stalled"] for printer in printers),
        "failed": failed,
    }


# Jobs


JOB_COLUMNS = "id, kind, received_at, pushes, items"


def _jobs_of_the_day(db: sqlite3.Connection, midnight: float) -> list[sqlite3.Row]:
    """Return the jobs received since midnight, and older ones with files waiting or failed."""
    open_states = (*WAITING_STATES, FAILED)
    marks = ",".join("?" * len(open_states))
    return db.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE received_at >= ? "
        f"OR id IN (SELECT job_id FROM deliveries WHERE state IN ({marks})) "
        "ORDER BY received_at DESC LIMIT ?",
        (midnight, *open_states, MAX_JOBS),
    ).fetchall()


def _search(
    db: sqlite3.Connection,
    query: str,
    now: float,
    orders_of: Callable[[sqlite3.Connection, sqlite3.Row], Orders],
) -> list[sqlite3.Row]:
    """Return the jobs whose id, order ref or file name contains `query`, case-insensitive.

    An exact job id is found at any age, the rest only among jobs of the last SEARCH_DAYS days.
    """
    found: dict[int, sqlite3.Row] = {}
    if query.isdigit():
        for row in db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (int(query),)):
            found[row["id"]] = row

    since = now - SEARCH_WINDOW
    recent = db.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE received_at >= ? ORDER BY received_at DESC", (since,)
    ).fetchall()
    pattern = "%" + _escape_like(query) + "%"
    by_file = {
        row["job_id"]
        for row in db.execute(
            "SELECT DISTINCT job_id FROM deliveries "
            "WHERE job_id IN (SELECT id FROM jobs WHERE received_at >= ?) "
            "AND (name LIKE ? ESCAPE '\\' OR artwork_name LIKE ? ESCAPE '\\')",
            (since, pattern, pattern),
        )
    }
    needle = query.casefold()
    for row in recent:
        if row["id"] in found:
            continue
        searched = orders_of(db, row).searched
        if (
            needle in str(row["id"])
            or row["id"] in by_file
            or any(needle in ref.casefold() for ref in searched)
        ):
            found[row["id"]] = row
    return sorted(found.values(), key=lambda row: row["received_at"], reverse=True)[:MAX_JOBS]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _read_orders(db: sqlite3.Connection, job_id: int) -> Orders:
    """Read the orders of a job's items from its latest push.

    Each order is shown by its external ref, else its ref, else its id. A search matches any
    of them.
    """
    rows = db.execute(
        "SELECT json_extract(item.value, '$.order.ref') AS ref, "
        "json_extract(item.value, '$.order.external_ref') AS external_ref, "
        "json_extract(item.value, '$.order.id') AS order_id "
        "FROM jobs, json_each(jobs.payload, '$.items') AS item WHERE jobs.id = ?",
        (job_id,),
    )
    shown: dict[str, None] = {}
    searched: dict[str, None] = {}
    for row in rows:
        values = [
            str(value)
            for value in (row["external_ref"], row["ref"], row["order_id"])
            if value is not None
        ]
        values = [value for value in values if value.strip()]
        if values:
            shown[values[0]] = None
            searched.update(dict.fromkeys(values))
    return Orders(shown=list(shown), searched=list(searched))


def _job_counts(db: sqlite3.Connection, job_ids: list[int]) -> dict[int, dict[str, Any]]:
    counts: dict[int, dict[str, Any]] = {}
    if not job_ids:
        return counts
    marks = ",".join("?" * len(job_ids))
    rows = db.execute(
        f"SELECT job_id, state, COUNT(*) AS n, MAX(priority) AS priority FROM deliveries "
        f"WHERE job_id IN ({marks}) GROUP BY job_id, state",
        job_ids,
    )
    for row in rows:
        job = counts.setdefault(row["job_id"], {"states": {}, "priority": 0})
        job["states"][row["state"]] = row["n"]
        if row["state"] in WAITING_STATES:
            job["priority"] = max(job["priority"], row["priority"] or 0)
    return counts


def _job(row: sqlite3.Row, counts: dict[str, Any], orders: Orders) -> dict[str, Any]:
    states: dict[str, int] = counts.get("states", {})
    return {
        "id": row["id"],
        "kind": row["kind"],
        "state": journal.job_state(states),
        "received_at": _iso(row["received_at"]),
        "pushes": row["pushes"],
        "items": row["items"],
        "orders": orders.shown,
        "priority": counts.get("priority", 0),
        "total": sum(n for state, n in states.items() if state != journal.CANCELLED),
        "delivered": states.get(DELIVERED, 0),
        "picked_up": states.get(PICKED_UP, 0),
        "failed": states.get(FAILED, 0),
        "in_progress": sum(states.get(state, 0) for state in (PENDING, DOWNLOADING, STAGED)),
        "cancelled": states.get(journal.CANCELLED, 0),
    }


# Failures


def _failures(db: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT id, job_id, name, artwork_name, printer, reason, error, attempts, updated_at "
        "FROM deliveries WHERE state = ? ORDER BY updated_at DESC LIMIT ?",
        (FAILED, MAX_FAILURES),
    )
    return [
        {
            "delivery_id": row["id"],
            "job_id": row["job_id"],
            "name": row["name"] or row["artwork_name"],
            "printer": row["printer"],
            "reason": row["reason"],
            "error": row["error"],
            "attempts": row["attempts"],
            "failed_at": _iso(row["updated_at"]),
        }
        for row in rows
    ]


# The systemd status line


async def status_line(daemon: Daemon) -> str:
    """Summarize the floor in one line, such as `3 of 3 printers online, 12 files waiting, ...`."""
    counts = await daemon.journal._run(_state_counts, daemon.journal._db)
    feeds = list(daemon.feeds.values())
    online = sum(feed.state == "online" for feed in feeds)
    queued = sum(counts.get(state, 0) for state in (PENDING, DOWNLOADING, STAGED))
    line = (
        f"{online} of {len(feeds)} printers online, {counts.get(DELIVERED, 0)} files waiting, "
        f"{queued} queued, {counts.get(FAILED, 0)} failed"
    )
    troubled = [f"{feed.name} {feed.state}" for feed in feeds if feed.state != "online"]
    return line + (f"; {', '.join(troubled)}" if troubled else "")


def _state_counts(db: sqlite3.Connection) -> dict[str, int]:
    states = (*WAITING_STATES, FAILED)
    marks = ",".join("?" * len(states))
    rows = db.execute(
        f"SELECT state, COUNT(*) AS n FROM deliveries WHERE state IN ({marks}) GROUP BY state",
        states,
    )
    return {row["state"]: row["n"] for row in rows}


def _local_midnight(now: float) -> float:
    """Return the start of today in the host's time zone, where the floor's day begins."""
    local = datetime.fromtimestamp(now).astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _iso(timestamp: float | None) -> str | None:
    """Format a timestamp as the rest of the API does: UTC, milliseconds, `Z`."""
    if timestamp is None:
        return None
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
