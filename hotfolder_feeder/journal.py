"""The journal: jobs, deliveries and their transitions in SQLite.

The journal is the truth the daemon restarts from. It runs in WAL mode with `synchronous=FULL`,
so a commit that returned survives a power cut. One connection lives on one dedicated thread;
every call hops to it, so SQLite never blocks the event loop and writes never interleave.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Delivery states. `stalled` is a flag on `delivered`, not a state.
PENDING = "pending"
DOWNLOADING = "downloading"
STAGED = "staged"
DELIVERED = "delivered"
PICKED_UP = "picked_up"
FAILED = "failed"
CANCELLED = "cancelled"
WAITING_STATES = (PENDING, DOWNLOADING, STAGED, DELIVERED)
# The order files are downloaded in and, with a feed limit, handed to the RIP: the order of printing.
RELEASE_ORDER = "d.priority DESC, j.received_at, d.job_id, d.position"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    received_at REAL NOT NULL,
    pushes INTEGER NOT NULL DEFAULT 1,
    items INTEGER NOT NULL,
    payload TEXT NOT NULL,
    notified_state TEXT
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    key TEXT NOT NULL,
    position INTEGER NOT NULL,
    item_id INTEGER,
    order_item_id INTEGER,
    artwork_name TEXT NOT NULL,
    url TEXT NOT NULL,
    ext TEXT NOT NULL,
    printer TEXT,
    name TEXT,
    path TEXT,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    stalled INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER,
    sha256 TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    error TEXT,
    staging_path TEXT,
    handoff_intent INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    staged_at REAL,
    delivered_at REAL,
    picked_up_at REAL,
    UNIQUE (job_id, key)
);
CREATE INDEX IF NOT EXISTS deliveries_by_state ON deliveries (state, next_attempt_at);
-- Covering indexes for the status API's counts, so they never read the delivery rows.
-- A journal from before this index kept a narrower one of the old name; it is replaced.
DROP INDEX IF EXISTS deliveries_by_printer;
CREATE INDEX IF NOT EXISTS deliveries_by_printer_state ON deliveries (printer, state, stalled);
CREATE INDEX IF NOT EXISTS deliveries_by_job_state ON deliveries (job_id, state);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS transitions_by_delivery ON transitions (delivery_id);
CREATE TABLE IF NOT EXISTS printers (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    changed_at REAL,
    changed_by TEXT
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    job_id INTEGER,
    printer TEXT,
    actor TEXT NOT NULL,
    detail TEXT
);
"""
# Bumped with each change of SCHEMA; a journal from an older version is migrated on open.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class NewDelivery:
    """A routed and named delivery, ready to be written with its job."""

    key: str
    position: int
    item_id: int | None
    order_item_id: int | None
    artwork_name: str
    url: str
    ext: str
    printer: str | None
    name: str | None
    priority: int = 0
    state: str = PENDING
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class AddResult:
    duplicate: bool
    deliveries: int
    added: int
    requeued: int


