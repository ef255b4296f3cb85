"""One printer's feed: hand-offs into its hot folder, pickups, stalls and outages.

Each printer has one loop that owns every change to its hot folder, so a hand-off and a pickup
of the same name never race. The loop wakes on watcher events, when a download is staged, and on
a timer (the poll interval when polling, the reconcile interval otherwise), then runs one pass:
check the folder's health, mark files that left as picked up, flag stalls, and release staged
files while the printer accepts more.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
import time
from pathlib import Path

import structlog

from . import handoff, journal
from .config import PrinterSettings
from .journal import Journal
from .watch import RECONCILE_INTERVAL, Identity, NativeWatcher, check_health, watch_mode

log = structlog.get_logger("hotfolder_feeder.feed")


class PrinterFeed:
    """Owns one printer's hot folder, its watcher and the loop that feeds it."""

    def __init__(self, printer: PrinterSettings, journal: Journal) -> None:
        self.printer = printer
        self.journal = journal
        self.wake = asyncio.Event()
        self.identity: Identity | None = None
        self.mode = printer.watch
        self.outage: str | None = None
        self.last_pass_at: float | None = None
        self._watcher: NativeWatcher | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting_on_names: set[str] = set()

    @property
    def name(self) -> str:
        return self.printer.name

    async def start(self) -> None:
        """Learn the hot folder's filesystem and prepare staging, then start the loop.

        A hot folder that cannot be used yet is an outage, not an error: the loop keeps checking
        and starts feeding when it appears. A staging folder on another filesystem is an error.
        """
        await self._check_health()
        self._task = asyncio.create_task(self._run(), name=f"feed-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stop_watcher()

    async def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await watcher.stop()

    def is_alive(self) -> bool:
        task_alive = self._task is not None and not self._task.done()
        watcher_alive = self._watcher is None or self._watcher.is_alive()
        return task_alive and watcher_alive

    async def _run(self) -> None:
        woken = True
        while True:
            try:
                await self.run_pass(full=woken or self._reconcile_due())
            except Exception:
                log.exception("feed_pass_failed", printer=self.name)
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.printer.poll_interval)
                woken = True
            except TimeoutError:
                woken = False
            self.wake.clear()

    def _reconcile_due(self) -> bool:
        """Polling scans every interval; with inotify a full scan only catches missed events."""
        if self.mode != "native" or self.last_pass_at is None:
            return True
        return time.time() - self.last_pass_at >= RECONCILE_INTERVAL

    async def run_pass(self, full: bool = True) -> None:
        """Check health; on a full pass also record pickups and stalls and hand off staged files.

        The health check runs every poll interval whatever the watch mode, so an outage is seen
        as fast on a local folder as on a share.
        """
        if not await self._check_health():
            return
        self._ensure_watcher()
        if not full:
            return

        present = await asyncio.to_thread(handoff.list_files, self.printer.hotfolder)
        waiting = await self._record_pickups(present)
        await self._flag_stalls(waiting)
        await self._hand_off(present, len(waiting))
        self.last_pass_at = time.time()

    async def _check_health(self) -> bool:
        identity, reason = await asyncio.to_thread(check_health, self.printer, self.identity)
        if reason is not None:
            self._enter_outage(reason)
            return False
        first_contact = self.identity is None
        if not first_contact and identity is not None and identity.inode != self.identity.inode:
            # The folder was made anew at the same path: inotify still watches the old one.
            await self._stop_watcher()
        self.identity = identity
        if first_contact:
            assert identity is not None
            self.mode = watch_mode(self.printer, identity.fstype)
            await asyncio.to_thread(handoff.prepare_staging, self.printer)
        if self.outage is not None:
            log.warning("printer_recovered", printer=self.name, after=self.outage)
            self.outage = None
        return True

    def _enter_outage(self, reason: str) -> None:
        if self.outage != reason:
            log.error("printer_offline", printer=self.name, reason=reason)
        self.outage = reason

    def _ensure_watcher(self) -> None:
        if self.mode != "native" or (self._watcher is not None and self._watcher.is_alive()):
            return
        if self._watcher is not None:
            log.warning("watcher_restarted", printer=self.name)
        self._watcher = NativeWatcher(self.printer.hotfolder, self.wake)
        try:
            self._watcher.start()
        except OSError as error:
            log.error("watcher_start_failed", printer=self.name, error=str(error))

    async def _record_pickups(self, present: set[str]) -> list[sqlite3.Row]:
        """Mark delivered files that left the hot folder as picked up; return those still there."""
        if self.mode == "off":
            return []
        delivered = await self.journal.delivered(self.name)
        gone = [row for row in delivered if row["name"] not in present]
        now = time.time()
        await self.journal.mark_picked_up([row["id"] for row in gone], now)
        for row in gone:
            log.info(
                "file_picked_up", printer=self.name, job_id=row["job_id"], delivery_id=row["id"],
                name=row["name"], seconds=round(now - row["delivered_at"], 3),
            )  # fmt: skip
        return [row for row in delivered if row["name"] in present]

    async def _flag_stalls(self, waiting: list[sqlite3.Row]) -> None:
        cutoff = time.time() - self.printer.stall_after
        for row in waiting:
            if not row["stalled"] and row["delivered_at"] < cutoff:
                await self.journal.mark_stalled(row["id"])
                log.warning(
                    "file_stalled", printer=self.name, job_id=row["job_id"],
                    delivery_id=row["id"], name=row["name"], stall_after=self.printer.stall_after,
                )  # fmt: skip

    async def _hand_off(self, present: set[str], waiting: int) -> None:
        limit = self.printer.max_waiting if self.mode != "off" else 0
        for row in await self.journal.staged(self.name):
            if limit and waiting >= limit:
                return
            if row["name"] in present:
                self._note_name_taken(row)
                continue
            if await self._hand_off_one(row):
                present.add(row["name"])
                waiting += 1

    async def _hand_off_one(self, row: sqlite3.Row) -> bool:
        delivery_id = row["id"]
        final = self.printer.hotfolder / row["name"]
        staged = Path(row["staging_path"])
        await self.journal.mark_handoff_intent(delivery_id, str(final))
        try:
            await asyncio.to_thread(handoff.hand_off, staged, final)
        except FileExistsError:
            self._note_name_taken(row)
            return False
        except FileNotFoundError:
            log.warning("staged_file_missing", printer=self.name, delivery_id=delivery_id, path=str(staged))
            await self.journal.requeue([delivery_id], "staged file missing", journal.STAGED)
            return False
        except OSError as error:
            if error.errno == errno.ENOSPC:
                log.warning("hotfolder_full", printer=self.name, delivery_id=delivery_id)
            else:
                log.error("handoff_failed", printer=self.name, delivery_id=delivery_id, error=str(error))
            return False
        await self.journal.mark_delivered(delivery_id, time.time())
        self._waiting_on_names.discard(row["name"])
        log.info(
            "file_delivered", printer=self.name, job_id=row["job_id"], delivery_id=delivery_id,
            name=row["name"], bytes=row["bytes"],
        )  # fmt: skip
        return True

    def _note_name_taken(self, row: sqlite3.Row) -> None:
        name = row["name"]
        if name not in self._waiting_on_names:
            self._waiting_on_names.add(name)
            log.warning(
                "file_name_taken", printer=self.name, delivery_id=row["id"], name=name,
                detail="a file of this name is in the hot folder; waiting until it is gone",
            )  # fmt: skip

    async def recover(self, staged: list[sqlite3.Row]) -> None:
        """Resolve staged deliveries left by a stop, then remove orphan staging files."""
        for row in staged:
            await self._recover_one(row)
        active = await self.journal.active_ids(self.name)
        removed = await asyncio.to_thread(handoff.remove_orphans, self.printer, active)
        if removed:
            log.info("staging_orphans_removed", printer=self.name, files=len(removed))

    async def _recover_one(self, row: sqlite3.Row) -> None:
        delivery_id = row["id"]
        staged = Path(row["staging_path"] or "")
        if row["staging_path"] and await asyncio.to_thread(staged.exists):
            return
        if row["handoff_intent"]:
            # The rename happened but its commit did not: the file is (or was) in the hot folder.
            await self.journal.mark_delivered(delivery_id, time.time())
            log.info("handoff_recovered", printer=self.name, delivery_id=delivery_id)
            return
        await self.journal.requeue([delivery_id], "staged file missing at start", journal.STAGED)

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "hotfolder": str(self.printer.hotfolder),
            "group": self.printer.group,
            "watch": self.mode,
            "filesystem": self.identity.fstype if self.identity else None,
            "state": "outage" if self.outage else "online",
            "outage": self.outage,
            "max_waiting": self.printer.max_waiting,
            "watcher_alive": self.is_alive(),
            "last_scan_at": self.last_pass_at,
        }

