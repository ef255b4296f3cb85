"""The floor view: the dashboard in a real headless Chromium, and `hotfolder-feeder status`.

The browser tests need Debian's chromium at /usr/bin/chromium and Playwright for Python, and skip
without them. Playwright only drives that browser and never downloads one. A screenshot is kept
in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import api, settings_table, wait_until

from hotfolder_feeder.daemon import Daemon
from hotfolder_feeder.origin import ArtworkOrigin, Fault, FaultPlan
from hotfolder_feeder.rip import SimulatedRip

playwright_api: Any
try:
    from playwright import async_api as playwright_api
except ImportError:
    playwright_api = None
expect: Any = playwright_api.expect if playwright_api is not None else None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_INSTALLED = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TOKEN_KEY = "hotfolder-feeder-admin-token"
ADMIN = "admin-token-for-the-dashboard"
PUSH = "push-token-for-the-dashboard"
WAIT_MS = 20_000

StartDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Launch Debian's chromium headless through Playwright, or skip when either is missing."""
    if playwright_api is None:
        pytest.skip("Playwright for Python is not installed: pip install -e '.[test]'")
    if not CHROMIUM_INSTALLED:
        pytest.skip(
            "Debian's chromium is not installed at /usr/bin/chromium: apt-get install -y chromium"
        )
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@dataclass
class Page:
    """A 1080p browser page with its console errors and every URL it requested."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


async def open_dashboard(browser: Any, url: str) -> Page:
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    watched = Page(await context.new_page())
    watched.page.on(
        "console",
        lambda message: watched.errors.append(message.text) if message.type == "error" else None,
    )
    watched.page.on("pageerror", lambda error: watched.errors.append(str(error)))
    watched.page.on("request", lambda request: watched.requests.append(request.url))
    await watched.page.goto(url + "/")
    return watched


def table(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    download = {
        "allow_http": True,
        "allow_private_networks": True,
        "backoff_max": "1s",
        "stop_timeout": "5s",
    }
    return settings_table(tmp_path, download=download, **overrides)


def printer(tmp_path: Path, name: str, **settings: Any) -> dict[str, Any]:
    return {
        "name": name,
        "hotfolder": str(tmp_path / name),
        "watch": "polling",
        "poll_interval": "0.2s",
        **settings,
    }


def payload(job_id: int, order_ref: str, artworks: list[tuple[str, str]]) -> dict[str, Any]:
    """Build a consolidation job of one order, one item per (artwork name, URL)."""
    items = []
    for index, (name, url) in enumerate(artworks, start=1):
        order_item = {
            "id": job_id * 10 + index,
            "artwork": [{"name": name, "ext": name.rpartition(".")[2], "clientUrl": url}],
        }
        order = {"id": f"POS-{job_id}", "ref": order_ref, "external_ref": f"EXT-{order_ref}"}
        items.append(
            {
                "id": job_id * 100 + index,
                "order_item_id": order_item["id"],
                "order": order,
                "order_item": order_item,
            }
        )
    return {"id": job_id, "artwork": None, "items": items}


async def push(daemon: Daemon, job: dict[str, Any], token: str | None = None) -> None:
    query = f"?token={token}" if token else ""
    status, answer = await api("POST", f"{daemon.listen_url}/kornitx/jobs{query}", json=job)
    assert status == 202, answer


def card(page: Page, name: str) -> Any:
    return page.page.locator(f'[data-printer="{name}"]')


def job_row(page: Page, job_id: int) -> Any:
    return page.page.locator(f'#jobs tbody tr[data-job="{job_id}"]')


async def test_dashboard_shows_floor_and_updates(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon, browser: Any
) -> None:
    """Printers, a job and a failure show without console errors, and a pickup updates the page."""
    printers = [printer(tmp_path, "printer-1", max_waiting=4), printer(tmp_path, "printer-2")]
    daemon = await start_daemon(table(tmp_path, printers=printers))
    names = [
        "AV HD6 Black HQ_64021_Hoodies Full Size_71128134-output-3950663_1_16_129.png",
        "AV HD6 Black HQ_64021_Hoodies Full Size_71128135-output-3950663_1_14_116.png",
    ]
    urls = [
        origin.add_generated(f"/art/{index}.png", "png", 40_000, seed=index) for index in range(2)
    ]
    missing = origin.add_generated("/art/missing.png", "png", 1_000)
    origin.fault("/art/missing.png", FaultPlan(Fault.STATUS, status=404, times=-1))

    async with SimulatedRip(tmp_path / "printer-1", interval=0.05) as rip:
        rip.pause()
        await push(daemon, payload(7781, "ORD-7781", list(zip(names, urls, strict=True))))
        await push(daemon, payload(7782, "ORD-7782", [("sleeve.png", missing)]))
        page = await open_dashboard(browser, daemon.listen_url)

        first = card(page, "printer-1")
        await expect(first.locator(".badge")).to_have_text("online")
        await expect(card(page, "printer-2").locator(".badge")).to_have_text("online")
        await expect(first.locator('[data-figure="waiting"]')).to_have_text(
            "2 / 4", timeout=WAIT_MS
        )
        await expect(first.locator(".oldest")).to_contain_text("Oldest")
        row = job_row(page, 7781)
        await expect(row).to_contain_text("EXT-ORD-7781")
        await expect(row.locator(".badge")).to_have_text("delivered")
        await expect(row.locator(".progress-text")).to_have_text(
            "0 of 2 picked up · 2 in hot folder"
        )
        failure = page.page.locator("#failures li")
        await expect(failure).to_have_count(1, timeout=WAIT_MS)
        await expect(failure).to_contain_text("sleeve.png")
        await expect(failure.locator(".failure-reason")).to_have_text(
            "download failed after 1 attempt"
        )
        await expect(failure.locator(".failure-error")).to_contain_text("404")
        await expect(page.page.locator("#summary")).to_have_text(
            "2 of 2 printers online · 2 files waiting · 0 queued · 1 failed"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        await page.page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

        rip.resume()
        await expect(row.locator(".badge")).to_have_text("completed", timeout=WAIT_MS)
        await expect(first.locator('[data-figure="waiting"]')).to_have_text("0 / 4")
        await expect(first.locator('[data-figure="taken"]')).to_have_text("2")
        await expect(first.locator(".oldest")).to_have_text("Hot folder empty")
        await expect(row.locator(".progress-text")).to_have_text("2 of 2 picked up")

    assert page.errors == []
    assert [url for url in page.requests if not url.startswith(daemon.listen_url + "/")] == []
    assert not await page.page.locator("#token-dialog").is_visible()


async def test_dashboard_asks_token_once(
    tmp_path: Path, start_daemon: StartDaemon, browser: Any
) -> None:
    """With an admin token the page asks once, keeps it for the tab, and can pause a printer."""
    daemon = await start_daemon(
        table(tmp_path, server={"auth": {"tokens": [PUSH], "admin_tokens": [ADMIN]}})
    )
    page = await open_dashboard(browser, daemon.listen_url)
    dialog = page.page.locator("#token-dialog")

    await expect(dialog).to_be_visible()
    await page.page.fill("#token-input", PUSH)
    await page.page.click("#token-form button[type=submit]")
    await expect(page.page.locator("#token-error")).to_contain_text(
        "push token cannot use the operators' API"
    )
    await page.page.fill("#token-input", ADMIN)
    await page.page.click("#token-form button[type=submit]")
    await expect(dialog).to_be_hidden()
    await expect(card(page, "printer-1").locator(".badge")).to_have_text("online")
    assert await page.page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == ADMIN

    await page.page.reload()
    await expect(card(page, "printer-1").locator(".badge")).to_have_text("online")
    await expect(dialog).to_be_hidden()
    await card(page, "printer-1").get_by_role("button", name="Pause").click()
    await expect(card(page, "printer-1").locator(".badge")).to_have_text("paused")
    await expect(page.page.locator("#toast")).to_have_text("printer-1 paused")

    status, answer = await api(
        "GET", daemon.listen_url + "/api/printers", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert status == 200
    assert answer["printers"][0]["state"] == "paused"
    # Chromium logs each 401 and 403 response as a failed resource load, and nothing else may fail.
    assert [
        error
        for error in page.errors
        if "status of 401" not in error and "status of 403" not in error
    ] == []


async def test_dashboard_search_and_job_actions(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon, browser: Any
) -> None:
    """Search finds jobs by order ref, file name and id, and First, Cancel and Retry act on jobs."""
    daemon = await start_daemon(
        table(tmp_path, printers=[printer(tmp_path, "printer-1", max_waiting=1)])
    )
    urls = [
        origin.add_generated(f"/art/{name}", "png", 20_000, seed=index)
        for index, name in enumerate(["a.png", "b.png"])
    ]
    flaky = origin.add_generated("/art/c.png", "png", 20_000, seed=3)
    origin.fault("/art/c.png", FaultPlan(Fault.STATUS, status=404, times=-1))
    await push(daemon, payload(5101, "ORD-A", [("front-a.png", urls[0])]))
    await push(daemon, payload(5102, "ORD-B", [("special-b.png", urls[1])]))
    await push(daemon, payload(5103, "ORD-C", [("retry-c.png", flaky)]))
    page = await open_dashboard(browser, daemon.listen_url)
    rows = page.page.locator("#jobs tbody tr")
    await expect(rows).to_have_count(3)

    for query, expected in (
        ("ord-b", 5102),
        ("special-b", 5102),
        ("5101", 5101),
        ("EXT-ORD-C", 5103),
    ):
        await page.page.fill("#search", query)
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-job", str(expected))
    await page.page.fill("#search", "nothing-like-this")
    await expect(page.page.locator("#jobs-empty")).to_have_text("No job matches.")
    await page.page.fill("#search", "")
    await expect(rows).to_have_count(3)

    # The feed limit of 1 keeps job 5102 waiting behind 5101, so it is still in progress.
    waiting = job_row(page, 5102)
    await expect(waiting.locator(".badge")).to_have_text("in progress", timeout=WAIT_MS)
    await waiting.get_by_role("button", name="First").click()
    await expect(page.page.locator("#toast")).to_have_text("Job 5102 goes first (priority 1)")
    await expect(waiting.locator(".priority")).to_have_text("priority 1")
    cancel = waiting.get_by_role("button", name="Cancel")
    await cancel.click()
    confirm = waiting.get_by_role("button", name="Confirm", exact=True)
    await expect(confirm).to_be_visible()
    await confirm.click()
    await expect(waiting.locator(".badge")).to_have_text("cancelled")

    failure = page.page.locator("#failures li")
    await expect(failure).to_contain_text("retry-c.png", timeout=WAIT_MS)
    origin.clear_faults()
    await failure.get_by_role("button", name="Retry").click()
    await expect(page.page.locator("#toast")).to_have_text("Job 5103: 1 file retried")
    await expect(page.page.locator("#failures-empty")).to_be_visible(timeout=WAIT_MS)

    status, job = await api("GET", f"{daemon.listen_url}/api/jobs/5102")
    assert status == 200
    assert job["state"] == "cancelled"
    assert [action["action"] for action in job["actions"]] == ["prioritize", "cancel"]
    assert job["actions"][0]["actor"].startswith("dashboard from ")
    assert page.errors == []


async def run_cli(*arguments: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotfolder_feeder.cli", *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return await process.wait(), output.decode()


async def test_status_table_and_json(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """`status` prints each printer's figures as a table, and the same figures with --json."""
    printers = [printer(tmp_path, "printer-1", max_waiting=5), printer(tmp_path, "printer-2")]
    auth = {"auth": {"tokens": [PUSH], "admin_tokens": [ADMIN]}}
    daemon = await start_daemon(table(tmp_path, printers=printers, server=auth))
    urls = [
        origin.add_generated(f"/art/{index}.png", "png", 10_000, seed=index) for index in range(2)
    ]
    await push(
        daemon, payload(6601, "ORD-6601", [("one.png", urls[0]), ("two.png", urls[1])]), PUSH
    )

    async def delivered() -> bool:
        status, job = await api(
            "GET",
            f"{daemon.listen_url}/api/jobs/6601",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        return status == 200 and job["state"] == "delivered"

    await wait_until(delivered, WAIT_MS / 1000, "job 6601 delivered")
    code, text = await run_cli("status", "--server", daemon.listen_url, "--token", ADMIN)
    json_code, json_text = await run_cli(
        "status", "--server", daemon.listen_url, "--token", ADMIN, "--json"
    )
    denied_code, denied_text = await run_cli(
        "status", "--server", daemon.listen_url, "--token", PUSH
    )

    lines = text.splitlines()
    assert code == 0, text
    assert lines[0].split() == [
        "printer",
        "state",
        "waiting",
        "staged",
        "queued",
        "taken",
        "1h",
        "oldest",
        "stalled",
        "outage",
    ]
    assert re.fullmatch(r"printer-1\s+online\s+2/5\s+0\s+0\s+0\s+\d+s\s+0", lines[1]), lines[1]
    assert re.fullmatch(r"printer-2\s+online\s+0\s+0\s+0\s+0\s+-\s+0", lines[2]), lines[2]
    assert lines[-1] == "2 of 2 printers online, 2 files waiting, 0 queued, 0 stalled, 0 failed"

    figures = json.loads(json_text)
    first, second = figures["printers"]
    assert json_code == 0
    assert (first["name"], first["state"], first["waiting"], first["max_waiting"]) == (
        "printer-1",
        "online",
        2,
        5,
    )
    assert first["oldest_waiting"]["name"] == "one.png"
    assert first["oldest_waiting"]["job_id"] == 6601
    assert second["waiting"] == 0
    assert second["oldest_waiting"] is None
    assert figures["totals"] == {
        "printers": 2,
        "online": 2,
        "waiting": 2,
        "queued": 0,
        "stalled": 0,
        "failed": 0,
    }

    assert denied_code == 1
    assert "push token cannot use the operators' API" in denied_text
