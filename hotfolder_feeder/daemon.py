"""The daemon: wiring, start-up, the download dispatcher, and shutdown.

Start-up recovers from the journal before anything listens; shutdown runs as ordered steps so
that nothing acknowledged is lost: stop taking pushes, let running downloads finish for a grace
period, put the rest back to pending, stop the printers' loops, close the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import sqlite3
import time
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from . import fetch, floor_view, handoff, journal, server, systemd
from .config import Settings, split_listen
from .errors import ConfigError, PermanentFetchError, TransientFetchError
from .feed import PrinterFeed, wait_for_wake
from .journal import AddResult, Journal, NewDelivery
from .metrics import Metrics
from .notify import Notifier
from .kornitx import Job, PlannedDelivery, parse_job, plan
from .naming import file_name
from .routing import Router

log = structlog.get_logger("hotfolder_feeder.daemon")

DISPATCH_INTERVAL = 1.0
JOB_EVENTS = {"delivered": "job_delivered", "completed": "job_completed", "failed": "job_failed"}


class Daemon:
    """Owns every long-lived resource: journal, client session, printer feeds, server, tasks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.journal: Journal = None  # type: ignore[assignment]  # set by start()
        self.feeds: dict[str, PrinterFeed] = {}
        self.listen_url = ""
        self._session: aiohttp.ClientSession | None = None
        self._fetcher: fetch.Fetcher | None = None
        self._runner: web.AppRunner | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._downloads: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self.notifier = Notifier(settings.notify.webhooks)
        self._ssl_context: Any = None
        self.metrics = Metrics()
        self.floor = floor_view.FloorView()
        self._systemd = systemd.ServiceNotifier()

    # Start-up

    async def start(self) -> None:
        """Open the journal, recover, start the printers and downloads, then listen."""
        _check_listen_is_safe(self.settings)
        self.journal = await Journal.open(self.settings.storage.state_dir / "journal.sqlite3")
        await self.metrics.attach(self.journal)
        staged = await self.journal.recover()
        paused = await self.journal.paused_printers()
        await self.notifier.start()

        for printer in self.settings.printers:
            feed = PrinterFeed(printer, self.journal, self.notifier, self.jobs_changed)
            feed.paused = printer.name in paused
            await feed.start()
            await feed.recover([row for row in staged if row["printer"] == printer.name])
            self.feeds[printer.name] = feed

        self._session = fetch.make_session(self.settings.download)
        self._fetcher = fetch.Fetcher(self._session, self.settings.download)
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="dispatcher")
        await self._listen()
        log.info("daemon_started", url=self.listen_url, printers=list(self.feeds))
        await self._systemd.ready(lambda: floor_view.status_line(self), self._dispatcher_alive)

    def _dispatcher_alive(self) -> bool:
        return self._dispatcher is not None and not self._dispatcher.done()

    async def _listen(self) -> None:
        host, port = split_listen(self.settings.server.listen)
        self._runner = web.AppRunner(server.create_app(self), access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        ssl_context = _ssl_context(self.settings)
        self._ssl_context = ssl_context
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        scheme = "https" if ssl_context else "http"
        shown_host = f"[{host}]" if ":" in host else host
        self.listen_url = f"{scheme}://{shown_host}:{bound_port}"

    def reload_tls(self) -> None:
        """Load the TLS certificate and key again, for new connections; on SIGHUP after renewal."""
        tls = self.settings.server.tls
        if self._ssl_context is None or tls.cert is None or tls.key is None:
            log.info("tls_reload_skipped", reason="TLS is not configured")
            return
        try:
            self._ssl_context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ValueError) as error:
            log.error("tls_reload_failed", cert=str(tls.cert), error=str(error))
            return
        log.info("tls_reloaded", cert=str(tls.cert))

    # Receiving jobs

    async def receive(self, job: Job, payload: str) -> AddResult:
        """Plan, route and name a job's deliveries, then commit them durably to the journal."""
        known = await self.journal.known_keys(job.id)
        router = await self.router()
        # Planning, routing and naming 20,000 files takes a while: off the event loop.
        deliveries = await asyncio.to_thread(self._new_deliveries, router, job, known)
        result = await self.journal.add_job(job.id, job.kind, payload, len(job.items), deliveries)
        self._wake.set()
        log.info(
            "job_received", job_id=job.id, kind=job.kind, deliveries=result.deliveries,
            duplicate=result.duplicate, added=result.added, requeued=result.requeued,
        )  # fmt: skip
        return result

    async def router(self) -> Router:
        """Return a router for one job, with the current waiting counts and paused printers."""
        paused = {name for name, feed in self.feeds.items() if feed.paused}
        return Router(self.settings, await self.journal.waiting_counts(), paused)

    def _new_deliveries(self, router: Router, job: Job, known: set[str]) -> list[NewDelivery]:
        return [self._new_delivery(router, item, job.id) for item in plan(job) if item.key not in known]

    def _new_delivery(self, router: Router, item: PlannedDelivery, job_id: int) -> NewDelivery:
        route = router.route(item)
        common: dict[str, Any] = {
            "key": item.key, "position": item.position, "item_id": item.item_id,
            "order_item_id": item.order_item_id, "artwork_name": item.artwork_name,
            "url": item.url, "ext": item.ext,
        }  # fmt: skip
        if route is None:
            return NewDelivery(
                **common, printer=None, name=None, state=journal.FAILED, reason="unroutable",
                error="no routing rule matches and there is no routing.default; fix the config, then retry",
            )  # fmt: skip
        name = file_name(self.settings.printer(route.printer), item, job_id)
        return NewDelivery(**common, printer=route.printer, name=name, priority=route.priority)

    async def retry(self, job_id: int) -> int:
        """Put a job's failed deliveries back to pending, routing again those that had no printer."""
        payload = await self.journal.payload(job_id)
        router = await self.router()
        planned = _planned_by_key(payload)

        def route(row: sqlite3.Row) -> tuple[str, str] | None:
            item = planned.get(row["key"])
            routed = router.route(item) if item else None
            if item is None or routed is None:
                return None
            return routed.printer, file_name(self.settings.printer(routed.printer), item, job_id)

        count = await self.journal.retry_job(job_id, route)
        self._wake.set()
        log.info("job_retried", job_id=job_id, deliveries=count)
        return count

    # Downloads

    async def _dispatch_loop(self) -> None:
        while True:
            try:
                await self._dispatch()
            except sqlite3.Error as error:
                log.error("dispatch_failed", error=str(error))
            await wait_for_wake(self._wake, DISPATCH_INTERVAL)
            self._wake.clear()

    async def _dispatch(self) -> None:
        free = self.settings.download.concurrency - len(self._downloads)
        printers = [name for name, feed in self.feeds.items() if feed.outage is None and not feed.paused]
        for row in await self.journal.claim_due(time.time(), free, printers):
            task = asyncio.create_task(self._download(row), name=f"download-{row['id']}")
            self._downloads[row["id"]] = task
            task.add_done_callback(lambda _, delivery_id=row["id"]: self._download_done(delivery_id))

    def _download_done(self, delivery_id: int) -> None:
        self._downloads.pop(delivery_id, None)
        self._wake.set()

    async def _download(self, row: sqlite3.Row) -> None:
        assert self._fetcher is not None
        feed = self.feeds[row["printer"]]
        staging = handoff.staging_path(feed.printer, row["id"])
        attempts = row["attempts"] + 1
        context = {"job_id": row["job_id"], "delivery_id": row["id"], "printer": feed.name}

        try:
            result = await self._fetcher.download(row["url"], staging, row["ext"])
        except PermanentFetchError as error:
            await self._fail(row["id"], staging, str(error), attempts, context)
        except TransientFetchError as error:
            await self._retry_later(row["id"], staging, error, attempts, context)
        except Exception as error:
            log.exception("download_crashed", **context)
            await self._retry_later(row["id"], staging, TransientFetchError(repr(error)), attempts, context)
        else:
            self.metrics.record_download(result.size - result.resumed_from, result.seconds)
            if not await self.journal.mark_staged(row["id"], attempts, str(staging), result.size, result.sha256):
                await asyncio.to_thread(fetch.discard_staging, staging)
                return
            log.info(
                "file_downloaded", **context, bytes=result.size, seconds=round(result.seconds, 3),
                attempts=attempts, resumed_from=result.resumed_from,
            )  # fmt: skip
            feed.wake.set()

    async def _retry_later(
        self, delivery_id: int, staging: Any, error: TransientFetchError, attempts: int, context: dict[str, Any]
    ) -> None:
        maximum = self.settings.download.max_attempts
        if attempts >= maximum:
            await self._fail(delivery_id, staging, f"{error} (gave up after {attempts} attempts)", attempts, context)
            return
        delay = fetch.backoff_delay(attempts, error.retry_after, self.settings.download.backoff_max)
        if not await self.journal.mark_retry(delivery_id, attempts, str(error), "download_retry", time.time() + delay):
            return
        self.metrics.record_retry(error)
        log.warning(
            "download_retry", **context, error=str(error), attempt=attempts,
            attempts_left=maximum - attempts, retry_in=round(delay, 2),
        )  # fmt: skip

    async def _fail(self, delivery_id: int, staging: Any, message: str, attempts: int, context: dict[str, Any]) -> None:
        await asyncio.to_thread(fetch.discard_staging, staging)
        if not await self.journal.mark_failed(delivery_id, attempts, "download_failed", message):
            return
        log.warning("delivery_failed", **context, reason="download_failed", error=message, attempts=attempts)
        self.notifier.emit("delivery_failed", **context, reason="download_failed", error=message)
        await self.jobs_changed({context["job_id"]})

    async def jobs_changed(self, job_ids: set[int]) -> None:
        """Log and notify each job whose state moved to delivered, completed or failed."""
        for job_id in job_ids:
            change = await self.journal.job_state_change(job_id)
            event = JOB_EVENTS.get(change[1]) if change else None
            if event is None:
                continue
            log.info(event, job_id=job_id)
            if event != "job_failed":
                self.notifier.emit(event, job_id=job_id)

    async def cancel_downloads(self, delivery_ids: set[int]) -> None:
        """Stop running downloads and wait until they have."""
        tasks = [self._downloads[i] for i in delivery_ids if i in self._downloads]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake_dispatcher(self) -> None:
        self._wake.set()

    # Status

    async def printers(self) -> list[dict[str, Any]]:
        counts = await self.journal.printer_counts()
        return [{**feed.summary(), "counts": counts.get(name, {})} for name, feed in self.feeds.items()]

    async def readiness_problems(self) -> list[str]:
        problems = []
        try:
            await self.journal.check_writable()
        except sqlite3.Error as error:
            problems.append(f"journal {self.journal.path} cannot be written: {error}")
        for feed in self.feeds.values():
            if feed.outage:
                problems.append(f"printer {feed.name}: {feed.outage}")
            elif not feed.is_alive():
                problems.append(f"printer {feed.name}: its watcher or feed loop is not running")
        return problems

    # Shutdown

    async def stop(self) -> None:
        """Stop in order, so that nothing acknowledged is lost and nothing is left half-done."""
        # systemd hears of the stop first, so the grace period below is not mistaken for a hang.
        await self._systemd.stopping()

        # Stop taking pushes first: anything answered from here on would race the shutdown.
        if self._runner is not None:
            await self._runner.cleanup()

        # No new downloads start once the dispatcher is gone.
        await _cancel(self._dispatcher)

        # Running downloads get the grace period; the rest go back to pending for the next start.
        await self._drain_downloads(self.settings.download.stop_timeout)

        # The printers' loops and watchers stop before the journal they write to closes.
        for feed in self.feeds.values():
            await feed.stop()
        await self.notifier.stop()

        if self._session is not None:
            await self._session.close()
        if self.journal is not None:
            await self.journal.close()
        log.info("daemon_stopped")

    async def _drain_downloads(self, grace: float) -> None:
        running = list(self._downloads.values())
        if not running:
            return
        log.info("waiting_for_downloads", downloads=len(running), grace=grace)
        _, unfinished = await asyncio.wait(running, timeout=grace)
        abandoned = [delivery_id for delivery_id, task in self._downloads.items() if task in unfinished]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        await self.journal.requeue(abandoned, "abandoned at shutdown", journal.DOWNLOADING)
        if abandoned:
            log.warning("downloads_abandoned", downloads=len(abandoned))


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _planned_by_key(payload: str | None) -> dict[str, PlannedDelivery]:
    if payload is None:
        return {}
    return {item.key: item for item in plan(parse_job(json.loads(payload)))}


def _check_listen_is_safe(settings: Settings) -> None:
    """Refuse to listen beyond loopback when no push token is configured."""
    host, _ = split_listen(settings.server.listen)
    if settings.server.auth.tokens or settings.server.allow_open_push:
        return
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"server.listen is {settings.server.listen!r} but no push token is configured in "
            "[server.auth] tokens, so anyone on the network could push jobs; add a token, or "
            "listen on 127.0.0.1, or set server.allow_open_push = true"
        )


def _ssl_context(settings: Settings) -> Any:
    tls = settings.server.tls
    if tls.cert is None or tls.key is None:
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"cannot load [server.tls] cert {tls.cert} and key {tls.key}: {error}") from None
    return context
