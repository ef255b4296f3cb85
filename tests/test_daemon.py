"""Tests of the in-process daemon: retries, failures, hand-off, routing, outages and watching."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import api, settings_table, wait_until

from hotfolder_feeder.config import STAGING_DIR_NAME
from hotfolder_feeder.daemon import Daemon
from hotfolder_feeder.origin import ArtworkOrigin, Fault, FaultPlan, make_artwork
from hotfolder_feeder.rip import SimulatedRip
from hotfolder_feeder.watch import POLLED_FILESYSTEMS, mount_of

StartDaemon = Callable[..., Awaitable[Daemon]]

JOB_ID = 9972198
WAIT = 20.0


def consolidation_payload(
    job_id: int, artworks: list[tuple[str, str]], sku: str | None = None
) -> dict[str, Any]:
    """Build a consolidation job with one item per (artwork name, URL)."""
    items = []
    for index, (name, url) in enumerate(artworks, start=1):
        order_item: dict[str, Any] = {
            "id": job_id * 100 + index,
            "artwork": [{"name": name, "ext": name.rpartition(".")[2], "clientUrl": url}],
        }
        if sku is not None:
            order_item["sku"] = sku
        item_id = job_id * 1000 + index
        items.append({"id": item_id, "order_item_id": order_item["id"], "order_item": order_item})
    return {"id": job_id, "artwork": None, "items": items}


async def push(daemon: Daemon, payload: dict[str, Any]) -> dict[str, Any]:
    status, answer = await api("POST", daemon.listen_url + "/kornitx/jobs", json=payload)
    assert status == 202, answer
    return answer


async def read_job(daemon: Daemon, job_id: int) -> dict[str, Any]:
    status, job = await api("GET", f"{daemon.listen_url}/api/jobs/{job_id}")
    assert status == 200, job
    return job


async def read_printers(daemon: Daemon) -> dict[str, dict[str, Any]]:
    status, answer = await api("GET", daemon.listen_url + "/api/printers")
    assert status == 200, answer
    return {printer["name"]: printer for printer in answer["printers"]}


async def wait_for_job(
    daemon: Daemon,
    job_id: int,
    ready: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = WAIT,
) -> dict[str, Any]:
    """Poll the job API until `ready(job)`. On timeout the message shows the job as last read."""
    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        nonlocal last
        last = await read_job(daemon, job_id)
        return last if ready(last) else None

    try:
        return await wait_until(check, timeout, what)
    except AssertionError:
        message = f"timed out after {timeout}s waiting for {what}. Last job read: {last}"
        raise AssertionError(message) from None


async def wait_for_state(
    daemon: Daemon, job_id: int, state: str, timeout: float = WAIT
) -> dict[str, Any]:
    """Wait until every delivery of a job is in `state`, and return the first delivery."""
    job = await wait_for_job(
        daemon, job_id, lambda job: all(d["state"] == state for d in job["deliveries"]),
        f"job {job_id} deliveries {state}", timeout,
    )  # fmt: skip
    return job["deliveries"][0]


async def wait_for_scan_after(daemon: Daemon, printer: str, moment: float) -> float:
    """Wait until the printer's feed finishes a full pass after `moment`, and return when."""

    async def scanned() -> float | None:
        last = (await read_printers(daemon))[printer]["last_scan_at"]
        return last if last is not None and last > moment else None

    finished: float = await wait_until(scanned, WAIT, f"a scan of {printer} after {moment}")
    return finished


async def readiness(daemon: Daemon) -> tuple[int, Any]:
    return await api("GET", daemon.listen_url + "/readyz")


def timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def visible_files(folder: Path) -> list[str]:
    """Return the names a RIP would read: the folder's own files, not dot-files or subfolders."""
    files = [path for path in folder.iterdir() if path.is_file()]
    return sorted(path.name for path in files if not path.name.startswith("."))


def states(job: dict[str, Any]) -> list[str]:
    return [delivery["state"] for delivery in job["deliveries"]]


