"""Floor features on a running daemon: feed limit, print order, groups, pauses, stalls, offline
RIPs, cancel, reprint and retry, driven through the HTTP API and the CLI."""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from aiohttp import web
from conftest import DaemonProcess, api, settings_table, wait_until
from structlog.testing import capture_logs

from hotfolder_feeder.config import STAGING_DIR_NAME
from hotfolder_feeder.daemon import Daemon
from hotfolder_feeder.origin import ArtworkOrigin, Fault, FaultPlan, make_artwork
from hotfolder_feeder.rip import SimulatedRip

StartDaemon = Callable[..., Awaitable[Daemon]]
StartProcess = Callable[..., Awaitable[DaemonProcess]]

JOB_ID = 9972198
WAIT = 20.0
ARTWORK_SIZE = 3000
CLI = Path(sys.executable).parent / "hotfolder-feeder"
CLI_TIMEOUT = 60.0
SAMPLE_INTERVAL = 0.02
# A feed with nothing to finish stops within milliseconds.
FEED_STOP_WAIT = 5.0


# ---------------------------------------------------------------------------
# Payloads, API calls and waits


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


def add_artworks(origin: ArtworkOrigin, names: list[str]) -> list[tuple[str, str]]:
    """Serve a small PNG under /art/<name> for each name and return (name, URL) pairs."""
    return [
        (name, origin.add_generated(f"/art/{name}", "png", ARTWORK_SIZE, seed=index))
        for index, name in enumerate(names)
    ]


def expected_digests(origin: ArtworkOrigin, names: list[str]) -> dict[str, str]:
    return {name: origin.expected_sha256(f"/art/{name}") for name in names}


def polling_printer(
    tmp_path: Path, name: str = "printer-1", folder: str = "hot-1", **overrides: Any
) -> dict[str, Any]:
    """Return a printer table that scans its hot folder every 0.1 s, so each pass is a full pass."""
    printer = {
        "name": name,
        "hotfolder": str(tmp_path / folder),
        "watch": "polling",
        "poll_interval": "0.1s",
    }
    return {**printer, **overrides}


def group_table(tmp_path: Path, spread: bool = False) -> dict[str, Any]:
    """Return a config table with two polling printers in group "g" and a rule for the group."""
    printers = [
        polling_printer(tmp_path, name=f"printer-{n}", folder=f"hot-{n}", group="g") for n in (1, 2)
    ]
    table = settings_table(tmp_path, printers=printers)
    table["routing"] = {"rules": [{"group": "g"}]}
    if spread:
        table["groups"] = [{"name": "g", "spread": True}]
    return table


async def push(base_url: str, payload: dict[str, Any]) -> dict[str, Any]:
    status, answer = await api("POST", base_url + "/kornitx/jobs", json=payload)
    assert status == 202, answer
    accepted: dict[str, Any] = answer
    return accepted


async def read_job(base_url: str, job_id: int) -> dict[str, Any]:
    status, answer = await api("GET", f"{base_url}/api/jobs/{job_id}")
    assert status == 200, answer
    job: dict[str, Any] = answer
    return job


async def read_printers(base_url: str) -> dict[str, dict[str, Any]]:
    status, answer = await api("GET", base_url + "/api/printers")
    assert status == 200, answer
    return {printer["name"]: printer for printer in answer["printers"]}


def states(job: dict[str, Any]) -> list[str]:
    return [delivery["state"] for delivery in job["deliveries"]]


def printers_of(job: dict[str, Any]) -> list[str]:
    return [delivery["printer"] for delivery in job["deliveries"]]


async def wait_for_job(
    base_url: str,
    job_id: int,
    ready: Callable[[dict[str, Any]], bool],
    what: str,
) -> dict[str, Any]:
    """Poll the job API until `ready(job)`. On timeout the message shows the job as last read."""
    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        nonlocal last
        last = await read_job(base_url, job_id)
        return last if ready(last) else None

    try:
        found: dict[str, Any] = await wait_until(check, WAIT, what)
    except AssertionError:
        message = f"timed out after {WAIT}s waiting for {what}. Last job read: {last}"
        raise AssertionError(message) from None
    return found


