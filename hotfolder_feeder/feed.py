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
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from . import handoff, journal
from .config import PrinterSettings
from .journal import Journal
from .notify import Notifier
from .watch import RECONCILE_INTERVAL, Identity, NativeWatcher, check_health, watch_mode

log = structlog.get_logger("hotfolder_feeder.feed")


class PrinterFeed:
    """Owns one printer's hot folder, its watcher and the loop that feeds it."""

    def __init__(
        self,
        printer: PrinterSettings,
        journal: Journal,
        notifier: Notifier,
        on_jobs_changed: Callable[[set[int]], Awaitable[None]],
    ) -> None:
        self.printer = printer
        self.journal = journal
        self.wake = asyncio.Event()
        self.identity: Identity | None = None
        self.mode: str = printer.watch
        self.outage: str | None = None
        self.paused = False
        self.rip_offline = False
        self.last_pass_at: float | None = None
        self.last_pickup_at: float | None = None
        self._notifier = notifier
        self._on_jobs_changed = on_jobs_changed
        self.lock = asyncio.Lock()
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
        self.last_pickup_at = await self.journal.last_pickup(self.name)
        if await self._check_health():
            self._ensure_watcher()
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
            woken = await wait_for_wake(self.wake, self.printer.poll_interval)
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
        async with self.lock:
            if not await self._check_health():
                return
            self._ensure_watcher()
            if not full:
                # Events keep pickups current between scans; stalls and idle RIPs are timed.
                waiting = await self.journal.delivered(self.name) if self.mode != "off" else []
                await self._flag_stalls(waiting)
                self._check_rip(waiting)
                return

            present = await asyncio.to_thread(handoff.list_files, self.printer.hotfolder)
            waiting = await self._record_pickups(present)
            await self._flag_stalls(waiting)
            self._check_rip(waiting)
            await self._hand_off(present, len(waiting))
            self.last_pass_at = time.time()

    async def _check_health(self) -> bool:
        identity, reason = await asyncio.to_thread(check_health, self.printer, self.identity)
        if reason is not None:
            self._enter_outage(reason)
            return False
        assert identity is not None
        previous, self.identity = self.identity, identity
        if previous is not None and identity.inode != previous.inode:
            # The folder was made anew at the same path: inotify still watches the old one.
            await self._stop_watcher()
        if previous is None:
            self.mode = watch_mode(self.printer, identity.fstype)
            await asyncio.to_thread(handoff.prepare_staging, self.printer)
        if self.outage is not None:
            log.warning("printer_recovered", printer=self.name, after=self.outage)
            self.outage = None
        return True

    def _enter_outage(self, reason: str) -> None:
        if self.outage != reason:
            log.error("printer_outage", printer=self.name, reason=reason)
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
        if not gone:
            return delivered

        now = time.time()
        await self.journal.mark_picked_up([row["id"] for row in gone], now)
        self.last_pickup_at = now
        for row in gone:
            log.info(
                "file_picked_up", printer=self.name, job_id=row["job_id"], delivery_id=row["id"],
                name=row["name"], seconds=round(now - row["delivered_at"], 3),
            )  # fmt: skip
            if row["stalled"]:
                log.info("file_stall_cleared", printer=self.name, delivery_id=row["id"], name=row["name"])
        await self._on_jobs_changed({row["job_id"] for row in gone})
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
                self._notifier.emit(
                    "file_stalled", printer=self.name, job_id=row["job_id"],
                    delivery_id=row["id"], name=row["name"],
                )  # fmt: skip

    def _check_rip(self, waiting: list[sqlite3.Row]) -> None:
        """Flag the RIP offline when files wait and it has taken nothing for `offline_after`."""
        if self.mode == "off":
            return
        now = time.time()
        oldest = min((row["delivered_at"] for row in waiting), default=None)
        idle_since = max(self.last_pickup_at or 0.0, oldest or 0.0)
        offline = oldest is not None and now - idle_since > self.printer.offline_after
        if offline and not self.rip_offline:
            log.warning("printer_offline", printer=self.name, files_waiting=len(waiting), idle_seconds=round(now - idle_since))
            self._notifier.emit("printer_offline", printer=self.name, files_waiting=len(waiting))
        elif self.rip_offline and not offline:
            log.warning("printer_online", printer=self.name)
            self._notifier.emit("printer_online", printer=self.name)
        self.rip_offline = offline

    async def _hand_off(self, present: set[str], waiting: int) -> None:
        """Release staged files in print order while the printer accepts more.

        With a feed limit the order is strict: a file still downloading holds back the files
        behind it, except one waiting to retry, which must not block the printer.
        """
        if self.paused:
            return
        limit = self.printer.max_waiting if self.mode != "off" else 0
        released: set[int] = set()
        for row in await self.journal.queued(self.name):
            if limit and waiting >= limit:
                break
            if row["state"] != journal.STAGED:
                if limit and _holds_its_place(row):
                    break
                continue
            if row["name"] in present:
                self._note_name_taken(row)
                continue
            if await self._hand_off_one(row):
                present.add(row["name"])
                waiting += 1
                released.add(row["job_id"])
        if released:
            await self._on_jobs_changed(released)

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

    async def recall(self, rows: list[sqlite3.Row]) -> None:
        """Move delivered files of a cancelled job out of the hot folder, never deleting them.

        They go to the `recalled` folder beside staging, on the same filesystem, so the move is
        an atomic rename. A file already gone was taken by the RIP and counts as picked up.
        """
        async with self.lock:
            for row in rows:
                folder = self.printer.staging_dir / "recalled" / f"{row['job_id']}-{row['id']}"
                target = folder / row["name"]
                try:
                    await asyncio.to_thread(handoff.recall, self.printer.hotfolder / row["name"], target)
                except FileNotFoundError:
                    await self.journal.mark_picked_up([row["id"]], time.time())
                    continue
                await self.journal.mark_recalled(row["id"], str(target))
                log.info("file_recalled", printer=self.name, job_id=row["job_id"], delivery_id=row["id"], path=str(target))

    @property
    def state(self) -> str:
        """The printer's state for operators: outage, paused, offline or online."""
        if self.outage:
            return "outage"
        if self.paused:
            return "paused"
        return "offline" if self.rip_offline else "online"

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "hotfolder": str(self.printer.hotfolder),
            "group": self.printer.group,
            "watch": self.mode,
            "filesystem": self.identity.fstype if self.identity else None,
            "state": self.state,
            "outage": self.outage,
            "max_waiting": self.printer.max_waiting,
            "watcher_alive": self.is_alive(),
            "last_pickup_at": self.last_pickup_at,
            "last_scan_at": self.last_pass_at,
        }



async def wait_for_wake(wake: asyncio.Event, timeout: float) -> bool:
    """Wait until `wake` is set or `timeout` passes; return whether it was set.

    `asyncio.timeout` rather than `wait_for`: on Python 3.11, `wait_for` swallows a cancellation
    that arrives as the event is set, so a stop could be missed and the shutdown hang.
    """
    try:
        async with asyncio.timeout(timeout):
            await wake.wait()
    except TimeoutError:
        # Set just as the time ran out: still a wake-up, or the caller's clear() would lose it.
        return wake.is_set()
    return True


def _holds_its_place(row: sqlite3.Row) -> bool:
    """Return whether a queued file on its first download keeps the files behind it waiting."""
    state, attempts = str(row["state"]), int(row["attempts"])
    return state == journal.DOWNLOADING or (state == journal.PENDING and attempts == 0)
