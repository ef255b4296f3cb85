"""Only KornitX gets in: tokens, signatures, address rules, TLS, what is fetched, hostile bodies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import shutil
import signal
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import api, settings_table, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotfolder_feeder import config, kornitx
from hotfolder_feeder.auth import MAX_FAILURES, FailureThrottle
from hotfolder_feeder.daemon import Daemon
from hotfolder_feeder.errors import ConfigError, PayloadError
from hotfolder_feeder.fetch import Fetcher, PrivateAddressError, make_session, refused_address
from hotfolder_feeder.origin import ArtworkOrigin, Fault, FaultPlan

PUSH = "push-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
HMAC_KEY = "gateway-hmac-key"
EXAMPLE = json.loads((Path(kornitx.__file__).parent / "examples" / "consolidation-job.json").read_text())


def _auth_table(tmp_path: Path, **auth: Any) -> dict[str, Any]:
    return settings_table(tmp_path, server={"auth": {"tokens": [PUSH], "admin_tokens": [ADMIN], **auth}})


def _minimal_job(job_id: int = 1) -> dict[str, Any]:
    return {"id": job_id, "artwork": None, "items": []}


async def _push(daemon: Daemon, body: bytes, headers: dict[str, str] | None = None, query: str = "") -> tuple[int, Any]:
    return await api("POST", f"{daemon.listen_url}/kornitx/jobs{query}", data=body, headers=headers or {})


# Tokens


async def test_token_ways_accepted(start_daemon, tmp_path: Path) -> None:
    """A push token works as ?token=, as a Bearer token and as a Basic password."""
    daemon = await start_daemon(_auth_table(tmp_path))
    basic = base64.b64encode(f"kornitx:{PUSH}".encode()).decode()

    answers = [
        await _push(daemon, json.dumps(_minimal_job(1)).encode(), query=f"?token={PUSH}"),
        await _push(daemon, json.dumps(_minimal_job(2)).encode(), {"Authorization": f"Bearer {PUSH}"}),
        await _push(daemon, json.dumps(_minimal_job(3)).encode(), {"Authorization": f"Basic {basic}"}),
    ]

    assert [status for status, _ in answers] == [202, 202, 202]


async def test_token_missing_or_wrong_401(start_daemon, tmp_path: Path) -> None:
    """No token and a wrong token both get 401 with a WWW-Authenticate header."""
    daemon = await start_daemon(_auth_table(tmp_path))
    url = f"{daemon.listen_url}/kornitx/jobs"

    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=b"{}") as missing:
            missing_body = await missing.json()
            missing_header = missing.headers.get("WWW-Authenticate")
        async with session.post(url, data=b"{}", headers={"Authorization": "Bearer wrong-token-0123456789"}) as wrong:
            wrong_body = await wrong.json()

    assert (missing.status, missing_body["reason"]) == (401, "missing token")
    assert missing_header == 'Bearer realm="hotfolder-feeder"'
    assert (wrong.status, wrong_body["reason"]) == (401, "invalid token")


async def test_push_token_on_admin_api_403(start_daemon, tmp_path: Path) -> None:
    """A valid push token is not enough for the operators' API once admin tokens exist."""
    daemon = await start_daemon(_auth_table(tmp_path))

    status, body = await api("GET", f"{daemon.listen_url}/api/jobs", headers={"Authorization": f"Bearer {PUSH}"})
    admin_status, _ = await api("GET", f"{daemon.listen_url}/api/jobs", headers={"Authorization": f"Bearer {ADMIN}"})

    assert status == 403
    assert "admin token" in body["reason"]
    assert admin_status == 200


async def test_read_only_addresses(start_daemon, tmp_path: Path) -> None:
    """read_only_ips may read the API without a token but not act."""
    daemon = await start_daemon(_auth_table(tmp_path, read_only_ips=["127.0.0.0/8"]))
    await _push(daemon, json.dumps(_minimal_job(5)).encode(), {"Authorization": f"Bearer {PUSH}"})

    read, _ = await api("GET", f"{daemon.listen_url}/api/jobs")
    act, _ = await api("POST", f"{daemon.listen_url}/api/jobs/5/retry")

    assert read == 200
    assert act == 401


