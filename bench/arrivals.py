"""When files appear in a hot folder under their final names, seen through inotify.

The daemon renames each finished file into the hot folder, so a name's first appearance is the
moment it was delivered. Watching costs the benchmark far less than polling the API or listing
a folder of thousands of files.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

CHECK_INTERVAL = 2.0


class ArrivalTimeout(TimeoutError):
    """Raised when some expected files have not arrived by the deadline."""


class Arrivals(FileSystemEventHandler):
    """Records the `time.perf_counter()` at which each expected name appears in `folder`."""

    def __init__(self, folder: Path, names: Iterable[str]) -> None:
        self.folder = folder
        self.pending = set(names)
        self.times: dict[str, float] = {}
        self.found_by_scan = 0
        self._done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._observer: Any = None

    def __enter__(self) -> Arrivals:
        observer = Observer()
        observer.schedule(self, str(self.folder))
        observer.daemon = True
        observer.start()
        self._observer = observer
        if not self.pending:
            self._done.set()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._observer.stop()
        self._observer.join(10)

    def on_created(self, event: FileSystemEvent) -> None:
        self._arrived(os.fsdecode(event.src_path))

    def on_moved(self, event: FileSystemEvent) -> None:
        self._arrived(os.fsdecode(event.dest_path))

    def _arrived(self, path: str) -> None:
        name = os.path.basename(path)
        if name in self.pending:
            self.times[name] = time.perf_counter()
            self.pending.discard(name)
            if not self.pending:
                self._loop.call_soon_threadsafe(self._done.set)

    async def wait(self, timeout: float, check: Callable[[], Awaitable[None]] | None = None) -> float:
        """Wait until every expected name has arrived; return the time of the last arrival.

        Every CHECK_INTERVAL seconds `check` runs, raising when a delivery failed. The folder is
        listed then too, in case inotify missed an event. A name found that way counts as arrived
        at the time of the listing.
        """
        deadline = time.monotonic() + timeout
        while not self._done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ArrivalTimeout(
                    f"{len(self.pending)} of {len(self.pending) + len(self.times)} files did not arrive "
                    f"in {self.folder} within {timeout:g}s, such as {sorted(self.pending)[:3]}"
                )
            try:
                await asyncio.wait_for(self._done.wait(), min(CHECK_INTERVAL, remaining))
            except TimeoutError:
                if check is not None:
                    await check()
                await asyncio.to_thread(self._scan)
        return max(self.times.values(), default=time.perf_counter())

    def _scan(self) -> None:
        now = time.perf_counter()
        for name in os.listdir(self.folder):
            if name in self.pending:
                self.found_by_scan += 1
                self._arrived(name)
                self.times[name] = now
