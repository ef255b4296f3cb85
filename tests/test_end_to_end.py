"""The main job end to end: the real daemon process, a local origin, a simulated RIP."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from conftest import api, settings_table, wait_until

from hotfolder_feeder.demo import example_payload, point_at_origin
from hotfolder_feeder.origin import ArtworkOrigin
from hotfolder_feeder.rip import SimulatedRip

CONSOLIDATION_NAMES = [
    "AV HD6 Black HQ_64021_Hoodies Full Size_71128134-output-3950663_1_16_129.png",
    "AV HD6 Black HQ_64021_Hoodies Full Size_71128135-output-3950663_1_14_116.png",
]
TOKEN = "push-token-for-tests"


def _origin_path(url: str, origin: ArtworkOrigin) -> str:
    return url.removeprefix(origin.base_url)


async def _job(url: str, job_id: int) -> dict[str, Any]:
    status, job = await api("GET", f"{url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, job
    return job


async def _completed(url: str, job_id: int) -> dict[str, Any] | None:
    job = await _job(url, job_id)
    return job if job["state"] == "completed" else None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_example_jobs_delivered_and_picked_up(tmp_path: Path, origin: ArtworkOrigin, daemon_process) -> None:
    """Both example payloads land whole under their Quick P names and the RIP's pickup is seen."""
    table = settings_table(tmp_path, server={"auth": {"tokens": [TOKEN]}})
    daemon = await daemon_process(table)
    payloads = {name: point_at_origin(example_payload(name), origin) for name in ("artwork-processing-job.json", "consolidation-job.json")}
    assert "\\/\\/127.0.0.1" in payloads["consolidation-job.json"], "escaped slashes must be kept"

    async with SimulatedRip(tmp_path / "hot-1", interval=0.05) as rip:
        for payload in payloads.values():
            status, answer = await api("POST", f"{daemon.url}/kornitx/jobs?token={TOKEN}", data=payload)
            assert status == 202, answer
            assert answer["duplicate"] is False

        consolidation = await wait_until(lambda: _completed(daemon.url, 9972198), 30, "job 9972198 completed")
        artwork_job = await wait_until(lambda: _completed(daemon.url, 9972081), 30, "job 9972081 completed")
        await rip.wait_taken(3, timeout=10)

    assert [d["name"] for d in consolidation["deliveries"]] == CONSOLIDATION_NAMES
    assert [d["name"] for d in artwork_job["deliveries"]] == ["9972081_artwork.png"]
    assert rip.problems == []
    assert sorted(taken.name for taken in rip.taken) == sorted([*CONSOLIDATION_NAMES, "9972081_artwork.png"])

    consolidation_payload = json.loads(payloads["consolidation-job.json"])
    for delivery, item in zip(consolidation["deliveries"], consolidation_payload["items"], strict=True):
        path = _origin_path(item["order_item"]["artwork"][0]["clientUrl"], origin)
        taken = next(t for t in rip.taken if t.name == delivery["name"])
        assert delivery["state"] == "picked_up"
        assert delivery["item_id"] == item["id"]
        assert delivery["order_item_id"] == item["order_item_id"]
        assert delivery["artwork_name"] == item["order_item"]["artwork"][0]["name"]
        assert delivery["bytes"] == origin.expected_size(path) == taken.size
        assert delivery["sha256"] == origin.expected_sha256(path) == taken.sha256
        assert delivery["path"] == str(tmp_path / "hot-1" / delivery["name"])
        assert _time(delivery["created_at"]) <= _time(delivery["staged_at"])
        assert _time(delivery["staged_at"]) <= _time(delivery["delivered_at"])
        assert _time(delivery["delivered_at"]) <= _time(delivery["picked_up_at"])

    assert list((tmp_path / "hot-1").iterdir()) == [tmp_path / "hot-1" / ".hotfolder-feeder"]
    assert await daemon.stop() == 0


async def test_repush_writes_no_second_copy(tmp_path: Path, origin: ArtworkOrigin, daemon_process) -> None:
    """A re-push answers 200 duplicate, adds nothing and the RIP sees each file once."""
    daemon = await daemon_process(settings_table(tmp_path))
    payload = point_at_origin(example_payload("consolidation-job.json"), origin)

    async with SimulatedRip(tmp_path / "hot-1", interval=0.05) as rip:
        status, first = await api("POST", f"{daemon.url}/kornitx/jobs", data=payload)
        status_again, again = await api("POST", f"{daemon.url}/kornitx/jobs", data=payload)
        await rip.wait_taken(2, timeout=20)
        await wait_until(lambda: _completed(daemon.url, 9972198), 20, "job completed")
        status_late, late = await api("POST", f"{daemon.url}/kornitx/jobs", data=payload)
        await wait_until(lambda: _completed(daemon.url, 9972198), 5, "job still completed")

    assert (status, first) == (202, {"job_id": 9972198, "duplicate": False, "deliveries": 2})
    assert (status_again, again) == (200, {"job_id": 9972198, "duplicate": True, "deliveries": 2, "added": 0})
    assert (status_late, late) == (200, {"job_id": 9972198, "duplicate": True, "deliveries": 2, "added": 0})
    assert len(rip.taken) == 2
    assert rip.problems == []


async def test_push_rejections_name_the_problem(tmp_path: Path, daemon_process) -> None:
    """Bad pushes get 400, 401, 413 or 422 with a JSON body, and the daemon keeps serving."""
    table = settings_table(tmp_path, server={"auth": {"tokens": [TOKEN]}, "max_body_size": "64KiB"})
    daemon = await daemon_process(table)
    push_url = f"{daemon.url}/kornitx/jobs"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    status, body = await api("POST", push_url, data=b'{"id": 1}')
    assert status == 401
    assert body["reason"] == "missing token"

    status, body = await api("POST", push_url, data=b"{not json", headers=auth)
    assert status == 400
    assert body["field"] == "$"

    status, body = await api("POST", push_url, data=b'{"id": "9972198", "artwork": null, "items": []}', headers=auth)
    assert status == 422
    assert body["field"] == "$.id"

    status, body = await api("POST", push_url, data=b"[" + b"1," * 40_000 + b"1]", headers=auth)
    assert status == 413
    assert body["field"] == "$"

    status, body = await api("GET", f"{daemon.url}/healthz")
    assert status == 200
    assert await daemon.stop() == 0