async def test_failures_throttled_429(start_daemon, tmp_path: Path) -> None:
    """After repeated failures an address gets 429 with Retry-After, even with a good token."""
    daemon = await start_daemon(_auth_table(tmp_path))
    bad = {"Authorization": "Bearer wrong-token-0123456789"}

    statuses = [(await _push(daemon, b"{}", bad))[0] for _ in range(MAX_FAILURES)]
    async with aiohttp.ClientSession() as session:
        good = {"Authorization": f"Bearer {PUSH}"}
        async with session.post(f"{daemon.listen_url}/kornitx/jobs", data=b"{}", headers=good) as response:
            blocked = response.status
            retry_after = response.headers.get("Retry-After")

    assert statuses == [401] * MAX_FAILURES
    assert blocked == 429
    assert retry_after is not None
    assert int(retry_after) > 0


def test_throttle_window_expires() -> None:
    """Failures older than the window no longer count."""
    throttle = FailureThrottle(limit=3, window=10)
    for moment in (0, 1, 2):
        throttle.record("192.0.2.7", now=moment)

    assert throttle.retry_after("192.0.2.7", now=5) == pytest.approx(5)
    assert throttle.retry_after("192.0.2.7", now=10.5) is None
    assert throttle.retry_after("192.0.2.8", now=5) is None


# Addresses and signatures


async def test_allowed_ips_403(start_daemon, tmp_path: Path) -> None:
    """A push from outside allowed_ips gets 403, and a forged X-Forwarded-For does not help."""
    daemon = await start_daemon(_auth_table(tmp_path, allowed_ips=["10.0.0.0/8"]))
    headers = {"Authorization": f"Bearer {PUSH}", "X-Forwarded-For": "10.1.2.3"}

    status, body = await _push(daemon, json.dumps(_minimal_job()).encode(), headers)

    assert status == 403
    assert "allowed_ips" in body["reason"]


async def test_trusted_proxy_forwarded_for(start_daemon, tmp_path: Path) -> None:
    """Behind a trusted proxy, the client address comes from X-Forwarded-For."""
    table = _auth_table(tmp_path, allowed_ips=["10.0.0.0/8"], trusted_proxies=["127.0.0.1"])
    daemon = await start_daemon(table)
    allowed = {"Authorization": f"Bearer {PUSH}", "X-Forwarded-For": "203.0.113.9, 10.1.2.3"}
    refused = {"Authorization": f"Bearer {PUSH}", "X-Forwarded-For": "10.1.2.3, 203.0.113.9"}

    allowed_status, _ = await _push(daemon, json.dumps(_minimal_job(8)).encode(), allowed)
    refused_status, _ = await _push(daemon, json.dumps(_minimal_job(9)).encode(), refused)

    assert allowed_status == 202
    assert refused_status == 403


async def test_hmac_signature(start_daemon, tmp_path: Path) -> None:
    """X-CustomGateway-Hmac is checked in hex or base64; a wrong or missing one gets 401."""
    daemon = await start_daemon(_auth_table(tmp_path, hmac_key=HMAC_KEY))
    token = {"Authorization": f"Bearer {PUSH}"}
    bodies = [json.dumps(_minimal_job(job_id)).encode() for job_id in (11, 12, 13, 14)]
    digests = [hmac.new(HMAC_KEY.encode(), body, hashlib.sha256).digest() for body in bodies]

    hex_status, _ = await _push(daemon, bodies[0], {**token, "X-CustomGateway-Hmac": digests[0].hex()})
    b64_status, _ = await _push(daemon, bodies[1], {**token, "X-CustomGateway-Hmac": base64.b64encode(digests[1]).decode()})
    wrong_status, _ = await _push(daemon, bodies[2], {**token, "X-CustomGateway-Hmac": digests[0].hex()})
    missing_status, _ = await _push(daemon, bodies[3], token)

    assert (hex_status, b64_status) == (202, 202)
    assert (wrong_status, missing_status) == (401, 401)


