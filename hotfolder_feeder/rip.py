"""A simulated Kornit QuickP RIP for tests and the demo.

It polls a hot folder the way a RIP does: it lists the folder's own regular files,
reads each one whole, checks it, then deletes it. The deletion is the pickup that the
feeder watches for. Whatever looks wrong is recorded in `problems` instead of raised,
so a test can assert on it after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import structlog

log = structlog.get_logger(__name__)

READ_CHUNK_SIZE = 1024 * 1024

SIGNATURES: dict[str, tuple[bytes, ...]] = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".pdf": (b"%PDF-",),
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
}
"""Leading bytes that a file with each extension must start with."""


@dataclass(frozen=True)
class TakenFile:
    """A file that the RIP read and deleted."""

    name: str
    size: int
    sha256: str
    taken_at: float
    """time.time() when the file was deleted from the hot folder."""


@dataclass(frozen=True)
class _Candidate:
    name: str
    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class _ReadResult:
    size: int
    sha256: str
    head: bytes
    changed: str | None
    """Reason the file looked partial while it was read, or None."""


def is_candidate_name(name: str) -> bool:
    """Tell whether a RIP would read a file of this name: not a dot-file and not a .part file."""
    return not name.startswith(".") and not name.endswith(".part")


def _list_candidates(folder: Path) -> list[_Candidate]:
    candidates = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not is_candidate_name(entry.name):
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
            candidates.append(_Candidate(entry.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))

    # Oldest first, like a print queue.
    candidates.sort(key=lambda candidate: (candidate.mtime_ns, candidate.name))
    return candidates


def _read_file(path: Path, listed: _Candidate) -> _ReadResult:
    digest = hashlib.sha256()
    size = 0
    head = b""
    with path.open("rb") as handle:
        before = os.fstat(handle.fileno())
        while chunk := handle.read(READ_CHUNK_SIZE):
            if not head:
                head = chunk[:16]
            digest.update(chunk)
            size += len(chunk)
        after = os.fstat(handle.fileno())

    changed = None
    if before.st_ino == listed.inode and before.st_size != listed.size:
        changed = f"size {listed.size} when listed, {before.st_size} when opened"
    elif after.st_size != size or before.st_size != size:
        changed = f"size {before.st_size} when opened, {size} read, {after.st_size} after reading"
    elif after.st_mtime_ns != before.st_mtime_ns:
        changed = "modified while it was read"
    return _ReadResult(size, digest.hexdigest(), head, changed)


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _describe_folder(folder: Path) -> str:
    """List the folder's entries, and one level into its subfolders, for error messages."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        return f"cannot list {folder}: {error}"

    parts = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            try:
                inner = sorted(os.listdir(entry.path))
            except OSError as error:
                inner = [f"cannot list: {error}"]
            parts.append(f"{entry.name}/ [{', '.join(inner)}]")
        else:
            parts.append(entry.name)
    return ", ".join(parts) if parts else "(empty)"


