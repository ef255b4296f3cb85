"""Outbound notifications: JSON webhooks for floor events, signed and retried in the background.

`emit()` never waits: it puts the event on a bounded queue, and one task per webhook sends it.
A receiver that is down delays only its own events, never the feed. Events are kept in memory
only, so those still queued at a stop are lost; each is logged when it happens all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp
import structlog

from .config import WebhookSettings
from .fetch import backoff_delay

log = structlog.get_logger("hotfolder_feeder.notify")

SIGNATURE_HEADER = "X-Hotfolder-Feeder-Signature"
QUEUE_SIZE = 1000
BACKOFF_MAX = 300.0
TIMEOUT = aiohttp.ClientTimeout(total=30)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook:
    """One receiver: its queue and the task that sends from it."""

    def __init__(self, settings: WebhookSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"webhook-{self.settings.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def offer(self, event: dict[str, Any]) -> None:
        if event["event"] not in self.settings.events:
            return
        if self._queue.full():
            dropped = self._queue.get_nowait()
            log.warning("notification_dropped", url=self._public_url, notification=dropped["event"], reason="queue full")
        self._queue.put_nowait(event)

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            await self._send(event)

    async def _send(self, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.settings.secret)
        maximum = self.settings.max_attempts
        for attempt in range(1, maximum + 1):
            error = await self._post(body, headers)
            if error is None:
                return
            if attempt == maximum:
                log.warning("notification_failed", url=self._public_url, notification=event["event"], error=error, attempts=attempt)
                return
            delay = backoff_delay(attempt, None, BACKOFF_MAX)
            log.info(
                "notification_retry", url=self._public_url, notification=event["event"], error=error,
                attempt=attempt, attempts_left=maximum - attempt, retry_in=round(delay, 2),
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _post(self, body: bytes, headers: dict[str, str]) -> str | None:
        """Send once; return None on a 2xx response, else a description of the failure."""
        try:
            async with self._session.post(self.settings.url, data=body, headers=headers, timeout=TIMEOUT) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as error:
            return f"{type(error).__name__}: {error}"

    @property
    def _public_url(self) -> str:
        return self.settings.url.split("?", 1)[0]


class Notifier:
    """Fans events out to the configured webhooks."""

    def __init__(self, webhooks: list[WebhookSettings]) -> None:
        self._settings = webhooks
        self._session: aiohttp.ClientSession | None = None
        self._webhooks: list[Webhook] = []

    async def start(self) -> None:
        if not self._settings:
            return
        self._session = aiohttp.ClientSession()
        self._webhooks = [Webhook(settings, self._session) for settings in self._settings]
        for webhook in self._webhooks:
            webhook.start()

    async def stop(self) -> None:
        for webhook in self._webhooks:
            await webhook.stop()
        if self._session is not None:
            await self._session.close()

    def emit(self, event: str, **data: Any) -> None:
        """Queue an event for every webhook that subscribed to it; never waits."""
        message = {"event": event, "at": time.time(), **data}
        for webhook in self._webhooks:
            webhook.offer(message)