def polling_printer(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    printer = {
        "name": "printer-1",
        "hotfolder": str(tmp_path / "hot-1"),
        "watch": "polling",
        "poll_interval": "0.2s",
    }
    return {**printer, **overrides}


# ---------------------------------------------------------------------------
# Retries and failures


async def test_transient_retried_then_delivered(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """Two 503 responses are retried, and the third attempt delivers the file whole."""
    url = origin.add_generated("/art/front.png", "png", 300_000, seed=1)
    origin.fault("/art/front.png", FaultPlan(Fault.STATUS, status=503, times=2))
    daemon = await start_daemon()

    async with SimulatedRip(tmp_path / "hot-1", interval=0.05) as rip:
        answer = await push(daemon, consolidation_payload(JOB_ID, [("front.png", url)]))
        delivery = await wait_for_state(daemon, JOB_ID, "picked_up")

    assert answer == {"job_id": JOB_ID, "duplicate": False, "deliveries": 1}
    assert delivery["attempts"] == 3
    assert delivery["error"] is None
    assert delivery["sha256"] == origin.expected_sha256("/art/front.png")
    assert [taken.sha256 for taken in rip.taken] == [delivery["sha256"]]
    assert rip.problems == []
    assert len(origin.requests_for("/art/front.png")) == 3


async def test_truncated_download_resumed(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A body cut short is retried with Range from the staged bytes, and the file is whole."""
    url = origin.add_generated("/art/big.png", "png", 4 * 1024 * 1024, seed=2)
    origin.fault("/art/big.png", FaultPlan(Fault.TRUNCATE, after_bytes=3 * 1024 * 1024))
    daemon = await start_daemon()

    await push(daemon, consolidation_payload(JOB_ID, [("big.png", url)]))
    delivery = await wait_for_state(daemon, JOB_ID, "delivered")

    first, second = origin.requests_for("/art/big.png")
    assert first.range is None
    assert second.range is not None
    assert second.range.startswith("bytes=")
    assert delivery["attempts"] == 2
    assert delivery["sha256"] == origin.expected_sha256("/art/big.png")
    expected = make_artwork("png", 4 * 1024 * 1024, seed=2)
    assert (tmp_path / "hot-1" / "big.png").read_bytes() == expected


async def test_not_found_fails_then_retry(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A 404 fails the delivery at the first attempt, and the retry endpoint delivers it later."""
    url = origin.add_generated("/art/back.png", "png", 50_000, seed=3)
    origin.fault("/art/back.png", FaultPlan(Fault.STATUS, status=404, times=-1))
    daemon = await start_daemon()

    await push(daemon, consolidation_payload(JOB_ID, [("back.png", url)]))
    failed = await wait_for_state(daemon, JOB_ID, "failed")
    job = await read_job(daemon, JOB_ID)

    assert failed["reason"] == "download_failed"
    assert "404" in failed["error"]
    assert failed["attempts"] == 1
    assert job["state"] == "failed"
    assert len(origin.requests_for("/art/back.png")) == 1

    origin.clear_faults()
    status, answer = await api("POST", f"{daemon.listen_url}/api/jobs/{JOB_ID}/retry")
    delivered = await wait_for_state(daemon, JOB_ID, "delivered")

    assert (status, answer) == (200, {"job_id": JOB_ID, "retried": 1})
    assert delivered["attempts"] == 1
    assert delivered["error"] is None
    assert delivered["reason"] is None
    assert (tmp_path / "hot-1" / "back.png").read_bytes() == make_artwork("png", 50_000, seed=3)
    assert (await read_job(daemon, JOB_ID))["state"] == "delivered"


async def test_max_attempts_gives_up(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A 503 that never ends fails the delivery after max_attempts, saying so in the error."""
    url = origin.add_generated("/art/busy.png", "png", 1000)
    origin.fault("/art/busy.png", FaultPlan(Fault.STATUS, status=503, times=-1))
    daemon = await start_daemon(settings_table(tmp_path, download={"max_attempts": 2}))

    await push(daemon, consolidation_payload(JOB_ID, [("busy.png", url)]))
    failed = await wait_for_state(daemon, JOB_ID, "failed")

    assert failed["reason"] == "download_failed"
    assert "503" in failed["error"]
    assert "gave up after 2 attempts" in failed["error"]
    assert failed["attempts"] == 2
    assert len(origin.requests_for("/art/busy.png")) == 2


async def test_html_page_never_delivered(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """An HTML page sent with 200 is never handed off, and the delivery fails after max_attempts."""
    url = origin.add_generated("/art/page.png", "png", 1000)
    origin.fault("/art/page.png", FaultPlan(Fault.HTML_ERROR_PAGE, times=-1))
    daemon = await start_daemon(settings_table(tmp_path, download={"max_attempts": 3}))
    hotfolder = tmp_path / "hot-1"

    async with SimulatedRip(hotfolder, interval=0.02) as rip:
        await push(daemon, consolidation_payload(JOB_ID, [("page.png", url)]))
        failed = await wait_for_state(daemon, JOB_ID, "failed")

    assert failed["reason"] == "download_failed"
    assert "gave up after 3 attempts" in failed["error"]
    assert failed["attempts"] == 3
    assert rip.taken == []
    assert rip.problems == []
    assert visible_files(hotfolder) == []
    assert list((hotfolder / STAGING_DIR_NAME).iterdir()) == []


async def test_invalid_url_fails_at_once(tmp_path: Path, start_daemon: StartDaemon) -> None:
    """A URL with an out-of-range port fails the delivery at the first attempt."""
    url = "http://127.0.0.1:99999/bad.png"
    daemon = await start_daemon(settings_table(tmp_path, download={"max_attempts": 3}))

    await push(daemon, consolidation_payload(JOB_ID, [("bad.png", url)]))
    failed = await wait_for_state(daemon, JOB_ID, "failed")

    assert failed["attempts"] == 1


# ---------------------------------------------------------------------------
# Hand-off and routing


async def test_existing_file_not_overwritten(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A file already in the hot folder under the same name is kept until it is gone."""
    url = origin.add_generated("/art/logo.png", "png", 20_000, seed=4)
    hotfolder = tmp_path / "hot-1"
    hotfolder.mkdir()
    existing = hotfolder / "logo.png"
    existing.write_bytes(b"the operator's own file")
    # Polling passes run every 0.2 s, so the test can wait for a pass that began after staging.
    daemon = await start_daemon(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))

    await push(daemon, consolidation_payload(JOB_ID, [("logo.png", url)]))
    staged = await wait_for_state(daemon, JOB_ID, "staged")
    finished = await wait_for_scan_after(daemon, "printer-1", timestamp(staged["staged_at"]))
    await wait_for_scan_after(daemon, "printer-1", finished)

    assert existing.read_bytes() == b"the operator's own file"
    assert (await read_job(daemon, JOB_ID))["deliveries"][0]["state"] == "staged"

    existing.unlink()
    delivered = await wait_for_state(daemon, JOB_ID, "delivered")

    assert existing.read_bytes() == make_artwork("png", 20_000, seed=4)
    assert delivered["path"] == str(existing)


async def test_max_waiting_limits_handoff(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """With max_waiting 1, the hot folder holds one delivered file until the RIP takes it."""
    names = [f"shirt-{n}.png" for n in range(3)]
    urls = [origin.add_generated(f"/art/{name}", "png", 3000) for name in names]
    printer = polling_printer(tmp_path, max_waiting=1)
    daemon = await start_daemon(settings_table(tmp_path, printers=[printer]))
    hotfolder = tmp_path / "hot-1"

    await push(daemon, consolidation_payload(JOB_ID, list(zip(names, urls, strict=True))))
    job = await wait_for_job(
        daemon, JOB_ID, lambda job: states(job) == ["delivered", "staged", "staged"],
        "one delivery handed off and two staged",
    )  # fmt: skip
    last_staged = max(timestamp(d["staged_at"]) for d in job["deliveries"])
    finished = await wait_for_scan_after(daemon, "printer-1", last_staged)
    await wait_for_scan_after(daemon, "printer-1", finished)

    assert visible_files(hotfolder) == [names[0]]

    async with SimulatedRip(hotfolder, interval=0.05) as rip:
        await wait_for_state(daemon, JOB_ID, "picked_up")

    assert [taken.name for taken in rip.taken] == names
    assert rip.problems == []


async def test_unroutable_delivery_failed(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """With no default and no matching rule, the job is accepted and its delivery is unroutable."""
    url = origin.add_generated("/art/tee.png", "png", 1000)
    table = settings_table(tmp_path)
    table["routing"] = {"rules": [{"printer": "printer-1", "sku": "HOODIE-*"}]}
    daemon = await start_daemon(table)

    payload = consolidation_payload(JOB_ID, [("tee.png", url)], sku="TEE-BLACK-M")
    answer = await push(daemon, payload)
    job = await read_job(daemon, JOB_ID)
    status, retried = await api("POST", f"{daemon.listen_url}/api/jobs/{JOB_ID}/retry")

    assert answer == {"job_id": JOB_ID, "duplicate": False, "deliveries": 1}
    [delivery] = job["deliveries"]
    assert delivery["state"] == "failed"
    assert delivery["reason"] == "unroutable"
    assert delivery["printer"] is None
    assert delivery["name"] is None
    assert job["state"] == "failed"
    assert (status, retried) == (200, {"job_id": JOB_ID, "retried": 0})
    assert origin.requests == []


async def test_rule_routes_matching_sku(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A rule whose glob matches the item's SKU, in another case, routes it to its printer."""
    url = origin.add_generated("/art/hoodie.png", "png", 1000)
    table = settings_table(tmp_path)
    table["routing"] = {"rules": [{"printer": "printer-1", "sku": "hoodie-*"}]}
    daemon = await start_daemon(table)

    await push(daemon, consolidation_payload(JOB_ID, [("hoodie.png", url)], sku="HOODIE-BLACK-M"))
    delivery = await wait_for_state(daemon, JOB_ID, "delivered")

    assert delivery["printer"] == "printer-1"
    assert (tmp_path / "hot-1" / "hoodie.png").is_file()


async def test_group_keeps_job_together(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """All deliveries of a job go to one printer of the group, the one with fewer waiting."""
    printers = [
        {"name": f"printer-{n}", "hotfolder": str(tmp_path / f"hot-{n}"), "group": "g"}
        for n in (1, 2)
    ]
    table = settings_table(tmp_path, printers=printers)
    table["routing"] = {"rules": [{"group": "g"}]}
    daemon = await start_daemon(table)
    jobs = {}
    for job_id in (101, 102):
        names = [f"{job_id}-{n}.png" for n in range(3)]
        artworks = [(name, origin.add_generated(f"/art/{name}", "png", 2000)) for name in names]
        await push(daemon, consolidation_payload(job_id, artworks))
        jobs[job_id] = await read_job(daemon, job_id)

    first = {delivery["printer"] for delivery in jobs[101]["deliveries"]}
    second = {delivery["printer"] for delivery in jobs[102]["deliveries"]}
    assert len(first) == 1
    assert len(second) == 1
    assert first | second == {"printer-1", "printer-2"}

    hotfolders = {printer["name"]: printer["hotfolder"] for printer in printers}
    for job_id in (101, 102):
        job = await wait_for_job(
            daemon, job_id, lambda job: job["state"] == "delivered", f"job {job_id} delivered"
        )
        for delivery in job["deliveries"]:
            assert delivery["path"] == str(Path(hotfolders[delivery["printer"]]) / delivery["name"])


# ---------------------------------------------------------------------------
# Outages, watching and stalls


async def test_outage_not_pickup(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A hot folder that disappears is an outage, never a pickup, and ends when it is back."""
    url = origin.add_generated("/art/sleeve.png", "png", 5000)
    # Polling, so that every pass after the restore is a full scan the test can wait for.
    daemon = await start_daemon(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))
    hotfolder = tmp_path / "hot-1"
    away = tmp_path / "hot-1-away"

    await push(daemon, consolidation_payload(JOB_ID, [("sleeve.png", url)]))
    await wait_for_state(daemon, JOB_ID, "delivered")
    assert await readiness(daemon) == (200, {"status": "ready"})

    hotfolder.rename(away)
    status, body = await wait_until(lambda: _not_ready(daemon), WAIT, "readyz to report the outage")
    printer = (await read_printers(daemon))["printer-1"]

    assert status == 503
    assert any(problem.startswith("printer printer-1:") for problem in body["problems"])
    assert printer["state"] == "outage"
    assert (await read_job(daemon, JOB_ID))["deliveries"][0]["state"] == "delivered"

    away.rename(hotfolder)
    restored = time.time()
    await wait_until(lambda: _ready(daemon), WAIT, "readyz to recover")
    await wait_for_scan_after(daemon, "printer-1", restored)

    assert (await read_job(daemon, JOB_ID))["deliveries"][0]["state"] == "delivered"
    assert (await read_printers(daemon))["printer-1"]["state"] == "online"


async def test_outage_native_detected(tmp_path: Path, start_daemon: StartDaemon) -> None:
    """With native watching, a vanished hot folder is reported by readyz within seconds."""
    daemon = await start_daemon()
    hotfolder = tmp_path / "hot-1"
    away = tmp_path / "hot-1-away"
    assert await readiness(daemon) == (200, {"status": "ready"})

    hotfolder.rename(away)
    status, body = await wait_until(lambda: _not_ready(daemon), 5, "readyz to report the outage")

    assert status == 503
    assert any(problem.startswith("printer printer-1:") for problem in body["problems"])

    away.rename(hotfolder)
    await wait_until(lambda: _ready(daemon), 5, "readyz to recover")


async def test_pickup_seen_after_outage(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """After a hot folder comes back, native events still report a file the RIP takes."""
    url = origin.add_generated("/art/pocket.png", "png", 5000)
    daemon = await start_daemon()
    hotfolder = tmp_path / "hot-1"
    away = tmp_path / "hot-1-away"

    await push(daemon, consolidation_payload(JOB_ID, [("pocket.png", url)]))
    await wait_for_state(daemon, JOB_ID, "delivered")
    hotfolder.rename(away)
    await wait_until(lambda: _not_ready(daemon), WAIT, "readyz to report the outage")
    away.rename(hotfolder)
    await wait_until(lambda: _ready(daemon), WAIT, "readyz to recover")

    async with SimulatedRip(hotfolder, interval=0.05) as rip:
        await rip.wait_taken(1, timeout=10)
        delivery = await wait_for_state(daemon, JOB_ID, "picked_up", timeout=10)

    assert delivery["picked_up_at"] is not None


async def test_pickup_seen_in_new_folder(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """After the hot folder is replaced by a new one, native events still report pickups."""
    url = origin.add_generated("/art/cuff.png", "png", 5000)
    daemon = await start_daemon()
    hotfolder = tmp_path / "hot-1"

    hotfolder.rename(tmp_path / "hot-1-old")
    await wait_until(lambda: _not_ready(daemon), WAIT, "readyz to report the outage")
    hotfolder.mkdir()
    await wait_until(lambda: _ready(daemon), WAIT, "readyz to recover")
    await push(daemon, consolidation_payload(JOB_ID, [("cuff.png", url)]))
    await wait_for_state(daemon, JOB_ID, "delivered")

    async with SimulatedRip(hotfolder, interval=0.05) as rip:
        await rip.wait_taken(1, timeout=10)
        delivery = await wait_for_state(daemon, JOB_ID, "picked_up", timeout=10)

    assert delivery["picked_up_at"] is not None


async def _not_ready(daemon: Daemon) -> tuple[int, Any] | None:
    status, body = await readiness(daemon)
    return (status, body) if status == 503 else None


async def _ready(daemon: Daemon) -> bool:
    status, _ = await readiness(daemon)
    return status == 200


async def test_watch_auto_native(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """On a local filesystem, watch "auto" uses native events, and a pickup is seen through them."""
    fstype = mount_of(tmp_path).fstype
    if fstype in POLLED_FILESYSTEMS or fstype.startswith("fuse"):
        pytest.skip(f"tmp_path is on {fstype}, which auto mode polls")
    url = origin.add_generated("/art/native.png", "png", 5000)
    daemon = await start_daemon()

    printer = (await read_printers(daemon))["printer-1"]
    async with SimulatedRip(tmp_path / "hot-1", interval=0.05):
        await push(daemon, consolidation_payload(JOB_ID, [("native.png", url)]))
        # Without an event, native mode scans the folder only every 30 s, so a pickup seen
        # sooner came from an event.
        await wait_for_state(daemon, JOB_ID, "picked_up", timeout=10)

    assert printer["watch"] == "native"
    assert printer["filesystem"] == fstype
    assert printer["watcher_alive"] is True


async def test_watch_polling_pickup(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """Watch "polling" detects the RIP's pickup by scanning the folder."""
    url = origin.add_generated("/art/polled.png", "png", 5000)
    daemon = await start_daemon(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))

    async with SimulatedRip(tmp_path / "hot-1", interval=0.05) as rip:
        await push(daemon, consolidation_payload(JOB_ID, [("polled.png", url)]))
        delivery = await wait_for_state(daemon, JOB_ID, "picked_up")

    assert (await read_printers(daemon))["printer-1"]["watch"] == "polling"
    assert delivery["sha256"] == origin.expected_sha256("/art/polled.png")
    assert [taken.name for taken in rip.taken] == ["polled.png"]
    assert (await read_job(daemon, JOB_ID))["state"] == "completed"


async def test_stall_flagged(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A file left in the hot folder longer than stall_after is flagged, then still picked up."""
    url = origin.add_generated("/art/stuck.png", "png", 5000)
    # Polling, because native mode checks for stalls only on events and its 30 s reconcile scan.
    printer = polling_printer(tmp_path, stall_after="0.5s")
    daemon = await start_daemon(settings_table(tmp_path, printers=[printer]))

    await push(daemon, consolidation_payload(JOB_ID, [("stuck.png", url)]))
    job = await wait_for_job(
        daemon, JOB_ID, lambda job: job["deliveries"][0]["stalled"], "the delivery stalled"
    )
    counts = (await read_printers(daemon))["printer-1"]["counts"]

    assert job["deliveries"][0]["state"] == "delivered"
    assert counts["stalled"] == 1

    async with SimulatedRip(tmp_path / "hot-1", interval=0.05):
        await wait_for_state(daemon, JOB_ID, "picked_up")
