"""Faults that need no root: a journal that cannot grow and a watcher thread that dies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import api, settings_table, wait_until

from hotfolder_feeder.daemon import Daemon
from hotfolder_feeder.origin import ArtworkOrigin
from hotfolder_feeder.rip import SimulatedRip


def _job(job_id: int, urls: list[str]) -> dict[str, Any]:
    items = [
        {"id": job_id * 100 + i, "order_item_id": job_id * 100 + i, "order_item": {
            "id": job_id * 100 + i, "artwork": [{"name": f"r{job_id}-{i}.png", "ext": "png", "clientUrl": url}]}}
        for i, url in enumerate(urls)
    ]  # fmt: skip
    return {"id": job_id, "artwork": None, "items": items}


async def _cap_journal_growth(daemon: Daemon, capped: bool) -> None:
    """Stop the journal file from growing, as a full disk would, or lift the cap."""

    def cap() -> None:
        connection = daemon.journal._db
        pages = connection.execute("PRAGMA page_count").fetchone()[0] if capped else 1_073_741_823
        connection.execute(f"PRAGMA max_page_count = {pages}")

    await daemon.journal._run(cap)


async def test_journal_full_answers_503(start_daemon, origin: ArtworkOrigin) -> None:
    """A push the journal cannot commit gets 503 and leaves no trace; the next one is accepted."""
    daemon = await start_daemon()
    job = _job(1, [origin.url(f"/x/{i}.png") for i in range(2000)])
    await _cap_journal_growth(daemon, True)

    status, answer = await api("POST", f"{daemon.listen_url}/kornitx/jobs", json=job)
    assert status == 503, answer
    assert "journal" in answer["reason"]
    status, _ = await api("GET", f"{daemon.listen_url}/api/jobs/1")
    assert status == 404
    await _cap_journal_growth(daemon, False)
    status, answer = await api("POST", f"{daemon.listen_url}/kornitx/jobs", json=job)
    assert status == 202, answer
    assert answer["deliveries"] == 2000


async def test_dead_watcher_is_restarted(start_daemon, origin: ArtworkOrigin, tmp_path: Path) -> None:
    """A watchdog observer that dies is noticed, restarted and pickups are still seen."""
    daemon = await start_daemon()
    feed = daemon.feeds["printer-1"]
    assert feed.mode == "native"
    observer = feed._watcher._observer
    observer.stop()
    observer.join(5)

    await wait_until(lambda: _watcher_alive_again(feed, observer), 10, "a new observer thread")
    url = origin.add_generated("/w/0.png", "png", 20_000)
    async with SimulatedRip(tmp_path / "hot-1", interval=0.05) as rip:
        await api("POST", f"{daemon.listen_url}/kornitx/jobs", json=_job(2, [url]))
        await rip.wait_taken(1, timeout=10)
        await wait_until(lambda: _state_is(daemon, 2, "picked_up"), 10, "pickup seen after the restart")


async def _watcher_alive_again(feed: Any, old_observer: Any) -> bool:
    return feed._watcher is not None and feed._watcher._observer is not old_observer and feed.is_alive()


async def _state_is(daemon: Daemon, job_id: int, state: str) -> bool:
    job = await daemon.journal.job(job_id)
    return job is not None and all(d["state"] == state for d in job["deliveries"])
