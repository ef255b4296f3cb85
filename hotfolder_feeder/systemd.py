"""systemd integration: readiness, watchdog pings and status lines over the sd_notify protocol.

The protocol is one datagram of `KEY=value` lines to the unix socket named by $NOTIFY_SOCKET
(see sd_notify(3)). A name starting with `@` is in the abstract namespace. Without
$NOTIFY_SOCKET, as when the daemon runs outside systemd, every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("hotfolder_feeder.systemd")

STATUS_INTERVAL = 5.0


def notify_socket() -> str | None:
    """Return the address to send to, with an abstract name's `@` turned into a NUL byte."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]
    return address


def send(*fields: str) -> None:
    """Send `KEY=value` fields to systemd in one datagram. Raises OSError when the send fails."""
    address = notify_socket()
    if address is None:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        # A full socket buffer raises instead of blocking the event loop.
        sock.setblocking(False)
        sock.sendto("\n".join(fields).encode(), address)


def watchdog_interval() -> float | None:
    """Return the time between watchdog pings: half of $WATCHDOG_USEC, or None when it is unset.

    $WATCHDOG_PID, when set, names the process that must ping, and any other process does not.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


class ServiceNotifier:
    """Tells systemd the daemon is ready, alive and stopping, and what it is doing."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False
        self._last_status: str | None = None

    def notify(self, *fields: str) -> None:
        """Send fields to systemd, logging the first failure of a run of failures."""
        try:
            send(*fields)
        except OSError as error:
            if not self._failing:
                log.warning(
                    "systemd_notify_failed",
                    socket=os.environ.get("NOTIFY_SOCKET"),
                    error=str(error),
                )
            self._failing = True
            return
        if self._failing:
            log.info("systemd_notify_recovered")
        self._failing = False

    async def ready(
        self, status: Callable[[], Awaitable[str]], healthy: Callable[[], bool]
    ) -> None:
        """Send READY=1 with a first status line, then start the watchdog and status loops.

        `healthy` is checked before each watchdog ping. While it returns False no ping is sent,
        so systemd stops the service once WatchdogSec passes, and restarts it with
        Restart=on-failure.
        """
        if notify_socket() is None:
            return
        self._last_status = await status()
        self.notify("READY=1", f"STATUS={self._last_status}")
        interval = watchdog_interval()
        if interval is not None:
            self._tasks.append(
                asyncio.create_task(self._ping(interval, healthy), name="systemd-watchdog")
            )
        self._tasks.append(asyncio.create_task(self._report(status), name="systemd-status"))

    async def stopping(self) -> None:
        """Send STOPPING=1 and stop the loops, so the watchdog is not pinged after this."""
        if notify_socket() is None:
            return
        self.notify("STOPPING=1", "STATUS=stopping")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _ping(self, interval: float, healthy: Callable[[], bool]) -> None:
        # The ping runs on the event loop, so a blocked loop misses it and systemd restarts the
        # daemon.
        withheld = False
        while True:
            if healthy():
                self.notify("WATCHDOG=1")
                withheld = False
            elif not withheld:
                log.error(
                    "watchdog_withheld",
                    detail="the download dispatcher stopped, so systemd will restart the daemon",
                )
                withheld = True
            await asyncio.sleep(interval)

    async def _report(self, status: Callable[[], Awaitable[str]]) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            try:
                line = await status()
            except sqlite3.Error as error:
                log.warning("systemd_status_failed", error=str(error))
                continue
            if line != self._last_status:
                self.notify(f"STATUS={line}")
                self._last_status = line