async def test_open_listen_needs_token(tmp_path: Path) -> None:
    """Without a push token the daemon refuses to listen beyond loopback and says why."""
    table = settings_table(tmp_path, server={"listen": "0.0.0.0:0"})
    daemon = Daemon(config.build(table, base=tmp_path, source="test"))

    with pytest.raises(ConfigError, match="no push token"):
        await daemon.start()
    await daemon.stop()


# TLS


def _make_certificate(folder: Path, name: str) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip


async def _served_certificate(url: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    host, port = url.removeprefix("https://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return hashlib.sha256(der).hexdigest()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")
async def test_tls_reloaded_on_sighup(tmp_path: Path, daemon_process) -> None:
    """The daemon serves HTTPS and loads a renewed certificate on SIGHUP."""
    tls = tmp_path / "tls"
    tls.mkdir()
    _make_certificate(tls, "first")
    table = settings_table(tmp_path, server={"tls": {"cert": str(tls / "cert.pem"), "key": str(tls / "key.pem")}})
    daemon = await daemon_process(table)
    assert daemon.url.startswith("https://")
    first = await _served_certificate(daemon.url)

    _make_certificate(tls, "second")
    daemon.process.send_signal(signal.SIGHUP)
    await daemon.wait_for_event("tls_reloaded", 10)

    assert await _served_certificate(daemon.url) != first
    assert await daemon.stop() == 0


# What the daemon fetches


@pytest.fixture
async def fetcher_for() -> Any:
    sessions = []

    def make(**overrides: Any) -> Fetcher:
        download = config.DownloadSettings(**overrides)
        session = make_session(download)
        sessions.append(session)
        return Fetcher(session, download)

    yield make
    for session in sessions:
        await session.close()


async def test_http_refused_by_default(origin: ArtworkOrigin, fetcher_for, tmp_path: Path) -> None:
    """Plain http artwork URLs are refused unless allow_http is set."""
    url = origin.add_generated("/a.png", "png", 1000)

    with pytest.raises(Exception, match="plain http"):
        await fetcher_for(allow_private_networks=True).download(url, tmp_path / "a.part", "png")
    assert origin.requests_for("/a.png") == []


async def test_private_exception_list(origin: ArtworkOrigin, fetcher_for, tmp_path: Path) -> None:
    """A listed private network is allowed; a redirect from it to another private address is refused."""
    fetcher = fetcher_for(allow_http=True, allow_private_networks=["127.0.0.1/32"])
    allowed = origin.add_generated("/a.png", "png", 1000)
    origin.add_generated("/b.png", "png", 1000)
    other_port = origin.base_url.rsplit(":", 1)[1]
    origin.fault("/b.png", FaultPlan(Fault.REDIRECT, location=f"http://127.0.0.2:{other_port}/a.png"))
    origin.add_generated("/c.png", "png", 1000)
    origin.fault("/c.png", FaultPlan(Fault.REDIRECT, location="http://169.254.169.254/latest/meta-data/"))

    result = await fetcher.download(allowed, tmp_path / "a.part", "png")
    with pytest.raises(PrivateAddressError):
        await fetcher.download(origin.url("/b.png"), tmp_path / "b.part", "png")
    with pytest.raises(PrivateAddressError):
        await fetcher.download(origin.url("/c.png"), tmp_path / "c.part", "png")

    assert result.size == 1000


async def test_max_file_size_enforced(origin: ArtworkOrigin, fetcher_for, tmp_path: Path) -> None:
    """A file larger than max_file_size is refused as a permanent failure."""
    url = origin.add_generated("/big.png", "png", 3 * 1024 * 1024)
    origin.fault("/big.png", FaultPlan(Fault.WRONG_LENGTH, after_bytes=0, times=1))
    fetcher = fetcher_for(allow_http=True, allow_private_networks=True, max_file_size=1024 * 1024)

    with pytest.raises(Exception, match="max_file_size"):
        await fetcher.download(url, tmp_path / "big.part", "png")


# Hostile bodies


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply", id="deep-nesting"),
        pytest.param(b'{"id": 1, "id": 2, "artwork": null, "items": []}', 400, "duplicate key", id="duplicate-keys"),
        pytest.param(b'{"id": 1, "artwork": null, "items": [], "x": "\xff\xfe"}', 400, "not UTF-8", id="not-utf8"),
        pytest.param(json.dumps({"id": 1, "artwork": None, "items": "x" * 100_000}).encode(), 422, "list", id="huge-wrong-type"),
        pytest.param(
            json.dumps({"id": 1, "artwork": None, "items": [{}] * (kornitx.MAX_ITEMS + 1)}).encode(),
            422, "items", id="too-many-items",
        ),  # fmt: skip
    ],
)
async def test_hostile_body_rejected(start_daemon, tmp_path: Path, body: bytes, status: int, reason: str) -> None:
    """Each hostile body gets a clear 4xx and the daemon keeps serving."""
    daemon = await start_daemon()

    got, answer = await _push(daemon, body)
    health, _ = await api("GET", f"{daemon.listen_url}/healthz")

    assert got == status, answer
    assert reason in answer["reason"] or reason in (answer["field"] or "")
    assert health == 200


