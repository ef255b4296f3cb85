"""systemd integration: sd_notify messages from the real daemon, and the unit file."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from conftest import DaemonProcess, settings_table

from hotfolder_feeder import systemd
from hotfolder_feeder.daemon import Daemon

StartDaemon = Callable[..., Awaitable[Daemon]]

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "hotfolder-feeder.service"
WAIT = 15.0


class NotifyListener:
    """A unix datagram socket in place of systemd's notify socket, collecting every field."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fields: list[str] = []

    async def wait_for(
        self, wanted: Callable[[str], bool], timeout: float = WAIT, count: int = 1
    ) -> list[str]:
        """Receive until `count` fields match `wanted`, or fail after `timeout` with what came."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while len([field for field in self.fields if wanted(field)]) < count:
                    datagram = await loop.sock_recv(self.sock, 65536)
                    self.fields.extend(datagram.decode().splitlines())
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout}s with these fields received: {self.fields}"
            ) from None
        return [field for field in self.fields if wanted(field)]

    def drain(self) -> None:
        """Collect the datagrams already queued on the socket, without waiting."""
        while True:
            try:
                datagram = self.sock.recv(65536)
            except BlockingIOError:
                return
            self.fields.extend(datagram.decode().splitlines())


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    """Bind a notify socket under tmp_path and point $NOTIFY_SOCKET at it, with a 1s watchdog."""
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, f"unix socket path {path} is too long for AF_UNIX"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield NotifyListener(sock)
    sock.close()


def table(tmp_path: Path) -> dict[str, object]:
    return settings_table(tmp_path, download={"allow_http": True, "allow_private_networks": True})


async def test_daemon_notifies_ready_watchdog_stopping(
    tmp_path: Path,
    notify_socket: NotifyListener,
    daemon_process: Callable[..., Awaitable[DaemonProcess]],
) -> None:
    """The daemon sends READY=1 with a status, watchdog pings, and STOPPING=1 on SIGTERM."""
    daemon = await daemon_process(table(tmp_path))

    await notify_socket.wait_for(lambda field: field == "READY=1")
    statuses = await notify_socket.wait_for(lambda field: field.startswith("STATUS="))
    pings = await notify_socket.wait_for(lambda field: field == "WATCHDOG=1", count=2)
    code = await daemon.stop()
    await notify_socket.wait_for(lambda field: field == "STOPPING=1")

    assert code == 0
    assert statuses[0] == "STATUS=1 of 1 printers online, 0 files waiting, 0 queued, 0 failed"
    assert len(pings) >= 2
    assert notify_socket.fields.index("READY=1") < notify_socket.fields.index("WATCHDOG=1")
    assert notify_socket.fields[-2:] == ["STOPPING=1", "STATUS=stopping"]


async def test_watchdog_withheld_without_dispatcher(
    tmp_path: Path,
    notify_socket: NotifyListener,
    start_daemon: StartDaemon,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the download dispatcher has died, no more watchdog pings are sent."""
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    daemon = await start_daemon(table(tmp_path))
    await notify_socket.wait_for(lambda field: field == "WATCHDOG=1", count=2)

    dispatcher = daemon._dispatcher
    assert dispatcher is not None
    dispatcher.cancel()
    await asyncio.gather(dispatcher, return_exceptions=True)
    notify_socket.drain()
    seen = notify_socket.fields.count("WATCHDOG=1")

    # Pings come every 0.1s while healthy, so a second of silence shows they stopped.
    with pytest.raises(AssertionError, match="timed out"):
        await notify_socket.wait_for(
            lambda field: field == "WATCHDOG=1", timeout=1.0, count=seen + 1
        )


@pytest.fixture
async def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[socket.socket]:
    """Bind a socket in the abstract namespace and point $NOTIFY_SOCKET at it with `@`."""
    name = f"hotfolder-feeder-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield sock
    sock.close()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="abstract unix sockets exist only on Linux"
)
async def test_send_to_abstract_socket(abstract_socket: socket.socket) -> None:
    """A socket name starting with @ is in the abstract namespace and fields go in one datagram."""
    systemd.send("READY=1", "STATUS=starting")
    datagram = await asyncio.wait_for(
        asyncio.get_running_loop().sock_recv(abstract_socket, 4096), WAIT
    )

    assert datagram == b"READY=1\nSTATUS=starting"


async def test_notifier_without_socket_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $NOTIFY_SOCKET, sending and the whole notifier are no-ops that start no task."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = systemd.ServiceNotifier()

    async def status() -> str:
        raise AssertionError("the status is not read when there is no notify socket")

    systemd.send("READY=1")
    await notifier.ready(status, lambda: True)
    await notifier.stopping()

    assert systemd.notify_socket() is None
    assert notifier._tasks == []


async def test_notifier_survives_missing_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notify socket that is gone raises from send() but only logs in the notifier."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))

    with pytest.raises(OSError):
        systemd.send("READY=1")
    systemd.ServiceNotifier().notify("READY=1")


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("1000000", "self", 0.5),
        ("1000000", "1", None),
        ("0", None, None),
        ("", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval_from_environment(
    usec: str, pid: str | None, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ping interval is half of $WATCHDOG_USEC, and only for the process $WATCHDOG_PID names."""
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)

    assert systemd.watchdog_interval() == expected


@pytest.mark.parametrize(
    "setting",
    [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "RestartPreventExitStatus=2",
        "StateDirectory=hotfolder-feeder",
        "User=hotfolder-feeder",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
    ],
)
def test_unit_has_setting(setting: str) -> None:
    """The unit runs as Type=notify with a watchdog, hardened, and not restarted on a bad config."""
    assert setting in UNIT.read_text().splitlines(), f"{setting} is missing from {UNIT}"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` reports nothing for the unit, run against this venv's command."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    command = Path(sys.executable).parent / "hotfolder-feeder"
    if not command.exists():
        pytest.skip(
            f"{command} is missing; install the package into this venv with pip install -e ."
        )

    text = UNIT.read_text()
    assert "ExecStart=/opt/hotfolder-feeder/venv/bin/hotfolder-feeder " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("/opt/hotfolder-feeder/venv/bin/hotfolder-feeder", str(command)))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )

    # verify (systemd 252) exits 0 even for settings it ignores, so any line about the unit fails.
    problems = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0, result.stderr
    assert problems == []
