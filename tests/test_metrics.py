"""Prometheus metrics at GET /metrics, scraped from a running daemon and parsed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import api, settings_table, wait_until
from prometheus_client.parser import text_string_to_metric_families

from hotfolder_feeder.daemon import Daemon
from hotfolder_feeder.errors import TransientFetchError
from hotfolder_feeder.fetch import BadContentError, StagingDiscarded
from hotfolder_feeder.metrics import retry_reason
from hotfolder_feeder.origin import ArtworkOrigin, Fault, FaultPlan
from hotfolder_feeder.rip import SimulatedRip

StartDaemon = Callable[..., Awaitable[Daemon]]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

JOB_ID = 4410001
ADMIN = "admin-token-for-metrics"
PUSH = "push-token-for-metrics"
WAIT = 20.0


def table(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    download = {
        "allow_http": True,
        "allow_private_networks": True,
        "backoff_max": "1s",
        "stop_timeout": "5s",
    }
    return settings_table(tmp_path, download=download, **overrides)


def payload(job_id: int, artworks: list[tuple[str, str]]) -> dict[str, Any]:
    items = []
    for index, (name, url) in enumerate(artworks, start=1):
        order_item = {
            "id": job_id * 10 + index,
            "artwork": [{"name": name, "ext": "png", "clientUrl": url}],
        }
        items.append(
            {
                "id": job_id * 100 + index,
                "order_item_id": order_item["id"],
                "order_item": order_item,
            }
        )
    return {"id": job_id, "artwork": None, "items": items}


async def scrape(daemon: Daemon, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, text = await api("GET", daemon.listen_url + "/metrics", headers=headers)
    assert status == 200, text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"no sample {name}{labels}; samples named {name}: " + str(
        [k for k in samples if k[0] == name]
    )
    return samples[key]


async def job_state(daemon: Daemon, job_id: int) -> str:
    status, job = await api("GET", f"{daemon.listen_url}/api/jobs/{job_id}")
    assert status == 200, job
    return str(job["state"])


async def test_metrics_after_known_job(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """A job of two files picked up shows as counts, bytes, latencies and journal figures."""
    sizes = {"/art/front.png": 120_000, "/art/back.png": 80_000}
    urls = [
        origin.add_generated(path, "png", size, seed=index)
        for index, (path, size) in enumerate(sizes.items())
    ]
    daemon = await start_daemon(table(tmp_path))
    job = payload(JOB_ID, [("front.png", urls[0]), ("back.png", urls[1])])

    async with SimulatedRip(tmp_path / "hot-1", interval=0.05):
        status, _ = await api("POST", daemon.listen_url + "/kornitx/jobs", json=job)
        assert status == 202
        await wait_until(lambda: _is(daemon, JOB_ID, "completed"), WAIT, "job completed")

    status, _ = await api("POST", daemon.listen_url + "/kornitx/jobs", json=job)
    assert status == 200
    status, _ = await api("POST", daemon.listen_url + "/kornitx/jobs", json={"id": "not a number"})
    assert status == 422
    status, _ = await api("POST", daemon.listen_url + "/kornitx/jobs", data=b"{not json")
    assert status == 400

    samples = await scrape(daemon)
    assert value(samples, "hotfolder_feeder_jobs_received_total", result="accepted") == 1
    assert value(samples, "hotfolder_feeder_jobs_received_total", result="duplicate") == 1
    assert value(samples, "hotfolder_feeder_jobs_received_total", result="invalid") == 1
    assert value(samples, "hotfolder_feeder_jobs_received_total", result="malformed") == 1
    assert value(samples, "hotfolder_feeder_jobs_received_total", result="unauthorized") == 0
    assert value(samples, "hotfolder_feeder_deliveries", state="picked_up") == 2
    assert value(samples, "hotfolder_feeder_deliveries", state="failed") == 0
    assert value(samples, "hotfolder_feeder_download_bytes_total") == sum(sizes.values())
    assert value(samples, "hotfolder_feeder_download_seconds_total") > 0
    assert (
        value(samples, "hotfolder_feeder_receive_to_delivered_seconds_count", printer="printer-1")
        == 2
    )
    assert (
        value(samples, "hotfolder_feeder_delivered_to_picked_up_seconds_count", printer="printer-1")
        == 2
    )
    assert (
        value(
            samples,
            "hotfolder_feeder_delivered_to_picked_up_seconds_bucket",
            printer="printer-1",
            le="+Inf",
        )
        == 2
    )
    assert value(samples, "hotfolder_feeder_files_waiting", printer="printer-1") == 0
    assert value(samples, "hotfolder_feeder_files_stalled", printer="printer-1") == 0
    assert (
        value(samples, "hotfolder_feeder_printer_state", printer="printer-1", state="online") == 1
    )
    assert (
        value(samples, "hotfolder_feeder_printer_state", printer="printer-1", state="outage") == 0
    )
    assert value(samples, "hotfolder_feeder_last_pickup_timestamp_seconds", printer="printer-1") > 0
    assert value(samples, "hotfolder_feeder_journal_bytes") > 0
    assert value(samples, "process_resident_memory_bytes") > 0

    again = await scrape(daemon)
    assert (
        value(again, "hotfolder_feeder_receive_to_delivered_seconds_count", printer="printer-1")
        == 2
    )
    assert (
        value(again, "hotfolder_feeder_delivered_to_picked_up_seconds_count", printer="printer-1")
        == 2
    )


async def _is(daemon: Daemon, job_id: int, state: str) -> bool:
    return await job_state(daemon, job_id) == state


async def test_metrics_files_waiting_without_rip(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """Files no RIP has taken count as waiting on their printer, not on the others."""
    second = {"name": "printer-2", "hotfolder": str(tmp_path / "hot-2"), "poll_interval": "0.2s"}
    printers = [*settings_table(tmp_path)["printers"], second]
    daemon = await start_daemon(table(tmp_path, printers=printers))
    urls = [origin.add_generated(f"/art/{n}.png", "png", 10_000, seed=n) for n in range(3)]

    await api(
        "POST",
        daemon.listen_url + "/kornitx/jobs",
        json=payload(JOB_ID, [(f"{n}.png", u) for n, u in enumerate(urls)]),
    )
    await wait_until(lambda: _is(daemon, JOB_ID, "delivered"), WAIT, "job delivered")
    samples = await scrape(daemon)

    assert value(samples, "hotfolder_feeder_files_waiting", printer="printer-1") == 3
    assert value(samples, "hotfolder_feeder_files_waiting", printer="printer-2") == 0
    assert value(samples, "hotfolder_feeder_deliveries", state="delivered") == 3
    assert (
        value(samples, "hotfolder_feeder_receive_to_delivered_seconds_count", printer="printer-1")
        == 3
    )
    assert (
        "hotfolder_feeder_delivered_to_picked_up_seconds_count",
        (("printer", "printer-1"),),
    ) not in samples


async def test_metrics_retries_by_reason(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """Two 503 responses and an HTML page are counted as retries under their reasons."""
    url = origin.add_generated("/art/flaky.png", "png", 30_000, seed=7)
    origin.fault("/art/flaky.png", FaultPlan(Fault.STATUS, status=503, times=2))
    page_url = origin.add_generated("/art/page.png", "png", 30_000, seed=8)
    origin.fault("/art/page.png", FaultPlan(Fault.HTML_ERROR_PAGE, times=1))
    daemon = await start_daemon(table(tmp_path))

    await api(
        "POST",
        daemon.listen_url + "/kornitx/jobs",
        json=payload(JOB_ID, [("flaky.png", url), ("page.png", page_url)]),
    )
    await wait_until(lambda: _is(daemon, JOB_ID, "delivered"), WAIT, "job delivered after retries")
    samples = await scrape(daemon)

    assert value(samples, "hotfolder_feeder_download_retries_total", reason="http_503") == 2
    assert value(samples, "hotfolder_feeder_download_retries_total", reason="bad_content") == 1
    assert value(samples, "hotfolder_feeder_download_bytes_total") >= 60_000


async def test_metrics_need_admin_token(tmp_path: Path, start_daemon: StartDaemon) -> None:
    """/metrics returns 401 without a token and 403 for a push token and counts rejected pushes."""
    daemon = await start_daemon(
        table(tmp_path, server={"auth": {"tokens": [PUSH], "admin_tokens": [ADMIN]}})
    )

    status, _ = await api("GET", daemon.listen_url + "/metrics")
    assert status == 401
    status, _ = await api(
        "GET", daemon.listen_url + "/metrics", headers={"Authorization": f"Bearer {PUSH}"}
    )
    assert status == 403
    status, _ = await api("POST", daemon.listen_url + "/kornitx/jobs", json=payload(JOB_ID, []))
    assert status == 401

    samples = await scrape(daemon, ADMIN)
    assert value(samples, "hotfolder_feeder_jobs_received_total", result="unauthorized") == 1
    assert value(samples, "hotfolder_feeder_jobs_received_total", result="accepted") == 0


async def test_metrics_push_token_without_admin(tmp_path: Path, start_daemon: StartDaemon) -> None:
    """With no admin token configured, /metrics takes the push token."""
    daemon = await start_daemon(table(tmp_path, server={"auth": {"tokens": [PUSH]}}))

    status, _ = await api("GET", daemon.listen_url + "/metrics")
    assert status == 401
    samples = await scrape(daemon, PUSH)
    assert value(samples, "hotfolder_feeder_jobs_received_total", result="accepted") == 0


async def test_metrics_registry_per_daemon(
    tmp_path: Path, origin: ArtworkOrigin, start_daemon: StartDaemon
) -> None:
    """Two daemons in one process keep separate counters."""
    first = await start_daemon(table(tmp_path / "one"))
    second = await start_daemon(table(tmp_path / "two"))
    url = origin.add_generated("/art/one.png", "png", 5_000, seed=1)

    status, _ = await api(
        "POST", first.listen_url + "/kornitx/jobs", json=payload(JOB_ID, [("one.png", url)])
    )
    assert status == 202

    assert (
        value(await scrape(first), "hotfolder_feeder_jobs_received_total", result="accepted") == 1
    )
    assert (
        value(await scrape(second), "hotfolder_feeder_jobs_received_total", result="accepted") == 0
    )


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TransientFetchError("HTTP 503 Service Unavailable from http://origin/a.png"), "http_503"),
        (TransientFetchError("HTTP 429 Too Many Requests from http://origin/a.png"), "http_429"),
        (
            StagingDiscarded(
                "HTTP 416 Range Not Satisfiable from x: the resume offset was refused"
            ),
            "resume_refused",
        ),
        (BadContentError("body is an HTML or XML page, not a .png artwork"), "bad_content"),
        (
            TransientFetchError("no data for 60s (read timeout) or no connection within 10s"),
            "timeout",
        ),
        (TransientFetchError("body cut short: got 10 of 20 bytes"), "short_body"),
        (TransientFetchError("empty body"), "short_body"),
        (TransientFetchError("ClientConnectorError: Cannot connect to host"), "connection"),
        (TransientFetchError("ServerDisconnectedError: Server disconnected"), "connection"),
        (
            TransientFetchError("not enough space in /hot/.staging: the file needs 10 more bytes"),
            "disk_space",
        ),
        (
            StagingDiscarded(
                "cannot write staging file /x.part: [Errno 28] No space left on device"
            ),
            "disk_space",
        ),
        (
            TransientFetchError("cannot write staging file /x.part: [Errno 13] Permission denied"),
            "staging_write",
        ),
        (TransientFetchError("RuntimeError('boom')"), "other"),
    ],
)
def test_retry_reason_labels(error: TransientFetchError, reason: str) -> None:
    """Each transient download error maps to one label of a small, fixed set."""
    assert retry_reason(error) == reason