async def test_enormous_name_rejected(start_daemon) -> None:
    """An artwork name of two million characters is refused with the field named."""
    daemon = await start_daemon()
    job = json.loads(json.dumps(EXAMPLE))
    job["items"][0]["order_item"]["artwork"][0]["name"] = "x" * 2_000_000

    status, answer = await _push(daemon, json.dumps(job).encode())

    assert status == 422
    assert answer["field"] == "$.items[0].order_item.artwork[0].name"


async def test_path_tricks_stay_inside(start_daemon, origin: ArtworkOrigin, tmp_path: Path) -> None:
    """Names with .., absolute paths, drive letters, NUL and device names land inside the hot folder."""
    daemon = await start_daemon()
    names = ["../../escape.png", "/etc/cron.d/x.png", "C:\\Windows\\x.png", "nul\u0000byte.png", "CON.png", "..\\..\\up.png"]
    items = [
        {"id": i + 1, "order_item_id": i + 1, "order_item": {"id": i + 1, "artwork": [
            {"name": name, "ext": "png", "clientUrl": origin.add_generated(f"/p/{i}.png", "png", 1000, seed=i)}]}}
        for i, name in enumerate(names)
    ]  # fmt: skip
    status, _ = await _push(daemon, json.dumps({"id": 77, "artwork": None, "items": items}).encode())
    assert status == 202

    hotfolder = tmp_path / "hot-1"
    await wait_until(lambda: _delivered_count(daemon, 77, len(names)), 15, "every tricky name delivered")
    files = sorted(path.name for path in hotfolder.iterdir() if path.is_file())
    assert len(files) == len(names)
    assert all("/" not in name and "\\" not in name and "\0" not in name for name in files)
    assert "CON.png" not in files
    assert not (tmp_path / "escape.png").exists()


async def _delivered_count(daemon: Daemon, job_id: int, count: int) -> bool:
    job = await daemon.journal.job(job_id)
    return job is not None and sum(d["state"] == "delivered" for d in job["deliveries"]) == count