async def wait_for_states(base_url: str, job_id: int, expected: list[str]) -> dict[str, Any]:
    """Wait until the job's delivery states, in position order, equal `expected`."""
    return await wait_for_job(
        base_url, job_id, lambda job: states(job) == expected, f"job {job_id} states {expected}"
    )


async def wait_for_scans(base_url: str, printer: str, count: int = 2) -> None:
    """Wait until the printer's feed has finished `count` full passes after this call.

    A pass may have begun before the call, so at least `count - 1` of them began after it.
    """
    moment = time.time()
    for _ in range(count):

        async def scanned(after: float = moment) -> float | None:
            last = (await read_printers(base_url))[printer]["last_scan_at"]
            return last if last is not None and last > after else None

        moment = await wait_until(scanned, WAIT, f"a scan of {printer} after {moment}")


async def wait_for_printer_state(base_url: str, printer: str, state: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        summary = (await read_printers(base_url))[printer]
        return summary if summary["state"] == state else None

    found: dict[str, Any] = await wait_until(check, WAIT, f"printer {printer} {state}")
    return found


def visible_files(folder: Path) -> list[str]:
    """Return the names a RIP would read: the folder's own files, not dot-files or subfolders."""
    with os.scandir(folder) as entries:
        names = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
    return sorted(name for name in names if not name.startswith("."))


async def run_cli(cwd: Path, *arguments: str) -> tuple[int, str]:
    """Run the installed `hotfolder-feeder` command and return its exit code and its output."""
    # The CLI reads its config, URL and token from HOTFOLDER_FEEDER_* variables when they are set.
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("HOTFOLDER_FEEDER_")
    }
    process = await asyncio.create_subprocess_exec(
        str(CLI), *arguments, cwd=cwd, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, output.decode()


class FolderPeak:
    """A sampler that lists a hot folder every 20 ms and keeps the largest number of files seen."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.largest = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FolderPeak:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        while True:
            self.largest = max(self.largest, len(visible_files(self.folder)))
            await asyncio.sleep(SAMPLE_INTERVAL)


class EventReceiver:
    """A webhook receiver on 127.0.0.1 that records the JSON body of each POST."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.Response(status=204)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [body for body in self.events if body["event"] == event]

    async def wait_for(self, event: str) -> list[dict[str, Any]]:
        async def check() -> list[dict[str, Any]]:
            return self.named(event)

        found: list[dict[str, Any]] = await wait_until(check, WAIT, f"a {event} webhook")
        return found


@pytest.fixture
async def receiver() -> AsyncIterator[EventReceiver]:
    events = EventReceiver()
    await events.start()
    yield events
    await events.stop()


def with_webhook(table: dict[str, Any], url: str) -> dict[str, Any]:
    table["notify"] = {"webhooks": [{"url": url}]}
    return table


def paused_rip(hotfolder: Path, **options: Any) -> SimulatedRip:
    """Return a simulated RIP that takes nothing until resume()."""
    rip = SimulatedRip(hotfolder, interval=SAMPLE_INTERVAL, **options)
    rip.pause()
    return rip


# ---------------------------------------------------------------------------
# Feed limit and print order


async def test_feed_limit_slow_rip(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """With max_waiting 2 and a slow RIP, the hot folder has at most 2 files, and all arrive."""
    names = [f"limit-{n}.png" for n in range(8)]
    artworks = add_artworks(origin, names)
    printer = polling_printer(tmp_path, max_waiting=2, poll_interval="0.05s")
    daemon = await start_daemon(settings_table(tmp_path, printers=[printer]))
    hotfolder = tmp_path / "hot-1"
    expected = expected_digests(origin, names)
    rip = SimulatedRip(hotfolder, interval=SAMPLE_INTERVAL, expected=expected)
    rip.slow = 0.2

    async with FolderPeak(hotfolder) as peak, rip:
        await push(daemon.listen_url, consolidation_payload(JOB_ID, artworks))
        await rip.wait_taken(len(names), timeout=WAIT)
        job = await wait_for_job(
            daemon.listen_url, JOB_ID, lambda job: job["state"] == "completed", "job completed"
        )

    assert peak.largest == 2
    assert sorted(taken.name for taken in rip.taken) == sorted(names)
    assert states(job) == ["picked_up"] * len(names)
    assert rip.problems == []


async def test_feed_limit_paused_rip(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """With max_waiting 2 and a paused RIP, 2 files wait, and after resume all 5 arrive."""
    names = [f"held-{n}.png" for n in range(5)]
    artworks = add_artworks(origin, names)
    printer = polling_printer(tmp_path, max_waiting=2, poll_interval="0.05s")
    daemon = await start_daemon(settings_table(tmp_path, printers=[printer]))
    hotfolder = tmp_path / "hot-1"
    rip = paused_rip(hotfolder, expected=expected_digests(origin, names))

    async with FolderPeak(hotfolder) as peak, rip:
        await push(daemon.listen_url, consolidation_payload(JOB_ID, artworks))
        held = ["delivered", "delivered", "staged", "staged", "staged"]
        await wait_for_states(daemon.listen_url, JOB_ID, held)
        await wait_for_scans(daemon.listen_url, "printer-1")
        waiting = visible_files(hotfolder)
        held_states = states(await read_job(daemon.listen_url, JOB_ID))

        rip.resume()
        await rip.wait_taken(len(names), timeout=WAIT)

    assert waiting == names[:2]
    assert held_states == held
    assert peak.largest == 2
    assert sorted(taken.name for taken in rip.taken) == sorted(names)
    assert rip.problems == []


async def test_print_order_priorities(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """The RIP takes a prioritized job, then a rule's priority-5 job, then the rest, by item."""
    printer = polling_printer(tmp_path, max_waiting=1, poll_interval="0.05s")
    table = settings_table(tmp_path, printers=[printer])
    table["routing"] = {
        "default": "printer-1",
        "rules": [{"printer": "printer-1", "sku": "RUSH-*", "priority": 5}],
    }
    daemon = await start_daemon(table)
    url = daemon.listen_url
    hotfolder = tmp_path / "hot-1"
    job_a, job_b, job_c = 201, 202, 203
    names = {job_id: [f"{job_id}-1.png", f"{job_id}-2.png"] for job_id in (job_a, job_b, job_c)}

    async with paused_rip(hotfolder) as rip:
        # A first job fills the one place in the hot folder, so the others queue behind it.
        await push(url, consolidation_payload(100, add_artworks(origin, ["blocker.png"])))
        await wait_for_states(url, 100, ["delivered"])
        await push(url, consolidation_payload(job_a, add_artworks(origin, names[job_a])))
        rush = consolidation_payload(job_b, add_artworks(origin, names[job_b]), sku="RUSH-TEE")
        await push(url, rush)
        await push(url, consolidation_payload(job_c, add_artworks(origin, names[job_c])))
        for job_id in (job_a, job_b, job_c):
            await wait_for_states(url, job_id, ["staged", "staged"])

        status, answer = await api(
            "POST", f"{url}/api/jobs/{job_c}/prioritize", headers={"X-Operator": "alice"}
        )
        rip.resume()
        await rip.wait_taken(7, timeout=WAIT)

    jobs = {job_id: await read_job(url, job_id) for job_id in (job_a, job_b, job_c)}
    assert status == 200, answer
    assert answer == {"job_id": job_c, "priority": 6}
    expected_order = ["blocker.png", *names[job_c], *names[job_b], *names[job_a]]
    assert [taken.name for taken in rip.taken] == expected_order
    assert [d["priority"] for d in jobs[job_a]["deliveries"]] == [0, 0]
    assert [d["priority"] for d in jobs[job_b]["deliveries"]] == [5, 5]
    assert [d["priority"] for d in jobs[job_c]["deliveries"]] == [6, 6]
    assert [a["action"] for a in jobs[job_c]["actions"]] == ["prioritize"]
    assert jobs[job_c]["actions"][0]["actor"] == "alice from 127.0.0.1"
    assert rip.problems == []


# ---------------------------------------------------------------------------
# Groups


async def test_group_job_whole_least_busy(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A job goes whole to one member of the group, the one with the fewest deliveries waiting."""
    daemon = await start_daemon(group_table(tmp_path))
    url = daemon.listen_url
    names = {101: ["101-1.png", "101-2.png", "101-3.png"], 102: ["102-1.png"], 103: ["103-1.png"]}
    jobs = {}
    for job_id, job_names in names.items():
        await push(url, consolidation_payload(job_id, add_artworks(origin, job_names)))
        jobs[job_id] = await read_job(url, job_id)
    for job_id in names:
        await wait_for_job(
            url, job_id, lambda job: job["state"] == "delivered", f"job {job_id} delivered"
        )

    assert printers_of(jobs[101]) == ["printer-1"] * 3
    # printer-1 has 3 waiting, so the next two jobs go to printer-2 although it has 1 by then.
    assert printers_of(jobs[102]) == ["printer-2"]
    assert printers_of(jobs[103]) == ["printer-2"]
    assert visible_files(tmp_path / "hot-1") == sorted(names[101])
    assert visible_files(tmp_path / "hot-2") == sorted(names[102] + names[103])


async def test_group_spread_files(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """With spread = true, the files of one job go each to the member with the fewest waiting."""
    daemon = await start_daemon(group_table(tmp_path, spread=True))
    names = [f"spread-{n}.png" for n in range(4)]

    await push(daemon.listen_url, consolidation_payload(JOB_ID, add_artworks(origin, names)))
    routed = await read_job(daemon.listen_url, JOB_ID)
    await wait_for_job(
        daemon.listen_url, JOB_ID, lambda job: job["state"] == "delivered", "job delivered"
    )

    assert printers_of(routed) == ["printer-1", "printer-2", "printer-1", "printer-2"]
    assert visible_files(tmp_path / "hot-1") == [names[0], names[2]]
    assert visible_files(tmp_path / "hot-2") == [names[1], names[3]]


async def test_group_skips_paused_member(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A paused member gets no new job while another member is active, and again after resume."""
    daemon = await start_daemon(group_table(tmp_path))
    url = daemon.listen_url

    pause_status, paused = await api("POST", f"{url}/api/printers/printer-1/pause")
    await push(url, consolidation_payload(111, add_artworks(origin, ["111.png"])))
    await push(url, consolidation_payload(112, add_artworks(origin, ["112.png"])))
    first, second = await read_job(url, 111), await read_job(url, 112)
    resume_status, resumed = await api("POST", f"{url}/api/printers/printer-1/resume")
    await push(url, consolidation_payload(113, add_artworks(origin, ["113.png"])))
    third = await read_job(url, 113)
    for job_id in (111, 112, 113):
        await wait_for_states(url, job_id, ["delivered"])

    assert pause_status == 200, paused
    assert paused == {"printer": "printer-1", "paused": True}
    assert resume_status == 200, resumed
    assert resumed == {"printer": "printer-1", "paused": False}
    assert printers_of(first) == ["printer-2"]
    # printer-2 has one waiting and printer-1 none, but printer-1 is paused.
    assert printers_of(second) == ["printer-2"]
    assert printers_of(third) == ["printer-1"]
    assert visible_files(tmp_path / "hot-1") == ["113.png"]
    assert visible_files(tmp_path / "hot-2") == ["111.png", "112.png"]


# ---------------------------------------------------------------------------
# Pause and resume


async def test_pause_holds_new_jobs(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A job for a paused printer stays pending with nothing downloaded, and resume delivers it."""
    daemon = await start_daemon(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))
    url = daemon.listen_url
    hotfolder = tmp_path / "hot-1"
    names = ["front.png", "back.png"]

    pause_status, paused = await api(
        "POST", f"{url}/api/printers/printer-1/pause", headers={"X-Operator": "bob"}
    )
    paused_state = (await read_printers(url))["printer-1"]["state"]
    await push(url, consolidation_payload(JOB_ID, add_artworks(origin, names)))
    await wait_for_scans(url, "printer-1")
    held = await read_job(url, JOB_ID)
    held_files = visible_files(hotfolder)
    requests_while_paused = len(origin.requests)

    resume_status, resumed = await api(
        "POST", f"{url}/api/printers/printer-1/resume", headers={"X-Operator": "bob"}
    )
    await wait_for_states(url, JOB_ID, ["delivered", "delivered"])

    assert pause_status == 200, paused
    assert paused == {"printer": "printer-1", "paused": True}
    assert paused_state == "paused"
    assert states(held) == ["pending", "pending"]
    assert held["state"] == "in_progress"
    assert held_files == []
    assert requests_while_paused == 0
    assert resume_status == 200, resumed
    assert resumed == {"printer": "printer-1", "paused": False}
    assert (await read_printers(url))["printer-1"]["state"] == "online"
    assert visible_files(hotfolder) == sorted(names)


async def test_pause_survives_restart(
    tmp_path: Path, origin: ArtworkOrigin, daemon_process: StartProcess
) -> None:
    """A pause set with the CLI stays in effect after a restart, and the CLI's resume ends it."""
    table = settings_table(tmp_path, printers=[polling_printer(tmp_path)])
    hotfolder = tmp_path / "hot-1"
    first = await daemon_process(table)

    pause_code, pause_output = await run_cli(tmp_path, "pause", "printer-1", "--server", first.url)
    stop_code = await first.stop()
    second = await daemon_process(table)
    status_code, status_output = await run_cli(tmp_path, "status", "--server", second.url)
    await push(second.url, consolidation_payload(JOB_ID, add_artworks(origin, ["sleeve.png"])))
    await wait_for_scans(second.url, "printer-1")
    held = await read_job(second.url, JOB_ID)
    held_files = visible_files(hotfolder)

    resume_code, resume_output = await run_cli(
        tmp_path, "resume", "printer-1", "--server", second.url
    )
    await wait_for_states(second.url, JOB_ID, ["delivered"])

    assert pause_code == 0, pause_output
    assert pause_output.strip() == "printer printer-1 paused: it gets no new files"
    assert stop_code == 0
    assert status_code == 0, status_output
    assert re.search(r"^printer-1\s+paused\s", status_output, re.MULTILINE), status_output
    assert states(held) == ["pending"]
    assert held_files == []
    assert resume_code == 0, resume_output
    assert resume_output.strip() == "printer printer-1 resumed"
    assert visible_files(hotfolder) == ["sleeve.png"]


# ---------------------------------------------------------------------------
# Stalls and offline RIPs


async def test_stall_flagged_once(
    tmp_path: Path, receiver: EventReceiver, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A file left past stall_after is flagged, logged and sent to the webhook once."""
    printer = polling_printer(tmp_path, stall_after="0.5s")
    table = with_webhook(settings_table(tmp_path, printers=[printer]), receiver.url)
    daemon = await start_daemon(table)
    url = daemon.listen_url

    with capture_logs() as logs:
        async with paused_rip(tmp_path / "hot-1") as rip:
            await push(url, consolidation_payload(JOB_ID, add_artworks(origin, ["stuck.png"])))
            job = await wait_for_job(
                url, JOB_ID, lambda job: job["deliveries"][0]["stalled"], "the delivery stalled"
            )
            await receiver.wait_for("file_stalled")
            # Each pass checks for stalls, so ten passes would repeat a second alert.
            await wait_for_scans(url, "printer-1", count=10)
            alerts = receiver.named("file_stalled")
            counts = (await read_printers(url))["printer-1"]["counts"]

            rip.resume()
            await wait_for_states(url, JOB_ID, ["picked_up"])

    delivery = job["deliveries"][0]
    stall_logs = [line for line in logs if line["event"] == "file_stalled"]
    cleared_logs = [line for line in logs if line["event"] == "file_stall_cleared"]
    assert delivery["state"] == "delivered"
    assert counts["stalled"] == 1
    assert len(alerts) == 1
    assert alerts[0]["delivery_id"] == delivery["id"]
    assert alerts[0]["job_id"] == JOB_ID
    assert alerts[0]["printer"] == "printer-1"
    assert alerts[0]["name"] == "stuck.png"
    assert [line["delivery_id"] for line in stall_logs] == [delivery["id"]]
    assert [line["delivery_id"] for line in cleared_logs] == [delivery["id"]]


async def test_offline_then_online(
    tmp_path: Path, receiver: EventReceiver, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """An idle RIP is flagged offline, then online when it takes files, with one alert each."""
    printer = polling_printer(tmp_path, offline_after="1s")
    table = with_webhook(settings_table(tmp_path, printers=[printer]), receiver.url)
    daemon = await start_daemon(table)
    url = daemon.listen_url
    names = ["left.png", "right.png"]

    async with paused_rip(tmp_path / "hot-1") as rip:
        await push(url, consolidation_payload(JOB_ID, add_artworks(origin, names)))
        await wait_for_states(url, JOB_ID, ["delivered", "delivered"])
        online_before = (await read_printers(url))["printer-1"]["state"]
        offline = await wait_for_printer_state(url, "printer-1", "offline")
        await receiver.wait_for("printer_offline")

        rip.resume()
        online = await wait_for_printer_state(url, "printer-1", "online")
        await receiver.wait_for("printer_online")
        # Each pass checks the RIP, so ten passes would repeat an alert that flaps.
        await wait_for_scans(url, "printer-1", count=10)

    alerts = [body for body in receiver.events if body["event"].startswith("printer_")]
    assert online_before == "online"
    assert offline["state"] == "offline"
    assert online["state"] == "online"
    assert [body["event"] for body in alerts] == ["printer_offline", "printer_online"]
    assert alerts[0]["printer"] == "printer-1"
    assert alerts[0]["files_waiting"] == 2
    assert alerts[1]["printer"] == "printer-1"
    assert sorted(taken.name for taken in rip.taken) == sorted(names)


# ---------------------------------------------------------------------------
# Cancel


async def test_cancel_recalls_and_drops(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """Cancel recalls the delivered file intact, drops the staged and downloading ones, logs who."""
    names = ["first.png", "second.png", "third.png"]
    artworks = add_artworks(origin, names)
    # The third file downloads slowly, so the cancel finds it mid-download.
    origin.fault("/art/third.png", FaultPlan(Fault.SLOW, times=-1, rate=500))
    printer = polling_printer(tmp_path, max_waiting=1)
    daemon = await start_daemon(settings_table(tmp_path, printers=[printer]))
    url = daemon.listen_url
    hotfolder = tmp_path / "hot-1"
    staging = hotfolder / STAGING_DIR_NAME

    async with paused_rip(hotfolder) as rip:
        await push(url, consolidation_payload(JOB_ID, artworks))
        before = await wait_for_states(url, JOB_ID, ["delivered", "staged", "downloading"])
        first, second, third = before["deliveries"]

        status, answer = await api(
            "POST", f"{url}/api/jobs/{JOB_ID}/cancel", headers={"X-Operator": "alice"}
        )
        files_after_cancel = visible_files(hotfolder)
        job = await read_job(url, JOB_ID)

        await wait_for_scans(url, "printer-1")
        rip.resume()
        await wait_for_scans(url, "printer-1")
        files_after_resume = visible_files(hotfolder)

    recalled = staging / "recalled" / f"{JOB_ID}-{first['id']}" / "first.png"
    assert status == 200, answer
    assert answer == {"job_id": JOB_ID, "cancelled": 2, "recalled": 1}
    assert files_after_cancel == []
    assert recalled.read_bytes() == make_artwork("png", ARTWORK_SIZE, seed=0)
    assert job["state"] == "cancelled"
    assert states(job) == ["cancelled"] * 3
    assert job["deliveries"][0]["path"] == str(recalled)
    assert not (staging / f"{second['id']}.part").exists()
    assert not (staging / f"{third['id']}.part").exists()
    assert [action["action"] for action in job["actions"]] == ["cancel"]
    assert job["actions"][0]["actor"] == "alice from 127.0.0.1"
    assert job["actions"][0]["detail"] == "2 dropped, 1 recalled"
    assert files_after_resume == []
    assert rip.taken == []
    assert len(origin.requests_for("/art/second.png")) == 1
    assert len(origin.requests_for("/art/third.png")) == 1


async def test_cancel_cli_drops_pending(
    tmp_path: Path, origin: ArtworkOrigin, daemon_process: StartProcess
) -> None:
    """The CLI's cancel drops a job waiting on a paused printer, so resume writes nothing."""
    table = settings_table(tmp_path, printers=[polling_printer(tmp_path)])
    process = await daemon_process(table)
    url = process.url
    hotfolder = tmp_path / "hot-1"

    await api("POST", f"{url}/api/printers/printer-1/pause")
    await push(url, consolidation_payload(JOB_ID, add_artworks(origin, ["cap.png", "bag.png"])))
    code, output = await run_cli(tmp_path, "cancel", str(JOB_ID), "--server", url)
    job = await read_job(url, JOB_ID)
    await api("POST", f"{url}/api/printers/printer-1/resume")
    await wait_for_scans(url, "printer-1")

    assert code == 0, output
    assert output.strip() == f"job {JOB_ID}: 2 waiting deliveries cancelled; 0 files recalled from the hot folder"
    assert job["state"] == "cancelled"
    assert states(job) == ["cancelled", "cancelled"]
    assert job["actions"][0]["action"] == "cancel"
    assert job["actions"][0]["actor"] == f"{getpass.getuser()} from 127.0.0.1"
    assert states(await read_job(url, JOB_ID)) == ["cancelled", "cancelled"]
    assert visible_files(hotfolder) == []
    assert origin.requests == []


# ---------------------------------------------------------------------------
# Reprint, retry, prioritize and errors from the CLI


async def test_reprint_cli_whole_job(
    tmp_path: Path, origin: ArtworkOrigin, daemon_process: StartProcess
) -> None:
    """The CLI's reprint writes each file of a completed job again, and the RIP takes each twice."""
    names = ["front.png", "back.png"]
    process = await daemon_process(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))
    url = process.url

    async with SimulatedRip(tmp_path / "hot-1", interval=SAMPLE_INTERVAL) as rip:
        await push(url, consolidation_payload(JOB_ID, add_artworks(origin, names)))
        await wait_for_states(url, JOB_ID, ["picked_up", "picked_up"])
        code, output = await run_cli(tmp_path, "reprint", str(JOB_ID), "--server", url)
        await rip.wait_taken(4, timeout=WAIT)
        job = await wait_for_job(
            url, JOB_ID, lambda job: states(job) == ["picked_up"] * 4, "reprints picked up"
        )

    assert code == 0, output
    assert output.strip() == f"job {JOB_ID}: 2 files to be written again"
    assert sorted(taken.name for taken in rip.taken) == sorted(names * 2)
    assert sorted(d["name"] for d in job["deliveries"]) == sorted(names * 2)
    assert job["state"] == "completed"
    assert [action["action"] for action in job["actions"]] == ["reprint"]
    assert sorted(rip.problems) == sorted(f"duplicate: {name} taken twice" for name in names)


async def test_reprint_cli_one_item(
    tmp_path: Path, origin: ArtworkOrigin, daemon_process: StartProcess
) -> None:
    """The CLI's reprint with --item writes only that item's file again."""
    names = ["front.png", "back.png"]
    process = await daemon_process(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))
    url = process.url

    async with SimulatedRip(tmp_path / "hot-1", interval=SAMPLE_INTERVAL) as rip:
        await push(url, consolidation_payload(JOB_ID, add_artworks(origin, names)))
        done = await wait_for_states(url, JOB_ID, ["picked_up", "picked_up"])
        item_id = done["deliveries"][1]["item_id"]
        code, output = await run_cli(
            tmp_path, "reprint", str(JOB_ID), "--item", str(item_id), "--server", url
        )
        await rip.wait_taken(3, timeout=WAIT)
        job = await wait_for_job(
            url, JOB_ID, lambda job: states(job) == ["picked_up"] * 3, "reprint picked up"
        )
        # Two more passes would hand off any second file the reprint had wrongly queued.
        await wait_for_scans(url, "printer-1")

    assert code == 0, output
    assert output.strip() == f"job {JOB_ID}: 1 files to be written again"
    assert sorted(taken.name for taken in rip.taken) == sorted([*names, "back.png"])
    assert [d["item_id"] for d in job["deliveries"]].count(item_id) == 2
    assert job["actions"][0]["detail"] == f"1 deliveries of item {item_id}"
    assert rip.problems == ["duplicate: back.png taken twice"]


async def test_reprint_twice_one_copy(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A second reprint of a job writes each file once more, not once per earlier copy."""
    daemon = await start_daemon(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))
    url = daemon.listen_url

    async with SimulatedRip(tmp_path / "hot-1", interval=SAMPLE_INTERVAL) as rip:
        await push(url, consolidation_payload(JOB_ID, add_artworks(origin, ["tote.png"])))
        await wait_for_states(url, JOB_ID, ["picked_up"])
        first_status, first = await api("POST", f"{url}/api/jobs/{JOB_ID}/reprint")
        await wait_for_states(url, JOB_ID, ["picked_up"] * 2)
        second_status, second = await api("POST", f"{url}/api/jobs/{JOB_ID}/reprint")
        # Wait until nothing of the job is on its way, however many copies the reprint queued.
        job = await wait_for_job(
            url, JOB_ID, lambda job: job["state"] == "completed" and len(job["deliveries"]) > 2,
            "second reprint picked up",
        )  # fmt: skip

    assert first_status == 200, first
    assert first == {"job_id": JOB_ID, "reprinted": 1}
    assert second_status == 200, second
    assert second == {"job_id": JOB_ID, "reprinted": 1}
    assert len(job["deliveries"]) == 3
    assert [taken.name for taken in rip.taken] == ["tote.png"] * 3


async def test_retry_cli_after_404_fixed(
    tmp_path: Path, origin: ArtworkOrigin, daemon_process: StartProcess
) -> None:
    """After a 404 is fixed at the origin, the CLI's retry delivers the failed file."""
    artworks = add_artworks(origin, ["patch.png"])
    origin.fault("/art/patch.png", FaultPlan(Fault.STATUS, status=404, times=-1))
    process = await daemon_process(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))
    url = process.url

    await push(url, consolidation_payload(JOB_ID, artworks))
    failed = await wait_for_states(url, JOB_ID, ["failed"])
    origin.clear_faults()
    code, output = await run_cli(tmp_path, "retry", str(JOB_ID), "--server", url)
    job = await wait_for_states(url, JOB_ID, ["delivered"])

    assert "404" in failed["deliveries"][0]["error"]
    assert code == 0, output
    assert output.strip() == f"job {JOB_ID}: 1 deliveries put back to pending"
    assert job["state"] == "delivered"
    assert job["actions"][0]["action"] == "retry"
    assert job["actions"][0]["actor"] == f"{getpass.getuser()} from 127.0.0.1"
    expected = make_artwork("png", ARTWORK_SIZE, seed=0)
    assert (tmp_path / "hot-1" / "patch.png").read_bytes() == expected


async def test_prioritize_cli_sets_priority(
    tmp_path: Path, origin: ArtworkOrigin, daemon_process: StartProcess
) -> None:
    """The CLI's prioritize sets a given priority, and without one puts the job ahead of all."""
    process = await daemon_process(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))
    url = process.url
    await api("POST", f"{url}/api/printers/printer-1/pause")
    await push(url, consolidation_payload(301, add_artworks(origin, ["301-1.png", "301-2.png"])))
    await push(url, consolidation_payload(302, add_artworks(origin, ["302-1.png"])))

    given_code, given_output = await run_cli(
        tmp_path, "prioritize", "301", "--priority", "7", "--server", url
    )
    top_code, top_output = await run_cli(tmp_path, "prioritize", "302", "--server", url)
    given, top = await read_job(url, 301), await read_job(url, 302)

    assert given_code == 0, given_output
    assert given_output.strip() == "job 301: priority is now 7"
    assert top_code == 0, top_output
    assert top_output.strip() == "job 302: priority is now 8"
    assert [d["priority"] for d in given["deliveries"]] == [7, 7]
    assert [d["priority"] for d in top["deliveries"]] == [8]


async def test_cli_unknown_job_and_printer(tmp_path: Path, daemon_process: StartProcess) -> None:
    """The CLI exits 1 and prints the daemon's reason for an unknown job or printer."""
    process = await daemon_process(settings_table(tmp_path))

    job_code, job_output = await run_cli(tmp_path, "cancel", "424242", "--server", process.url)
    printer_code, printer_output = await run_cli(
        tmp_path, "pause", "printer-9", "--server", process.url
    )

    assert job_code == 1
    assert "job 424242 is not known" in job_output
    assert printer_code == 1
    assert "printer 'printer-9' is not configured" in printer_output


# ---------------------------------------------------------------------------
# Shutdown


async def test_feed_stops_after_wake(tmp_path: Path, start_daemon: StartDaemon) -> None:
    """A feed stops even when its wake event was set just before, as a finished download sets it."""
    daemon = await start_daemon(settings_table(tmp_path, printers=[polling_printer(tmp_path)]))
    await wait_for_scans(daemon.listen_url, "printer-1")
    feed = daemon.feeds["printer-1"]

    feed.wake.set()
    stopping = asyncio.create_task(feed.stop())
    done, _ = await asyncio.wait([stopping], timeout=FEED_STOP_WAIT)

    assert stopping in done
