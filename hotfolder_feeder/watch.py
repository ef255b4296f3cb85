"""Hot folder watching: change events, filesystem identity and outage detection.

Linux inotify sees only changes made through this kernel, so a file the RIP PC deletes on an
SMB/CIFS or NFS share (or through FUSE) raises no event here. Those filesystems are polled; local
ones use inotify through watchdog, plus a periodic reconcile scan that catches what events miss.

A share that is unmounted leaves its bare local mount point behind, which looks like an empty hot
folder. To never count that as the RIP taking every file, the filesystem type of each hot folder
is remembered at start and any later change is an outage until it is back.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .config import PrinterSettings

log = structlog.get_logger("hotfolder_feeder.watch")

POLLED_FILESYSTEMS = frozenset(
    {"cifs", "smb3", "smbfs", "nfs", "nfs4", "9p", "afs", "ceph", "glusterfs", "sshfs", "davfs"}
)
RECONCILE_INTERVAL = 30.0


@dataclass(frozen=True)
class Mount:
    mount_point: str
    fstype: str


@dataclass(frozen=True)
class Identity:
    """Identity of a hot folder's filesystem, recorded at start and compared on every scan."""

    device: int
    inode: int
    fstype: str
    mount_point: str


def mount_of(path: Path) -> Mount:
    """Return the mount that contains `path`, read from /proc/self/mountinfo."""
    real = os.path.realpath(path)
    best = Mount("/", "unknown")
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        fields = line.split()
        separator = fields.index("-")
        mount_point = _unescape(fields[4])
        fstype = fields[separator + 1]
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best.mount_point):
            best = Mount(mount_point, fstype)
    return best


def _unescape(text: str) -> str:
    """Decode the octal escapes (`\\040` for a space) that mountinfo uses in paths."""
    return text.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def read_identity(path: Path) -> Identity:
    """Stat the hot folder and read its mount; raises OSError when it cannot be reached."""
    status = os.stat(path)
    mount = mount_of(path)
    return Identity(status.st_dev, status.st_ino, mount.fstype, mount.mount_point)


def watch_mode(printer: PrinterSettings, fstype: str) -> str:
    """Return `native`, `polling` or `off`; `auto` polls network and FUSE filesystems."""
    if printer.watch != "auto":
        return printer.watch
    if fstype in POLLED_FILESYSTEMS or fstype.startswith("fuse"):
        return "polling"
    return "native"


def check_health(printer: PrinterSettings, expected: Identity | None) -> tuple[Identity | None, str | None]:
    """Check that a hot folder is reachable, readable and still on its filesystem.

    Returns the identity to remember and None, or the old identity and the outage reason. A
    remount of the same filesystem type may get a new device number, which is learned anew.
    """
    try:
        identity = read_identity(printer.hotfolder)
        os.listdir(printer.hotfolder)
    except OSError as error:
        return expected, f"hot folder {printer.hotfolder} cannot be read: {error.strerror or error}"
    if printer.require_mount and identity.mount_point == "/":
        return expected, (
            f"hot folder {printer.hotfolder} is not on a mounted filesystem (require_mount = true); "
            "mount its share"
        )
    if expected is not None and identity.fstype != expected.fstype:
        return expected, (
            f"hot folder {printer.hotfolder} is now on {identity.fstype}, not {expected.fstype} as "
            "at start; its share is probably unmounted"
        )
    return identity, None


class _Bridge(FileSystemEventHandler):
    """Carries watchdog's events from its thread into the event loop as a wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        self._loop = loop
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("deleted", "moved", "created", "closed"):
            self._loop.call_soon_threadsafe(self._wake.set)


class NativeWatcher:
    """A watchdog observer on one hot folder that sets `wake` when its files change."""

    def __init__(self, hotfolder: Path, wake: asyncio.Event) -> None:
        self._hotfolder = hotfolder
        self._wake = wake
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self) -> None:
        observer = Observer()
        observer.schedule(_Bridge(asyncio.get_running_loop(), self._wake), str(self._hotfolder))
        observer.daemon = True
        observer.start()
        self._observer = observer

    def is_alive(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    async def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is None:
            return
        observer.stop()
        await asyncio.to_thread(observer.join, 5)