async def test_twenty_thousand_items_accepted(start_daemon, origin: ArtworkOrigin) -> None:
    """A job with 20,000 items is accepted in one push while health checks keep answering."""
    daemon = await start_daemon()
    url = origin.url("/missing.png")
    items = [
        {"id": i, "order_item_id": i, "order_item": {"id": i, "artwork": [{"name": f"f{i}.png", "clientUrl": url}]}}
        for i in range(1, kornitx.MAX_ITEMS + 1)
    ]
    body = json.dumps({"id": 500, "artwork": None, "items": items}).encode()

    push = asyncio.create_task(_push(daemon, body))
    health = await api("GET", f"{daemon.listen_url}/healthz")
    status, answer = await push

    assert health[0] == 200
    assert status == 202
    assert answer["deliveries"] == kornitx.MAX_ITEMS


# Properties of the payload parser

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_parser_random_json(value: Any) -> None:
    """Any JSON value either parses as a job or raises PayloadError, never anything else."""
    try:
        kornitx.parse_job(value)
    except PayloadError as error:
        assert error.path.startswith("$")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


EXAMPLE_PATHS = _paths(EXAMPLE)[1:]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(EXAMPLE_PATHS), JSON_VALUES)
def test_parser_mutated_example(path: tuple[Any, ...], replacement: Any) -> None:
    """The example job with any one value replaced parses, or fails with a path into the job."""
    job = json.loads(json.dumps(EXAMPLE))
    parent = job
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = replacement

    try:
        parsed = kornitx.parse_job(job)
    except PayloadError as error:
        assert error.path.startswith("$")
    else:
        for delivery in kornitx.plan(parsed):
            assert delivery.url.lower().startswith(("http://", "https://"))


async def test_id_beyond_64_bits_422(start_daemon) -> None:
    """An id SQLite cannot store gets 422 naming the field, not a 500."""
    daemon = await start_daemon()
    job = json.loads(json.dumps(EXAMPLE))
    job["items"][1]["order_item_id"] = 2**64

    status, answer = await _push(daemon, json.dumps(job).encode())

    assert status == 422
    assert answer["field"] == "$.items[1].order_item_id"


async def test_compressed_body_415(start_daemon) -> None:
    """A gzip body is refused before it is inflated, so it cannot blow up memory."""
    daemon = await start_daemon()
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}

    status, answer = await _push(daemon, b"\x1f\x8b" + b"\0" * 100, headers)

    assert status == 415
    assert "uncompressed" in answer["reason"]


async def test_url_password_never_shown(start_daemon, origin: ArtworkOrigin) -> None:
    """A password in an artwork URL appears neither in the delivery's error nor in its log line."""
    daemon = await start_daemon()
    url = origin.url("/missing.png").replace("http://", "http://user:hunter2-secret@")
    job = {"id": 61, "artwork": None, "items": [{"id": 1, "order_item_id": 1, "order_item": {
        "id": 1, "artwork": [{"name": "m.png", "clientUrl": url}]}}]}  # fmt: skip

    await _push(daemon, json.dumps(job).encode())
    failed = await wait_until(lambda: _failed_delivery(daemon, 61), 15, "the 404 recorded")

    assert "404" in failed["error"]
    assert "hunter2-secret" not in failed["error"]


async def _failed_delivery(daemon: Daemon, job_id: int) -> dict[str, Any] | None:
    job = await daemon.journal.job(job_id)
    failed = [d for d in job["deliveries"] if d["state"] == "failed"] if job else []
    return failed[0] if failed else None


def test_metadata_refused_even_when_private_allowed() -> None:
    """allow_private_networks = true still refuses cloud metadata addresses unless listed.

    Checked on the address rule itself, so that a regression can never send a request there.
    """
    assert refused_address("169.254.169.254", True)
    assert refused_address("::ffff:169.254.169.254", True)
    assert refused_address("fd00:ec2::254", True)
    assert not refused_address("169.254.169.254", ["169.254.169.254/32"])
    assert not refused_address("192.168.10.20", True)
    assert refused_address("192.168.10.20", False)
    assert not refused_address("192.168.10.20", ["192.168.10.0/24"])
    assert not refused_address("8.8.8.8", False)
