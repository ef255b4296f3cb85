"""Share outages and full disks, against the real daemon process.

A bindfs FUSE mount stands in for an SMB share: files deleted in the backing folder, as the RIP PC
deletes them, raise no inotify event on the mount, and unmounting it leaves the bare mount point.
Mounting needs root and /dev/fuse; these tests are skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import api, settings_table, wait_until

from hotfolder_feeder.origin import ArtworkOrigin
from hotfolder_feeder.rip import SimulatedRip

CAN_MOUNT = os.geteuid() == 0 and Path("/dev/fuse").exists()
needs_bindfs = pytest.mark.skipif(
    not (CAN_MOUNT and shutil.which("bindfs")), reason="needs root, /dev/fuse and bindfs (apt-get install bindfs)"
)
needs_tmpfs = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


class Share:
    """A bindfs mount of `backing` on `mount_point`, standing in for a mounted SMB share."""

    def __init__(self, backing: Path, mount_point: Path) -> None:
        self.backing = backing
        self.mount_point = mount_point
        backing.mkdir(parents=True, exist_ok=True)
        mount_point.mkdir(parents=True, exist_ok=True)

    def mount(self) -> None:
        subprocess.run(["bindfs", str(self.backing), str(self.mount_point)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.mount_point)], check=True)

    def is_mounted(self) -> bool:
        return os.path.ismount(self.mount_point)


@pytest.fixture
def share(tmp_path: Path) -> Iterator[Share]:
    mounted = Share(tmp_path / "rip-pc", tmp_path / "mnt" / "rip1")
    mounted.mount()
    yield mounted
    if mounted.is_mounted():
        mounted.unmount()


def _job(job_id: int, urls: list[str]) -> dict[str, Any]:
    items = [
        {"id": job_id * 10 + i, "order_item_id": job_id * 10 + i, "order_item": {
            "id": job_id * 10 + i, "artwork": [{"name": f"job{job_id}-{i}.png", "ext": "png", "clientUrl": url}]}}
        for i, url in enumerate(urls)
    ]  # fmt: skip
    return {"id": job_id, "artwork": None, "items": items}


async def _states(url: str, job_id: int) -> list[str]:
    status, job = await api("GET", f"{url}/api/jobs/{job_id}")
    assert status == 200, job
    return [delivery["state"] for delivery in job["deliveries"]]


async def _in_state(url: str, job_id: int, state: str) -> bool:
    return all(found == state for found in await _states(url, job_id))


@needs_bindfs
async def test_share_pickup_seen_by_polling(tmp_path: Path, origin: ArtworkOrigin, share: Share, daemon_process) -> None:
    """On a FUSE share, files the RIP PC deletes behind the mount are seen by polling."""
    table = settings_table(tmp_path)
    table["printers"][0].update(hotfolder=str(share.mount_point), require_mount=True)
    daemon = await daemon_process(table)
    urls = [origin.add_generated(f"/a/{i}.png", "png", 100_000, seed=i) for i in range(3)]

    status, printers = await api("GET", f"{daemon.url}/api/printers")
    assert printers["printers"][0]["watch"] == "polling"
    assert printers["printers"][0]["filesystem"].startswith("fuse")

    async with SimulatedRip(share.backing, interval=0.05) as rip:
        await api("POST", f"{daemon.url}/kornitx/jobs", json=_job(1, urls))
        await wait_until(lambda: _in_state(daemon.url, 1, "picked_up"), 20, "pickups seen through the share")
    assert len(rip.taken) == 3
    assert rip.problems == []


@needs_bindfs
async def test_unmounted_share_is_an_outage(tmp_path: Path, origin: ArtworkOrigin, share: Share, daemon_process) -> None:
    """An unmounted share is an outage: no pickups counted, nothing written, recovery on remount."""
    table = settings_table(tmp_path)
    table["printers"][0].update(hotfolder=str(share.mount_point), require_mount=True)
    daemon = await daemon_process(table)
    urls = [origin.add_generated(f"/b/{i}.png", "png", 50_000, seed=i) for i in range(4)]

    await api("POST", f"{daemon.url}/kornitx/jobs", json=_job(2, urls[:2]))
    await wait_until(lambda: _in_state(daemon.url, 2, "delivered"), 20, "files delivered to the share")

    share.unmount()
    offline = await daemon.wait_for_event("printer_outage", 10)
    assert "printer-1" == offline["printer"]
    status, ready = await api("GET", f"{daemon.url}/readyz")
    assert status == 503
    assert any("printer printer-1" in problem for problem in ready["problems"])

    status, _ = await api("POST", f"{daemon.url}/kornitx/jobs", json=_job(3, urls[2:]))
    assert status == 202
    await daemon.wait_for_event("job_received", 10, start=len(daemon.lines) - 5)
    scans_after = len(daemon.lines)
    await wait_until(lambda: _scanned_since(daemon, scans_after), 10, "more outage scans")
    assert await _in_state(daemon.url, 2, "delivered"), "an unmounted share must not count as pickups"
    assert await _in_state(daemon.url, 3, "pending")
    assert list(share.mount_point.iterdir()) == [], "nothing may be written into the bare mount point"

    share.mount()
    recovered = await daemon.wait_for_event("printer_recovered", 10)
    assert recovered["printer"] == "printer-1"
    async with SimulatedRip(share.backing, interval=0.05) as rip:
        await wait_until(lambda: _in_state(daemon.url, 3, "picked_up"), 20, "the held job delivered and taken")
        await wait_until(lambda: _in_state(daemon.url, 2, "picked_up"), 20, "the first job taken")
    assert sorted(taken.name for taken in rip.taken) == [f"job{j}-{i}.png" for j in (2, 3) for i in range(2)]
    status, _ = await api("GET", f"{daemon.url}/readyz")
    assert status == 200


async def _scanned_since(daemon: Any, index: int) -> bool:
    status, printers = await api("GET", f"{daemon.url}/api/printers")
    return status == 200 and printers["printers"][0]["state"] == "outage" and len(daemon.lines) >= index


async def test_vanished_hotfolder_is_an_outage(tmp_path: Path, origin: ArtworkOrigin, daemon_process) -> None:
    """A hot folder that disappears is an outage named by /readyz, and recovers when it is back."""
    daemon = await daemon_process(settings_table(tmp_path))
    hotfolder = tmp_path / "hot-1"
    hotfolder.rename(tmp_path / "hot-1-away")

    offline = await daemon.wait_for_event("printer_outage", 30)
    assert "cannot be read" in offline["reason"]
    status, ready = await api("GET", f"{daemon.url}/readyz")
    assert status == 503
    assert any(str(hotfolder) in problem for problem in ready["problems"])

    (tmp_path / "hot-1-away").rename(hotfolder)
    await daemon.wait_for_event("printer_recovered", 30)
    status, _ = await api("GET", f"{daemon.url}/readyz")
    assert status == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@needs_tmpfs
async def test_full_hotfolder_waits_then_recovers(tmp_path: Path, origin: ArtworkOrigin, small_disk: Path, daemon_process) -> None:
    """When the hot folder's filesystem is full, downloads retry and finish once the RIP frees space."""
    hotfolder = small_disk / "hot"
    table = settings_table(tmp_path)
    table["printers"][0].update(hotfolder=str(hotfolder))
    table["download"].update(max_attempts=50)
    daemon = await daemon_process(table)
    urls = [origin.add_generated(f"/c/{i}.png", "png", 3 * 1024 * 1024, seed=i) for i in range(4)]
    expected = {f"job4-{i}.png": origin.expected_sha256(f"/c/{i}.png") for i in range(4)}

    await api("POST", f"{daemon.url}/kornitx/jobs", json=_job(4, urls))
    retry = await daemon.wait_for_event("download_retry", 30)
    assert "space" in retry["error"], retry

    async with SimulatedRip(hotfolder, interval=0.05, expected=expected) as rip:
        await wait_until(lambda: _in_state(daemon.url, 4, "picked_up"), 60, "every file taken once space returned")
    assert rip.problems == []
    assert len(rip.taken) == 4


@needs_tmpfs
async def test_full_journal_answers_503(tmp_path: Path, origin: ArtworkOrigin, small_disk: Path, daemon_process) -> None:
    """A journal that cannot commit answers 503 and keeps nothing; it accepts again with space."""
    table = settings_table(tmp_path, storage={"state_dir": str(small_disk / "state")})
    daemon = await daemon_process(table)
    filler = small_disk / "filler"
    _fill(filler)
    big_job = _job(5, [origin.url(f"/d/{i}.png") for i in range(3000)])

    status, answer = await api("POST", f"{daemon.url}/kornitx/jobs", json=big_job)
    assert status == 503, answer
    status, _ = await api("GET", f"{daemon.url}/api/jobs/5")
    assert status == 404

    filler.unlink()
    status, answer = await api("POST", f"{daemon.url}/kornitx/jobs", json=big_job)
    assert status == 202, answer
    assert answer["deliveries"] == 3000


def _fill(path: Path) -> None:
    """Write until the filesystem is full."""
    with path.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError:
            pass
