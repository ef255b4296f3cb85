"""Nothing acknowledged is lost: SIGKILL, SIGTERM and duplicate pushes against the real process."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from conftest import DaemonProcess, api, settings_table, wait_until

from hotfolder_feeder.origin import ArtworkOrigin, Fault, FaultPlan
from hotfolder_feeder.rip import SimulatedRip

FILES = 36
RATE = 1024 * 1024  # bytes per second per download, so kills land mid-download


def _job(job_id: int, urls: list[str]) -> dict[str, Any]:
    items = []
    for index, url in enumerate(urls):
        name = f"Setup A_1_Pallet_{job_id}-{index:03d}_1_0_0.png"
        items.append({
            "id": job_id * 1000 + index, "order_item_id": job_id * 1000 + index, "batch_job_id": job_id,
            "order_item": {"id": job_id * 1000 + index, "artwork": [{"name": name, "ext": "png", "clientUrl": url}]},
        })  # fmt: skip
    return {"id": job_id, "artwork": None, "items": items}


def _serve_files(origin: ArtworkOrigin, job_id: int, count: int, slow: bool) -> tuple[list[str], dict[str, str]]:
    urls, expected = [], {}
    for index in range(count):
        path = f"/artwork/{job_id}/{index}.png"
        size = random.Random(index).randint(256 * 1024, 3 * 1024 * 1024)
        urls.append(origin.add_generated(path, "png", size, seed=index))
        if slow:
            origin.fault(path, FaultPlan(Fault.SLOW, times=-1, rate=RATE))
        expected[f"Setup A_1_Pallet_{job_id}-{index:03d}_1_0_0.png"] = origin.expected_sha256(path)
    return urls, expected


async def _states(url: str, job_id: int) -> list[str]:
    status, job = await api("GET", f"{url}/api/jobs/{job_id}")
    assert status == 200, job
    return [delivery["state"] for delivery in job["deliveries"]]


async def _all_picked_up(url: str, job_id: int) -> bool:
    return all(state == "picked_up" for state in await _states(url, job_id))


async def test_sigkill_loses_nothing(tmp_path: Path, origin: ArtworkOrigin, daemon_process) -> None:
    """Killed with SIGKILL five times mid-flow, the daemon still delivers every file once and whole."""
    urls, expected = _serve_files(origin, 7001, FILES, slow=True)
    table = settings_table(tmp_path, download={"concurrency": 6, "per_host": 6})
    daemon: DaemonProcess = await daemon_process(table)
    processes = [daemon]
    kills = random.Random(7001)

    async with SimulatedRip(tmp_path / "hot-1", interval=0.05, expected=expected) as rip:
        status, answer = await api("POST", f"{daemon.url}/kornitx/jobs", json=_job(7001, urls))
        assert status == 202, answer

        for _ in range(5):
            await asyncio.sleep(kills.uniform(1.0, 2.0))  # a random moment to kill at, not a wait
            daemon.kill()
            await daemon.process.wait()
            daemon = DaemonProcess(daemon.config_path)
            await daemon.start()
            processes.append(daemon)

        await wait_until(lambda: _all_picked_up(daemon.url, 7001), 120, "every file picked up")
        await rip.wait_taken(FILES, timeout=10)

    assert rip.problems == []
    assert sorted(taken.name for taken in rip.taken) == sorted(expected)
    assert await daemon.stop() == 0
    resumed = [line for p in processes for line in p.lines if line.get("resumed_from")]
    assert resumed, "no download was resumed: the kills never landed mid-download"


async def test_sigterm_puts_downloads_back(tmp_path: Path, origin: ArtworkOrigin, daemon_process) -> None:
    """SIGTERM mid-download exits 0 quickly; the next start finishes the job."""
    urls, expected = _serve_files(origin, 7002, 4, slow=False)
    for index in range(4):
        origin.fault(f"/artwork/7002/{index}.png", FaultPlan(Fault.SLOW, times=-1, rate=64 * 1024))
    table = settings_table(tmp_path, download={"stop_timeout": "1s"})
    daemon = await daemon_process(table)

    status, _ = await api("POST", f"{daemon.url}/kornitx/jobs", json=_job(7002, urls))
    assert status == 202
    await wait_until(lambda: _any_downloading(daemon.url, 7002), 10, "a download running")
    assert await daemon.stop(timeout=15) == 0
    assert any(line.get("event") == "downloads_abandoned" for line in daemon.lines)

    origin.clear_faults()
    restarted = DaemonProcess(daemon.config_path)
    await restarted.start()
    async with SimulatedRip(tmp_path / "hot-1", interval=0.05, expected=expected) as rip:
        await wait_until(lambda: _all_picked_up(restarted.url, 7002), 30, "every file picked up")
        await rip.wait_taken(4, timeout=10)
    assert rip.problems == []
    assert await restarted.stop() == 0


async def _any_downloading(url: str, job_id: int) -> bool:
    return "downloading" in await _states(url, job_id)


async def test_concurrent_duplicate_pushes(tmp_path: Path, origin: ArtworkOrigin, daemon_process) -> None:
    """Eight identical pushes at once give one 202, seven 200 duplicates and one set of files."""
    urls, expected = _serve_files(origin, 7003, 5, slow=False)
    daemon = await daemon_process(settings_table(tmp_path))

    async with SimulatedRip(tmp_path / "hot-1", interval=0.05, expected=expected) as rip:
        answers = await asyncio.gather(
            *(api("POST", f"{daemon.url}/kornitx/jobs", json=_job(7003, urls)) for _ in range(8))
        )
        await wait_until(lambda: _all_picked_up(daemon.url, 7003), 30, "every file picked up")
        status, late = await api("POST", f"{daemon.url}/kornitx/jobs", json=_job(7003, urls))
        await rip.wait_taken(5, timeout=10)

    assert sorted(status for status, _ in answers) == [200] * 7 + [202]
    assert all(answer["deliveries"] == 5 for _, answer in answers)
    assert (status, late["duplicate"], late["added"]) == (200, True, 0)
    assert len(rip.taken) == 5
    assert rip.problems == []


async def test_repush_adds_new_artwork_only(tmp_path: Path, origin: ArtworkOrigin, daemon_process) -> None:
    """A re-push with one more item adds one delivery and writes only the new file."""
    urls, expected = _serve_files(origin, 7004, 3, slow=False)
    daemon = await daemon_process(settings_table(tmp_path))

    async with SimulatedRip(tmp_path / "hot-1", interval=0.05, expected=expected) as rip:
        await api("POST", f"{daemon.url}/kornitx/jobs", json=_job(7004, urls[:2]))
        await wait_until(lambda: _all_picked_up(daemon.url, 7004), 30, "the first two files picked up")
        status, answer = await api("POST", f"{daemon.url}/kornitx/jobs", json=_job(7004, urls))
        await wait_until(lambda: _all_picked_up(daemon.url, 7004), 30, "the third file picked up")
        await rip.wait_taken(3, timeout=10)

    assert (status, answer) == (200, {"job_id": 7004, "duplicate": True, "deliveries": 3, "added": 1})
    assert len(rip.taken) == 3
    assert rip.problems == []
