"""Shared fixtures: a local artwork origin, daemons in-process and as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hotfolder_feeder import config
from hotfolder_feeder.daemon import Daemon
from hotfolder_feeder.origin import ArtworkOrigin

START_TIMEOUT = 20.0


@pytest.fixture
async def origin() -> AsyncIterator[ArtworkOrigin]:
    async with ArtworkOrigin() as server:
        yield server


def settings_table(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Return a config table for tests: loopback, port 0, private origins allowed, fast polling."""
    table: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:0"},
        "storage": {"state_dir": str(tmp_path / "state")},
        "download": {
            "allow_http": True, "allow_private_networks": True, "backoff_max": "1s", "stop_timeout": "5s",
        },
        "printers": [
            {"name": "printer-1", "hotfolder": str(tmp_path / "hot-1"), "poll_interval": "0.2s"}
        ],
        "routing": {"default": "printer-1"},
    }
    for key, value in overrides.items():
        table[key] = {**table[key], **value} if isinstance(value, dict) else value
    return table


def make_hotfolders(table: dict[str, Any]) -> None:
    for printer in table["printers"]:
        Path(printer["hotfolder"]).mkdir(parents=True, exist_ok=True)


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Daemon]]]:
    """Start an in-process daemon from a config table; stopped at the end of the test."""
    started: list[Daemon] = []

    async def start(table: dict[str, Any] | None = None) -> Daemon:
        table = table or settings_table(tmp_path)
        make_hotfolders(table)
        daemon = Daemon(config.build(table, base=tmp_path, source="test"))
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        await daemon.stop()


class DaemonProcess:
    """`hotfolder-feeder serve` as a real child process, with its JSON log lines collected."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self.url = ""
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotfolder_feeder.cli", "serve", "--config", str(self.config_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        started = await self.wait_for_event("daemon_started", START_TIMEOUT)
        self.url = started["url"]

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            text = raw.decode(errors="replace").strip()
            try:
                self.lines.append(json.loads(text))
            except json.JSONDecodeError:
                self.lines.append({"event": "raw_output", "text": text})

    async def wait_for_event(self, event: str, timeout: float, start: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if line.get("event") == event:
                    return line
            if self.process is not None and self.process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {event!r} log line within {timeout}s; output: {self.lines[-20:]}")

    async def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.terminate()
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


@pytest.fixture
async def daemon_process(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[DaemonProcess]]]:
    """Start `hotfolder-feeder serve` as a child process from a config table."""
    processes: list[DaemonProcess] = []

    async def start(table: dict[str, Any]) -> DaemonProcess:
        make_hotfolders(table)
        path = tmp_path / f"config-{len(processes)}.toml"
        path.write_text(to_toml(table))
        process = DaemonProcess(path)
        processes.append(process)
        await process.start()
        return process

    yield start
    for process in processes:
        process.kill()
        if process.process is not None:
            await process.process.wait()


def to_toml(table: dict[str, Any], prefix: str = "") -> str:
    """Write the small subset of TOML the test configs use: tables, arrays of tables, scalars."""
    lines = []
    nested = []
    for key, value in table.items():
        if isinstance(value, dict):
            nested.append((key, value, False))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            nested.append((key, value, True))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    text = "\n".join(lines) + "\n"
    for key, value, is_array in nested:
        name = f"{prefix}{key}"
        if is_array:
            for entry in value:
                text += f"\n[[{name}]]\n" + to_toml(entry, f"{name}.")
        else:
            text += f"\n[{name}]\n" + to_toml(value, f"{name}.")
    return text


async def api(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except json.JSONDecodeError:
                return response.status, text


async def wait_until(
    check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Await `check()` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