class SimulatedRip:
    """Poll a hot folder every `interval` seconds and take (read, check, delete) its files.

    - `expected` maps file names to hex SHA-256 digests. When it is given, a name not in
      it or a different digest is a problem.
    - `settle` is how long, in seconds, a file's size and modification time must stay the
      same before the RIP takes it. With 0 it takes a file in the first scan that lists
      it, which tests that files appear only complete.
    - `on_take` is called with each TakenFile after the file is deleted. An exception
      that it raises is recorded in `problems`.
    - `slow` is extra time in seconds between reading a file and deleting it, as if it
      were printing. It can be changed at any time.

    Names ending in `.part`, dot-files and subfolders (dot-folders included) are never
    read. All file I/O runs in a thread, never on the event loop.
    """

    def __init__(
        self,
        hotfolder: Path,
        *,
        interval: float = 0.1,
        expected: Mapping[str, str] | None = None,
        settle: float = 0.0,
        on_take: Callable[[TakenFile], None] | None = None,
    ) -> None:
        self.hotfolder = Path(hotfolder)
        self.interval = interval
        self.expected = dict(expected) if expected is not None else None
        self.settle = settle
        self.on_take = on_take
        self.slow = 0.0
        self.taken: list[TakenFile] = []
        self.problems: list[str] = []

        self._taken_names: Counter[str] = Counter()
        self._first_seen: dict[str, tuple[_Candidate, float]] = {}
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._last_scan_error: str | None = None

    async def start(self) -> None:
        """Start polling in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"simulated-rip {self.hotfolder}")

    async def stop(self) -> None:
        """Stop polling. A read or delete already running in its thread still finishes."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def __aenter__(self) -> SimulatedRip:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def pause(self) -> None:
        """Stop seeing and taking files until resume().

        A file already read waits before its deletion, so nothing leaves the folder after
        pause() returns, except a deletion already running in its thread.
        """
        self._resumed.clear()

    def resume(self) -> None:
        """Start seeing and taking files again, with a scan right away."""
        self._resumed.set()
        self._wake.set()

    @property
    def paused(self) -> bool:
        """True between pause() and resume()."""
        return not self._resumed.is_set()

    async def wait_taken(self, count: int, timeout: float) -> list[TakenFile]:
        """Wait until at least `count` files have been taken and return all files taken.

        Raises TimeoutError after `timeout` seconds, with a message that lists the files
        taken, the hot folder's content and the problems so far.
        """
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: len(self.taken) >= count)
        except TimeoutError:
            raise TimeoutError(await self._timeout_message(count, timeout)) from None
        return list(self.taken)

    async def _timeout_message(self, count: int, timeout: float) -> str:
        names = ", ".join(taken.name for taken in self.taken) or "nothing"
        folder = await asyncio.to_thread(_describe_folder, self.hotfolder)
        problems = "; ".join(self.problems) or "none"
        state = " The RIP is paused." if self.paused else ""
        return (
            f"timed out after {timeout} s waiting for {count} files taken from "
            f"{self.hotfolder}: {len(self.taken)} taken ({names}). "
            f"In the folder: {folder}. Problems: {problems}.{state}"
        )

    # -- polling -----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._resumed.wait()
            await self._scan()

            self._wake.clear()
            # asyncio.timeout, not wait_for, which on Python 3.11 can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()

    async def _scan(self) -> None:
        try:
            candidates = await asyncio.to_thread(_list_candidates, self.hotfolder)
        except OSError as error:
            # An unmounted share looks like a missing or unreadable folder. The RIP keeps
            # polling and logs each distinct error once.
            message = str(error)
            if message != self._last_scan_error:
                log.warning("rip_scan_failed", hotfolder=str(self.hotfolder), error=message)
                self._last_scan_error = message
            return
        self._last_scan_error = None

        for candidate in self._settled(candidates):
            if self.paused:
                return
            await self._take(candidate)

    def _settled(self, candidates: list[_Candidate]) -> list[_Candidate]:
        """Return the candidates whose size and mtime have not changed for `settle` seconds."""
        now = time.monotonic()
        seen: dict[str, tuple[_Candidate, float]] = {}
        ready = []
        for candidate in candidates:
            previous = self._first_seen.get(candidate.name)
            if previous is None or previous[0] != candidate:
                previous = (candidate, now)
            seen[candidate.name] = previous
            if now - previous[1] >= self.settle:
                ready.append(candidate)

        self._first_seen = seen
        return ready

    async def _take(self, candidate: _Candidate) -> None:
        path = self.hotfolder / candidate.name
        try:
            result = await asyncio.to_thread(_read_file, path, candidate)
        except FileNotFoundError:
            return
        except OSError as error:
            self._add_problem(f"unreadable: {candidate.name}: {error}")
            return

        if self.slow > 0:
            await asyncio.sleep(self.slow)
        await self._resumed.wait()

        if not await self._delete(path, candidate.name, result):
            return
        await self._record(candidate.name, result)

    async def _delete(self, path: Path, name: str, result: _ReadResult) -> bool:
        stat = await asyncio.to_thread(_stat_or_none, path)
        if stat is None:
            return False
        if stat.st_size != result.size and result.changed is None:
            self._add_problem(f"partial: {name} grew from {result.size} to {stat.st_size} bytes")

        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        except OSError as error:
            self._add_problem(f"delete failed: {name}: {error}")
            return False
        return True

    async def _record(self, name: str, result: _ReadResult) -> None:
        taken = TakenFile(name, result.size, result.sha256, time.time())
        self._check(taken, result)
        self._taken_names[name] += 1
        self.taken.append(taken)
        log.debug("rip_file_taken", name=name, bytes=taken.size, sha256=taken.sha256)

        if self.on_take is not None:
            try:
                self.on_take(taken)
            except Exception as error:
                self._add_problem(f"on_take failed: {name}: {error!r}")

        async with self._changed:
            self._changed.notify_all()

    def _check(self, taken: TakenFile, result: _ReadResult) -> None:
        name = taken.name
        earlier = self._taken_names[name]
        if earlier > 0:
            times = "twice" if earlier == 1 else f"{earlier + 1} times"
            self._add_problem(f"duplicate: {name} taken {times}")
        if result.changed is not None:
            self._add_problem(f"partial: {name} {result.changed}")
        if taken.size == 0:
            self._add_problem(f"empty: {name} has 0 bytes")

        signatures = SIGNATURES.get(os.path.splitext(name)[1].lower())
        if signatures and taken.size > 0 and not result.head.startswith(signatures):
            self._add_problem(
                f"signature: {name} starts with {result.head[:8]!r}, "
                f"not the signature of its extension"
            )

        if self.expected is None:
            return
        expected = self.expected.get(name)
        if expected is None:
            self._add_problem(f"unexpected: {name} is not in the expected files")
        elif expected != taken.sha256:
            self._add_problem(f"mismatch: {name} sha256 {taken.sha256}, expected {expected}")

    def _add_problem(self, problem: str) -> None:
        log.warning("rip_problem", hotfolder=str(self.hotfolder), problem=problem)
        self.problems.append(problem)