class Journal:
    """Owns the SQLite connection and its thread. Open with `await Journal.open(path)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._connection: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path) -> Journal:
        journal = cls(path)
        await journal._run(journal._connect)
        return journal

    async def close(self) -> None:
        if self._connection is not None:
            await self._run(self._connection.close)
            self._connection = None
        self._executor.shutdown(wait=True)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            connection.close()
            raise sqlite3.DatabaseError(
                f"journal {self.path} was written by a newer hotfolder-feeder "
                f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade it"
            )
        connection.executescript(SCHEMA)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._connection = connection

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._connection is not None, "journal is closed"
        return self._connection

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
        except BaseException:
            # SQLite rolls back by itself after some errors, such as a full disk.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # Writing jobs

    async def add_job(
        self, job_id: int, kind: str, payload: str, items: int, deliveries: Sequence[NewDelivery]
    ) -> AddResult:
        """Write a pushed job and its deliveries in one durable transaction.

        A job id seen before is a re-push: only deliveries with new keys are added, failed ones
        go back to pending, and nothing that is waiting or picked up is touched.
        """
        return await self._run(self._transaction, lambda db: _add_job(db, job_id, kind, payload, items, deliveries))

    async def known_keys(self, job_id: int) -> set[str]:
        def read() -> set[str]:
            rows = self._db.execute("SELECT key FROM deliveries WHERE job_id = ?", (job_id,))
            return {row["key"] for row in rows}

        return await self._run(read)

    # Moving deliveries through their states

    async def claim_due(self, now: float, limit: int, printers: Iterable[str]) -> list[sqlite3.Row]:
        """Mark up to `limit` due pending deliveries as downloading and return them.

        Order: priority, then the job's arrival, then the file's place in the job.
        """
        names = list(printers)

        def claim(db: sqlite3.Connection) -> list[sqlite3.Row]:
            marks = ",".join("?" * len(names))
            rows = db.execute(
                f"""SELECT d.* FROM deliveries d JOIN jobs j ON j.id = d.job_id
                    WHERE d.state = ? AND d.next_attempt_at <= ? AND d.printer IN ({marks})
                    ORDER BY {RELEASE_ORDER} LIMIT ?""",
                (PENDING, now, *names, limit),
            ).fetchall()
            for row in rows:
                _set_state(db, row["id"], DOWNLOADING, now)
            return rows

        if limit <= 0 or not names:
            return []
        return await self._run(self._transaction, claim)

    # An attempt is counted when it ends, so one cut short by a crash or a stop does not count.

    async def mark_staged(
        self, delivery_id: int, attempts: int, staging_path: str, size: int, sha256: str
    ) -> bool:
        """Record a finished download; False when the delivery was cancelled meanwhile."""

        def write(db: sqlite3.Connection) -> bool:
            now = time.time()
            if not _set_state(db, delivery_id, STAGED, now, f"{size} bytes", from_state=DOWNLOADING):
                return False
            db.execute(
                "UPDATE deliveries SET attempts = ?, staging_path = ?, bytes = ?, sha256 = ?, "
                "staged_at = ?, error = NULL, reason = NULL WHERE id = ?",
                (attempts, staging_path, size, sha256, now, delivery_id),
            )
            return True

        return await self._run(self._transaction, write)

    async def mark_retry(
        self, delivery_id: int, attempts: int, error: str, reason: str, retry_at: float
    ) -> bool:
        """Put a download back to pending after a transient failure, due again at `retry_at`."""

        def write(db: sqlite3.Connection) -> bool:
            detail = f"{reason}: {error}"
            if not _set_state(db, delivery_id, PENDING, time.time(), detail, from_state=DOWNLOADING):
                return False
            db.execute(
                "UPDATE deliveries SET attempts = ?, error = ?, reason = ?, next_attempt_at = ? "
                "WHERE id = ?",
                (attempts, error, reason, retry_at, delivery_id),
            )
            return True

        return await self._run(self._transaction, write)

    async def mark_failed(self, delivery_id: int, attempts: int, reason: str, error: str) -> bool:
        """Fail a download; False when the delivery was cancelled meanwhile."""

        def write(db: sqlite3.Connection) -> bool:
            detail = f"{reason}: {error}"
            if not _set_state(db, delivery_id, FAILED, time.time(), detail, from_state=DOWNLOADING):
                return False
            db.execute(
                "UPDATE deliveries SET attempts = ?, error = ?, reason = ?, staging_path = NULL "
                "WHERE id = ?",
                (attempts, error, reason, delivery_id),
            )
            return True

        return await self._run(self._transaction, write)

    async def queued(self, printer: str) -> list[sqlite3.Row]:
        """Return a printer's pending, downloading and staged deliveries in release order."""

        def read() -> list[sqlite3.Row]:
            return self._db.execute(
                f"""SELECT d.* FROM deliveries d JOIN jobs j ON j.id = d.job_id
                    WHERE d.printer = ? AND d.state IN (?, ?, ?)
                    ORDER BY {RELEASE_ORDER}""",
                (printer, PENDING, DOWNLOADING, STAGED),
            ).fetchall()

        return await self._run(read)

    async def mark_handoff_intent(self, delivery_id: int, path: str) -> None:
        """Record that the staged file is about to be renamed to `path`, before the rename."""
        await self._run(
            self._transaction,
            lambda db: db.execute(
                "UPDATE deliveries SET handoff_intent = 1, path = ? WHERE id = ?", (path, delivery_id)
            ),
        )

    async def mark_delivered(self, delivery_id: int, at: float) -> None:
        def write(db: sqlite3.Connection) -> None:
            if _set_state(db, delivery_id, DELIVERED, at, from_state=STAGED):
                db.execute(
                    "UPDATE deliveries SET delivered_at = ?, handoff_intent = 0, "
                    "staging_path = NULL WHERE id = ?",
                    (at, delivery_id),
                )

        await self._run(self._transaction, write)

    async def mark_picked_up(self, delivery_ids: Sequence[int], at: float) -> None:
        def write(db: sqlite3.Connection) -> None:
            for delivery_id in delivery_ids:
                if _set_state(db, delivery_id, PICKED_UP, at, from_state=DELIVERED):
                    db.execute(
                        "UPDATE deliveries SET picked_up_at = ? WHERE id = ?", (at, delivery_id)
                    )

        if delivery_ids:
            await self._run(self._transaction, write)

    async def mark_stalled(self, delivery_id: int) -> None:
        await self._run(
            self._transaction,
            lambda db: db.execute("UPDATE deliveries SET stalled = 1 WHERE id = ?", (delivery_id,)),
        )

    async def delivered(self, printer: str) -> list[sqlite3.Row]:
        """Return the deliveries of a printer that sit in its hot folder, not yet picked up."""

        def read() -> list[sqlite3.Row]:
            return self._db.execute(
                "SELECT id, job_id, name, path, delivered_at, stalled FROM deliveries "
                "WHERE printer = ? AND state = ?",
                (printer, DELIVERED),
            ).fetchall()

        return await self._run(read)

    async def active_ids(self, printer: str) -> set[int]:
        """Return the ids of a printer's deliveries that may own a staging file."""

        def read() -> set[int]:
            rows = self._db.execute(
                "SELECT id FROM deliveries WHERE printer = ? AND state IN (?, ?, ?)",
                (printer, PENDING, DOWNLOADING, STAGED),
            )
            return {row["id"] for row in rows}

        return await self._run(read)

    # Restart and operator actions

    async def recover(self) -> list[sqlite3.Row]:
        """Put interrupted downloads back to pending; return the staged deliveries to check."""

        def write(db: sqlite3.Connection) -> list[sqlite3.Row]:
            now = time.time()
            interrupted = db.execute("SELECT id FROM deliveries WHERE state = ?", (DOWNLOADING,))
            for row in interrupted.fetchall():
                _set_state(db, row["id"], PENDING, now, "interrupted by a stop")
            return db.execute("SELECT * FROM deliveries WHERE state = ?", (STAGED,)).fetchall()

        return await self._run(self._transaction, write)

    async def requeue(self, delivery_ids: Sequence[int], detail: str, from_state: str) -> None:
        """Put deliveries that are in `from_state` back to pending, due now.

        Their staging file is kept for a resume. A delivery that has moved on meanwhile, such as a
        download that committed `staged` as it was being cancelled, is left as it is.
        """

        def write(db: sqlite3.Connection) -> None:
            now = time.time()
            for delivery_id in delivery_ids:
                cursor = db.execute(
                    "UPDATE deliveries SET next_attempt_at = 0, handoff_intent = 0 "
                    "WHERE id = ? AND state = ?",
                    (delivery_id, from_state),
                )
                if cursor.rowcount:
                    _set_state(db, delivery_id, PENDING, now, detail)

        if delivery_ids:
            await self._run(self._transaction, write)

    async def retry_job(self, job_id: int, route: Route) -> int:
        """Put the failed deliveries of a job back to pending; return how many.

        `route` gives the printer and file name for a delivery that failed as unroutable, so a
        fixed config takes effect; it returns None while the delivery is still unroutable.
        """

        def write(db: sqlite3.Connection) -> int:
            rows = db.execute(
                "SELECT * FROM deliveries WHERE job_id = ? AND state = ?", (job_id, FAILED)
            ).fetchall()
            return sum(_requeue_failed(db, row, route) for row in rows)

        return await self._run(self._transaction, write)

    async def payload(self, job_id: int) -> str | None:
        """Return the JSON body of a job's latest push, or None when the job is not known."""

        def read() -> str | None:
            row = self._db.execute("SELECT payload FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else str(row["payload"])

        return await self._run(read)

    # Floor control: priorities, pauses, cancels, reprints, and the record of who did what

    async def record_action(
        self, action: str, actor: str, job_id: int | None = None, printer: str | None = None,
        detail: str | None = None,
    ) -> None:  # fmt: skip
        await self._run(
            self._transaction,
            lambda db: db.execute(
                "INSERT INTO actions (at, action, job_id, printer, actor, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), action, job_id, printer, actor, detail),
            ),
        )

    async def actions(self, job_id: int) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            rows = self._db.execute(
                "SELECT at, action, actor, printer, detail FROM actions WHERE job_id = ? ORDER BY id",
                (job_id,),
            )
            return [dict(row) for row in rows]

        return await self._run(read)

    async def set_priority(self, job_id: int, priority: int | None) -> int:
        """Set the priority of a job's waiting deliveries; None puts them ahead of all others."""

        def write(db: sqlite3.Connection) -> int:
            marks = ",".join("?" * len(WAITING_STATES))
            if priority is None:
                top = db.execute(
                    f"SELECT MAX(priority) FROM deliveries WHERE state IN ({marks})", WAITING_STATES
                ).fetchone()[0]
                chosen = (top or 0) + 1
            else:
                chosen = priority
            db.execute(
                f"UPDATE deliveries SET priority = ? WHERE job_id = ? AND state IN ({marks})",
                (chosen, job_id, *WAITING_STATES),
            )
            return chosen

        return await self._run(self._transaction, write)

    async def cancel(self, job_id: int) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
        """Cancel a job's deliveries that are not yet in a hot folder.

        Returns them, so their downloads and staging files can be stopped and removed, and the
        delivered ones, which the caller recalls from the hot folder.
        """

        def write(db: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
            now = time.time()
            rows = db.execute(
                "SELECT * FROM deliveries WHERE job_id = ? AND state IN (?, ?, ?, ?)",
                (job_id, PENDING, DOWNLOADING, STAGED, FAILED),
            ).fetchall()
            for row in rows:
                _set_state(db, row["id"], CANCELLED, now, "cancelled by an operator")
            delivered = db.execute(
                "SELECT * FROM deliveries WHERE job_id = ? AND state = ?", (job_id, DELIVERED)
            ).fetchall()
            return rows, delivered

        return await self._run(self._transaction, write)

    async def mark_recalled(self, delivery_id: int, path: str) -> None:
        """Record a delivered file moved out of the hot folder by a cancel."""

        def write(db: sqlite3.Connection) -> None:
            if _set_state(db, delivery_id, CANCELLED, time.time(), f"recalled to {path}", DELIVERED):
                db.execute("UPDATE deliveries SET path = ? WHERE id = ?", (path, delivery_id))

        await self._run(self._transaction, write)

    async def reprint(self, job_id: int, item_id: int | None) -> int:
        """Add a new delivery for each file of the job (or of one item) that was written before.

        Files still on their way are left alone: they will be written anyway.
        """

        def write(db: sqlite3.Connection) -> int:
            now = time.time()
            # Originals only: each earlier reprint is a copy of one, not a file of its own.
            query = (
                "SELECT * FROM deliveries WHERE job_id = ? AND state IN (?, ?, ?) "
                "AND printer IS NOT NULL AND instr(key, '#reprint') = 0"
            )
            parameters: tuple[Any, ...] = (job_id, DELIVERED, PICKED_UP, CANCELLED)
            if item_id is not None:
                query += " AND item_id = ?"
                parameters += (item_id,)
            rows = db.execute(query, parameters).fetchall()
            keys = {row["key"] for row in db.execute("SELECT key FROM deliveries WHERE job_id = ?", (job_id,))}
            return sum(_insert_reprint(db, row, keys, now) for row in rows)

        return await self._run(self._transaction, write)

    async def set_paused(self, printer: str, paused: bool, actor: str) -> None:
        await self._run(
            self._transaction,
            lambda db: db.execute(
                "INSERT INTO printers (name, paused, changed_at, changed_by) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, "
                "changed_at = excluded.changed_at, changed_by = excluded.changed_by",
                (printer, int(paused), time.time(), actor),
            ),
        )

    async def paused_printers(self) -> set[str]:
        def read() -> set[str]:
            return {row["name"] for row in self._db.execute("SELECT name FROM printers WHERE paused = 1")}

        return await self._run(read)

    async def last_pickup(self, printer: str) -> float | None:
        def read() -> float | None:
            row = self._db.execute(
                "SELECT MAX(picked_up_at) FROM deliveries WHERE printer = ?", (printer,)
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._run(read)

    async def job_state_change(self, job_id: int) -> tuple[str | None, str] | None:
        """Return (old, new) when a job's derived state changed since the last call, else None."""

        def write(db: sqlite3.Connection) -> tuple[str | None, str] | None:
            row = db.execute("SELECT notified_state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            rows = db.execute(
                "SELECT state, COUNT(*) AS n FROM deliveries WHERE job_id = ? GROUP BY state", (job_id,)
            )
            new = job_state({r["state"]: r["n"] for r in rows})
            if new == row["notified_state"]:
                return None
            db.execute("UPDATE jobs SET notified_state = ? WHERE id = ?", (new, job_id))
            return row["notified_state"], new

        return await self._run(self._transaction, write)

    async def job_exists(self, job_id: int) -> bool:
        def read() -> bool:
            row = self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return row is not None

        return await self._run(read)

    # Reading for the API

    async def waiting_counts(self) -> dict[str, int]:
        """Return, per printer, how many deliveries are not yet picked up, failed or cancelled."""

        def read() -> dict[str, int]:
            marks = ",".join("?" * len(WAITING_STATES))
            rows = self._db.execute(
                f"SELECT printer, COUNT(*) AS n FROM deliveries WHERE state IN ({marks}) "
                "GROUP BY printer",
                WAITING_STATES,
            )
            return {row["printer"]: row["n"] for row in rows if row["printer"]}

        return await self._run(read)

    async def printer_counts(self) -> dict[str, dict[str, int]]:
        """Return, per printer, the number of deliveries in each state, and stalled ones."""

        def read() -> dict[str, dict[str, int]]:
            counts: dict[str, dict[str, int]] = {}
            rows = self._db.execute(
                "SELECT printer, state, COUNT(*) AS n, SUM(stalled) AS stalled FROM deliveries "
                "GROUP BY printer, state"
            )
            for row in rows:
                printer = counts.setdefault(row["printer"] or "", {})
                printer[row["state"]] = row["n"]
                if row["state"] == DELIVERED:
                    printer["stalled"] = row["stalled"] or 0
            return counts

        return await self._run(read)

    async def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the newest jobs with their delivery counts by state."""

        def read() -> list[dict[str, Any]]:
            jobs = self._db.execute(
                "SELECT id, kind, received_at, pushes, items FROM jobs "
                "ORDER BY received_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [self._job_summary(row) for row in jobs]

        return await self._run(read)

    def _job_summary(self, job: sqlite3.Row) -> dict[str, Any]:
        rows = self._db.execute(
            "SELECT state, COUNT(*) AS n FROM deliveries WHERE job_id = ? GROUP BY state",
            (job["id"],),
        )
        counts = {row["state"]: row["n"] for row in rows}
        return {**dict(job), "state": job_state(counts), "counts": counts}

    async def job(self, job_id: int) -> dict[str, Any] | None:
        """Return one job with all its deliveries, or None when it is not known."""

        def read() -> dict[str, Any] | None:
            job = self._db.execute(
                "SELECT id, kind, received_at, pushes, items FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if job is None:
                return None
            deliveries = self._db.execute(
                "SELECT * FROM deliveries WHERE job_id = ? ORDER BY position", (job_id,)
            ).fetchall()
            summary = self._job_summary(job)
            summary["deliveries"] = [dict(row) for row in deliveries]
            return summary

        return await self._run(read)

    async def check_writable(self) -> None:
        """Write and roll back a row, so a full disk or a read-only journal raises here."""

        def probe(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO transitions (delivery_id, at, state) VALUES (0, 0, 'probe')")
            raise _Rollback

        try:
            await self._run(self._transaction, probe)
        except _Rollback:
            pass


class _Rollback(Exception):
    """Raised inside a transaction to roll it back on purpose."""


def job_state(counts: dict[str, int]) -> str:
    """Derive a job's state from the number of its deliveries in each state."""
    active = sum(counts.get(state, 0) for state in (PENDING, DOWNLOADING, STAGED))
    live = sum(n for state, n in counts.items() if state != CANCELLED)
    if counts and not live:
        return "cancelled"
    if active:
        return "in_progress"
    if counts.get(FAILED):
        return "failed"
    if counts.get(DELIVERED):
        return "delivered"
    return "completed"


def _add_job(
    db: sqlite3.Connection,
    job_id: int,
    kind: str,
    payload: str,
    items: int,
    deliveries: Sequence[NewDelivery],
) -> AddResult:
    now = time.time()
    duplicate = db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None
    if duplicate:
        db.execute(
            "UPDATE jobs SET pushes = pushes + 1, payload = ?, items = ? WHERE id = ?",
            (payload, items, job_id),
        )
    else:
        db.execute(
            "INSERT INTO jobs (id, kind, received_at, items, payload) VALUES (?, ?, ?, ?, ?)",
            (job_id, kind, now, items, payload),
        )

    added = sum(_insert_delivery(db, job_id, delivery, now) for delivery in deliveries)
    requeued = _requeue_failed_of_job(db, job_id) if duplicate else 0
    total = db.execute("SELECT COUNT(*) FROM deliveries WHERE job_id = ?", (job_id,)).fetchone()[0]
    return AddResult(duplicate=duplicate, deliveries=total, added=added, requeued=requeued)


def _insert_delivery(db: sqlite3.Connection, job_id: int, delivery: NewDelivery, now: float) -> int:
    cursor = db.execute(
        """INSERT OR IGNORE INTO deliveries
           (job_id, key, position, item_id, order_item_id, artwork_name, url, ext, printer, name,
            priority, state, reason, error, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            job_id, delivery.key, delivery.position, delivery.item_id, delivery.order_item_id,
            delivery.artwork_name, delivery.url, delivery.ext, delivery.printer, delivery.name,
            delivery.priority, delivery.state, delivery.reason, delivery.error, now, now,
        ),
    )  # fmt: skip
    if cursor.rowcount == 0:
        return 0
    _log_transition(db, cursor.lastrowid or 0, delivery.state, now, delivery.reason)
    return 1


def _insert_reprint(db: sqlite3.Connection, row: sqlite3.Row, keys: set[str], now: float) -> int:
    base = row["key"].partition("#reprint")[0]
    number = 1
    while f"{base}#reprint{number}" in keys:
        number += 1
    key = f"{base}#reprint{number}"
    keys.add(key)
    cursor = db.execute(
        """INSERT INTO deliveries
           (job_id, key, position, item_id, order_item_id, artwork_name, url, ext, printer, name,
            priority, state, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            row["job_id"], key, row["position"], row["item_id"], row["order_item_id"],
            row["artwork_name"], row["url"], row["ext"], row["printer"], row["name"],
            row["priority"], PENDING, now, now,
        ),
    )  # fmt: skip
    _log_transition(db, cursor.lastrowid or 0, PENDING, now, f"reprint of delivery {row['id']}")
    return 1


def _requeue_failed_of_job(db: sqlite3.Connection, job_id: int) -> int:
    """Put the failed deliveries of a re-pushed job back to pending if they have a printer."""
    rows = db.execute(
        "SELECT * FROM deliveries WHERE job_id = ? AND state = ?", (job_id, FAILED)
    ).fetchall()
    return sum(_requeue_failed(db, row, lambda row: None) for row in rows)


Route = Callable[[sqlite3.Row], tuple[str, str] | None]


def _requeue_failed(db: sqlite3.Connection, row: sqlite3.Row, route: Route) -> int:
    if row["printer"]:
        printer, name = row["printer"], row["name"]
    else:
        routed = route(row)
        if routed is None:
            return 0
        printer, name = routed
    db.execute(
        "UPDATE deliveries SET printer = ?, name = ?, attempts = 0, next_attempt_at = 0, "
        "reason = NULL WHERE id = ?",
        (printer, name, row["id"]),
    )
    _set_state(db, row["id"], PENDING, time.time(), "retry")
    return 1


def _set_state(
    db: sqlite3.Connection,
    delivery_id: int,
    state: str,
    at: float,
    detail: str | None = None,
    from_state: str | None = None,
) -> bool:
    """Move a delivery to `state`; with `from_state`, only from that state. Return whether it moved."""
    if from_state is None:
        cursor = db.execute(
            "UPDATE deliveries SET state = ?, updated_at = ? WHERE id = ?", (state, at, delivery_id)
        )
    else:
        cursor = db.execute(
            "UPDATE deliveries SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
            (state, at, delivery_id, from_state),
        )
    if cursor.rowcount:
        _log_transition(db, delivery_id, state, at, detail)
    return bool(cursor.rowcount)


def _log_transition(
    db: sqlite3.Connection, delivery_id: int, state: str, at: float, detail: str | None
) -> None:
    db.execute(
        "INSERT INTO transitions (delivery_id, at, state, detail) VALUES (?, ?, ?, ?)",
        (delivery_id, at, state, detail),
    )
