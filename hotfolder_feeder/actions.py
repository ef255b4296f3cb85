"""Operator actions: retry, reprint, cancel, prioritize, pause and resume.

Each is recorded in the journal with who asked and when. `actor` names the operator as the
client gave it, and the address the request came from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from . import fetch, handoff, journal

if TYPE_CHECKING:
    from .daemon import Daemon

log = structlog.get_logger("hotfolder_feeder.actions")


async def retry(daemon: Daemon, job_id: int, actor: str) -> dict[str, Any]:
    count = await daemon.retry(job_id)
    await daemon.journal.record_action("retry", actor, job_id=job_id, detail=f"{count} deliveries")
    return {"job_id": job_id, "retried": count}


async def reprint(daemon: Daemon, job_id: int, item_id: int | None, actor: str) -> dict[str, Any]:
    """Write a job's files (or one item's) again, on purpose, as new deliveries."""
    count = await daemon.journal.reprint(job_id, item_id)
    if count == 0:
        what = f"item {item_id} of job {job_id}" if item_id is not None else f"job {job_id}"
        raise web.HTTPNotFound(text=f"{what} has no file written to a hot folder yet; nothing to reprint")
    detail = f"{count} deliveries" + (f" of item {item_id}" if item_id is not None else "")
    await daemon.journal.record_action("reprint", actor, job_id=job_id, detail=detail)
    daemon.wake_dispatcher()
    log.info("job_reprinted", job_id=job_id, item_id=item_id, deliveries=count, actor=actor)
    return {"job_id": job_id, "reprinted": count}


async def cancel(daemon: Daemon, job_id: int, actor: str) -> dict[str, Any]:
    """Drop a job's waiting deliveries and recall its files that the RIP has not taken."""
    # Hold every feed's lock, so no hand-off of this job is half done while it is cancelled.
    async with contextlib.AsyncExitStack() as locks:
        for feed in daemon.feeds.values():
            await locks.enter_async_context(feed.lock)
        dropped, delivered = await daemon.journal.cancel(job_id)
    await daemon.cancel_downloads({row["id"] for row in dropped if row["state"] == journal.DOWNLOADING})
    for row in dropped:
        if row["printer"] in daemon.feeds:
            staging = handoff.staging_path(daemon.feeds[row["printer"]].printer, row["id"])
            await asyncio.to_thread(fetch.discard_staging, staging)

    by_printer: dict[str, list[Any]] = defaultdict(list)
    for row in delivered:
        by_printer[row["printer"]].append(row)
    for printer, rows in by_printer.items():
        await daemon.feeds[printer].recall(rows)

    detail = f"{len(dropped)} dropped, {len(delivered)} recalled"
    await daemon.journal.record_action("cancel", actor, job_id=job_id, detail=detail)
    log.info("job_cancelled", job_id=job_id, dropped=len(dropped), recalled=len(delivered), actor=actor)
    return {"job_id": job_id, "cancelled": len(dropped), "recalled": len(delivered)}


async def prioritize(daemon: Daemon, job_id: int, priority: int | None, actor: str) -> dict[str, Any]:
    """Set a job's priority; without a number, put it ahead of everything waiting."""
    chosen = await daemon.journal.set_priority(job_id, priority)
    await daemon.journal.record_action("prioritize", actor, job_id=job_id, detail=f"priority {chosen}")
    for feed in daemon.feeds.values():
        feed.wake.set()
    log.info("job_prioritized", job_id=job_id, priority=chosen, actor=actor)
    return {"job_id": job_id, "priority": chosen}


async def set_paused(daemon: Daemon, printer: str, paused: bool, actor: str) -> dict[str, Any]:
    """Pause a printer (it keeps what it has and gets nothing new) or resume it."""
    feed = daemon.feeds[printer]
    await daemon.journal.set_paused(printer, paused, actor)
    await daemon.journal.record_action("pause" if paused else "resume", actor, printer=printer)
    feed.paused = paused
    feed.wake.set()
    daemon.wake_dispatcher()
    log.info("printer_paused" if paused else "printer_resumed", printer=printer, actor=actor)
    return {"printer": printer, "paused": paused}
