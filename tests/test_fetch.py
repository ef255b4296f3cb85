"""Tests of single download attempts: the Fetcher against the local artwork origin."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hotfolder_feeder import fetch
from hotfolder_feeder.config import DownloadSettings
from hotfolder_feeder.errors import PermanentFetchError, TransientFetchError
from hotfolder_feeder.fetch import BadContentError, Fetcher, PrivateAddressError
from hotfolder_feeder.origin import ArtworkOrigin, Fault, FaultPlan, make_artwork

MIB = 1024 * 1024
PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261204%2Feu-west-1%2Fs3%2Faws4_request"
    "&X-Amz-Signature=dGVzdA%3D%3D&X-Amz-Expires=3600"
)

MakeFetcher = Callable[..., Fetcher]


@pytest.fixture
async def make_fetcher() -> AsyncIterator[MakeFetcher]:
    """Build Fetchers from DownloadSettings keywords, loopback allowed unless overridden."""
    sessions = []

    def make(**overrides: Any) -> Fetcher:
        settings = DownloadSettings(**{"allow_http": True, "allow_private_networks": True, **overrides})
        session = fetch.make_session(settings)
        sessions.append(session)
        return Fetcher(session, settings)

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    return tmp_path / "staging" / "1.part"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------
# Whole downloads and exact URLs


async def test_download_whole_file(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A download writes the whole body to staging and returns its size and SHA-256."""
    url = origin.add_generated("/auto-crop/art.png", "png", 3 * MIB + 17, seed=3)

    result = await make_fetcher().download(url, staging, "png")

    assert result.size == 3 * MIB + 17
    assert result.sha256 == origin.expected_sha256("/auto-crop/art.png")
    assert result.resumed_from == 0
    assert staging.read_bytes() == make_artwork("png", 3 * MIB + 17, seed=3)


async def test_download_extension_case(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """An upper-case extension is checked like its lower-case form."""
    url = origin.add_generated("/art.JPG", "jpg", 50_000)

    result = await make_fetcher().download(url, staging, "JPG")

    assert result.sha256 == origin.expected_sha256("/art.JPG")


async def test_download_url_kept_exactly(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A presigned query with %2F and %3D escapes reaches the origin byte for byte."""
    url = origin.add_generated(f"/bucket/art.png?{PRESIGNED_QUERY}", "png", 10_000)
    assert url.endswith(PRESIGNED_QUERY)

    await make_fetcher().download(url, staging, "png")

    [request] = origin.requests_for("/bucket/art.png")
    assert request.target == f"/bucket/art.png?{PRESIGNED_QUERY}"
    assert request.query_string == PRESIGNED_QUERY


async def test_download_escaped_path_kept(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """An escaped space and plus sign in the path are sent as given, not re-quoted."""
    url = origin.add_generated("/auto-crop/my art+1.png", "png", 10_000)

    await make_fetcher().download(url, staging, "png")

    [request] = origin.requests_for("/auto-crop/my art+1.png")
    assert request.target == "/auto-crop/my%20art+1.png"


# ---------------------------------------------------------------------------
# Statuses


@pytest.mark.parametrize("status", [429, 503])
async def test_status_transient_retry_after_seconds(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path, status: int
) -> None:
    """429 and 503 raise TransientFetchError with Retry-After seconds as retry_after."""
    url = origin.add_generated("/busy.png", "png", 1000)
    origin.fault("/busy.png", FaultPlan(Fault.STATUS, status=status, retry_after="7"))

    with pytest.raises(TransientFetchError, match=str(status)) as raised:
        await make_fetcher().download(url, staging, "png")

    assert raised.value.retry_after == 7.0


async def test_status_transient_retry_after_date(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A Retry-After HTTP date becomes the seconds from now until that date."""
    url = origin.add_generated("/busy.png", "png", 1000)
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    origin.fault("/busy.png", FaultPlan(Fault.STATUS, status=503, retry_after=later))

    with pytest.raises(TransientFetchError) as raised:
        await make_fetcher().download(url, staging, "png")

    assert raised.value.retry_after is not None
    assert 25 <= raised.value.retry_after <= 30


async def test_status_transient_without_retry_after(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A 503 without Retry-After has retry_after None."""
    url = origin.add_generated("/busy.png", "png", 1000)
    origin.fault("/busy.png", FaultPlan(Fault.STATUS, status=503))

    with pytest.raises(TransientFetchError) as raised:
        await make_fetcher().download(url, staging, "png")

    assert raised.value.retry_after is None


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_status_permanent(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path, status: int
) -> None:
    """403, 404 and 410 raise PermanentFetchError naming the status, without the query."""
    url = origin.add_generated(f"/gone.png?{PRESIGNED_QUERY}", "png", 1000)
    origin.fault("/gone.png", FaultPlan(Fault.STATUS, status=status))

    with pytest.raises(PermanentFetchError, match=f"HTTP {status}") as raised:
        await make_fetcher().download(url, staging, "png")

    assert "X-Amz-Signature" not in str(raised.value)
    assert not staging.exists()


def test_parse_retry_after_forms() -> None:
    """Retry-After seconds, a past date and garbage parse to seconds, 0 and None."""
    now = 1_800_000_000.0

    def parse(value: str | None) -> float | None:
        headers = {} if value is None else {"Retry-After": value}
        return fetch.parse_retry_after(headers, lambda: now)

    assert parse(" 12 ") == 12.0
    assert parse(email.utils.formatdate(now + 90, usegmt=True)) == 90.0
    assert parse(email.utils.formatdate(now - 90, usegmt=True)) == 0.0
    assert parse("soon") is None
    assert parse(None) is None


# ---------------------------------------------------------------------------
# Content checks


@pytest.mark.parametrize("fault", [Fault.HTML_ERROR_PAGE, Fault.XML_ERROR_PAGE])
async def test_error_page_with_200(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path, fault: Fault
) -> None:
    """An HTML or XML error page sent with 200 raises BadContentError and removes staging."""
    url = origin.add_generated("/art.png", "png", 5000)
    origin.fault("/art.png", FaultPlan(fault))

    with pytest.raises(BadContentError):
        await make_fetcher().download(url, staging, "png")

    assert not staging.exists()


async def test_html_page_unknown_extension(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """An HTML error page with 200 is rejected even where the extension has no signature check."""
    url = origin.add("/art.eps", b"\x00" * 1000)
    origin.fault("/art.eps", FaultPlan(Fault.HTML_ERROR_PAGE))

    with pytest.raises(BadContentError):
        await make_fetcher().download(url, staging, "eps")


async def test_error_page_for_pdf(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """An XML error page at a .pdf path is rejected like one at a .png path."""
    url = origin.add_generated("/art.pdf", "pdf", 5000)
    origin.fault("/art.pdf", FaultPlan(Fault.XML_ERROR_PAGE))

    with pytest.raises(BadContentError):
        await make_fetcher().download(url, staging, "pdf")

    assert not staging.exists()


async def test_wrong_signature(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """PDF bytes at a .png path raise BadContentError and leave no staging file."""
    url = origin.add("/art.png", make_artwork("pdf", 2 * MIB))

    with pytest.raises(BadContentError, match="signature"):
        await make_fetcher().download(url, staging, "png")

    assert not staging.exists()


async def test_short_body_wrong_signature(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A body shorter than a signature is still checked, at the end of the download."""
    url = origin.add("/tiny.png", b"GIF8")

    with pytest.raises(BadContentError):
        await make_fetcher().download(url, staging, "png")

    assert not staging.exists()


async def test_unknown_extension_accepted(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """An extension without a known signature accepts any body that is not markup."""
    body = b"\x00\x01artwork in a format without a signature check" * 100
    url = origin.add("/art.eps", body)

    result = await make_fetcher().download(url, staging, "eps")

    assert result.size == len(body)
    assert staging.read_bytes() == body


async def test_wrong_length(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A body shorter than its Content-Length raises TransientFetchError."""
    url = origin.add_generated("/art.png", "png", 100_000)
    origin.fault("/art.png", FaultPlan(Fault.WRONG_LENGTH, after_bytes=500))

    with pytest.raises(TransientFetchError):
        await make_fetcher().download(url, staging, "png")


# ---------------------------------------------------------------------------
# Cut-short bodies and resume


async def truncated_attempt(
    origin: ArtworkOrigin, fetcher: Fetcher, staging: Path, path: str
) -> int:
    """Run one attempt that the origin cuts short, and return the bytes left in staging."""
    origin.fault(path, FaultPlan(Fault.TRUNCATE, after_bytes=3 * MIB))

    with pytest.raises(TransientFetchError):
        await fetcher.download(origin.url(path), staging, "png")

    return staging.stat().st_size


async def test_truncate_then_resume(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A cut-short body is transient, and the next attempt resumes from the staged size."""
    origin.add_generated("/big.png", "png", 4 * MIB + 5, seed=8)
    fetcher = make_fetcher()

    staged_bytes = await truncated_attempt(origin, fetcher, staging, "/big.png")
    result = await fetcher.download(origin.url("/big.png"), staging, "png")

    assert 0 < staged_bytes <= 3 * MIB
    first, second = origin.requests_for("/big.png")
    assert first.range is None
    assert second.range == f"bytes={staged_bytes}-"
    assert result.resumed_from == staged_bytes
    assert result.size == 4 * MIB + 5
    assert result.sha256 == origin.expected_sha256("/big.png")
    assert sha256_of(staging) == result.sha256


async def test_truncate_without_ranges(make_fetcher: MakeFetcher, staging: Path) -> None:
    """An origin that ignores Range sends 200 again, and the download starts over correctly."""
    async with ArtworkOrigin(ranges=False) as origin:
        origin.add_generated("/big.png", "png", 4 * MIB + 5, seed=8)
        fetcher = make_fetcher()

        staged_bytes = await truncated_attempt(origin, fetcher, staging, "/big.png")
        result = await fetcher.download(origin.url("/big.png"), staging, "png")

        assert staged_bytes > 0
        assert origin.requests_for("/big.png")[1].range == f"bytes={staged_bytes}-"
        assert result.resumed_from == 0
        assert result.size == 4 * MIB + 5
        assert result.sha256 == origin.expected_sha256("/big.png")
        assert sha256_of(staging) == result.sha256


async def test_resume_refused_starts_over(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A complete staging file left by a crash gets a 416; the next attempt starts from zero."""
    url = origin.add_generated("/art.png", "png", 100_000)
    fetcher = make_fetcher()
    await fetcher.download(url, staging, "png")

    with pytest.raises(TransientFetchError, match="416"):
        await fetcher.download(url, staging, "png")
    result = await fetcher.download(url, staging, "png")

    assert origin.requests_for("/art.png")[1].range == "bytes=100000-"
    assert origin.requests_for("/art.png")[2].range is None
    assert result.resumed_from == 0
    assert result.sha256 == origin.expected_sha256("/art.png")


async def test_resume_needs_validator(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A staging file without the origin's ETag or Last-Modified is never resumed."""
    url = origin.add_generated("/art.png", "png", 100_000)
    staging.parent.mkdir(parents=True)
    staging.write_bytes(make_artwork("png", 50_000, seed=9))

    result = await make_fetcher().download(url, staging, "png")

    assert origin.requests_for("/art.png")[0].range is None
    assert result.resumed_from == 0
    assert result.sha256 == origin.expected_sha256("/art.png")


async def test_resume_after_origin_change(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A resume after the origin replaced the file never yields a mix of both versions."""
    origin.add_generated("/art.png", "png", 4 * MIB, seed=1)
    fetcher = make_fetcher()

    await truncated_attempt(origin, fetcher, staging, "/art.png")
    origin.add_generated("/art.png", "png", 4 * MIB, seed=2)
    result = await fetcher.download(origin.url("/art.png"), staging, "png")

    assert result.sha256 == origin.expected_sha256("/art.png")


# ---------------------------------------------------------------------------
# Stalls, resets and redirects


async def test_stall_read_timeout(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A body that stops for longer than read_timeout raises TransientFetchError soon after."""
    url = origin.add_generated("/art.png", "png", 100_000)
    origin.fault("/art.png", FaultPlan(Fault.STALL, after_bytes=1000, seconds=30))
    started = time.monotonic()

    with pytest.raises(TransientFetchError):
        await make_fetcher(read_timeout=0.5).download(url, staging, "png")

    assert time.monotonic() - started < 5


async def test_stall_shorter_than_timeout(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A pause shorter than read_timeout is waited out, because there is no total timeout."""
    url = origin.add_generated("/art.png", "png", 100_000)
    origin.fault("/art.png", FaultPlan(Fault.STALL, after_bytes=1000, seconds=0.3))

    result = await make_fetcher(read_timeout=2).download(url, staging, "png")

    assert result.sha256 == origin.expected_sha256("/art.png")


async def test_connection_reset(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A TCP reset before any response raises TransientFetchError."""
    url = origin.add_generated("/art.png", "png", 10_000)
    # aiohttp sends a GET again once on its own after a disconnect, so both requests reset.
    origin.fault("/art.png", FaultPlan(Fault.RESET, times=2))
    fetcher = make_fetcher()

    with pytest.raises(TransientFetchError):
        await fetcher.download(url, staging, "png")
    origin.clear_faults()
    result = await fetcher.download(url, staging, "png")

    assert result.sha256 == origin.expected_sha256("/art.png")


async def test_redirect_keeps_query(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A redirect is followed and its query string reaches the next hop unchanged."""
    origin.add_generated("/final/art.png", "png", 2 * MIB, seed=5)
    location = f"/final/art.png?{PRESIGNED_QUERY}"
    origin.fault("/start/art.png", FaultPlan(Fault.REDIRECT, location=location))

    result = await make_fetcher().download(origin.url("/start/art.png"), staging, "png")

    [request] = origin.requests_for("/final/art.png")
    assert request.target == f"/final/art.png?{PRESIGNED_QUERY}"
    assert result.sha256 == origin.expected_sha256("/final/art.png")
    assert sha256_of(staging) == result.sha256


async def test_redirect_loop(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A redirect loop ends with PermanentFetchError after the redirect limit."""
    origin.fault("/loop.png", FaultPlan(Fault.REDIRECT, times=-1, location="/loop.png"))

    with pytest.raises(PermanentFetchError, match="redirects"):
        await make_fetcher().download(origin.url("/loop.png"), staging, "png")

    assert len(origin.requests_for("/loop.png")) == fetch.MAX_REDIRECTS + 1


async def test_redirect_checks_allowed_hosts(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A redirect to a host outside allowed_hosts is rejected before it is requested."""
    origin.add_generated("/final.png", "png", 1000)
    location = f"http://localhost:{origin.port}/final.png"
    origin.fault("/start.png", FaultPlan(Fault.REDIRECT, location=location))
    fetcher = make_fetcher(allowed_hosts=["127.0.0.1"])

    with pytest.raises(PermanentFetchError, match="allowed_hosts"):
        await fetcher.download(origin.url("/start.png"), staging, "png")

    assert origin.requests_for("/final.png") == []


# ---------------------------------------------------------------------------
# Limits and host checks


async def test_max_file_size(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A body larger than max_file_size raises PermanentFetchError."""
    url = origin.add_generated("/big.png", "png", 200_000)

    with pytest.raises(PermanentFetchError, match="max_file_size"):
        await make_fetcher(max_file_size=100_000).download(url, staging, "png")


async def test_max_file_size_equal(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A body exactly max_file_size long is accepted."""
    url = origin.add_generated("/art.png", "png", 100_000)

    result = await make_fetcher(max_file_size=100_000).download(url, staging, "png")

    assert result.size == 100_000


def loopback_host_name() -> str | None:
    """Return this machine's host name when it resolves only to loopback addresses, else None."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return None
    if addresses and all(address.startswith("127.") or address == "::1" for address in addresses):
        return name
    return None


LOOPBACK_HOSTS = [
    "127.0.0.1", "localhost", "LOCALHOST", "app.localhost", "0.0.0.0",
    "[::1]", "[::ffff:127.0.0.1]",
]  # fmt: skip


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_private_host_refused(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path, host: str
) -> None:
    """Loopback hosts, as literals or names, raise PrivateAddressError and send nothing."""
    origin.add_generated("/art.png", "png", 1000)
    url = f"http://{host}:{origin.port}/art.png"

    with pytest.raises(PrivateAddressError):
        await make_fetcher(allow_private_networks=False).download(url, staging, "png")

    assert origin.requests == []


async def test_private_name_resolved(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A host name that resolves to loopback is rejected by the resolver, not by its spelling."""
    name = loopback_host_name()
    if name is None:
        pytest.skip("this machine's host name does not resolve only to loopback")
    origin.add_generated("/art.png", "png", 1000)

    with pytest.raises(PrivateAddressError, match="resolves only"):
        await make_fetcher(allow_private_networks=False).download(
            f"http://{name}:{origin.port}/art.png", staging, "png"
        )

    assert origin.requests == []


def test_private_error_is_permanent() -> None:
    """PrivateAddressError is a PermanentFetchError, so the delivery fails at once."""
    assert issubclass(PrivateAddressError, PermanentFetchError)
    assert not issubclass(PrivateAddressError, TransientFetchError)


async def test_allowed_hosts_mismatch(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A host that matches no allowed_hosts pattern raises PermanentFetchError and sends nothing."""
    url = origin.add_generated("/art.png", "png", 1000)

    fetcher = make_fetcher(allowed_hosts=["*.cloudfront.net", "kornitx.example"])

    with pytest.raises(PermanentFetchError, match="allowed_hosts"):
        await fetcher.download(url, staging, "png")

    assert origin.requests == []


async def test_allowed_hosts_match(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, staging: Path
) -> None:
    """A host that matches an allowed_hosts glob is downloaded."""
    url = origin.add_generated("/art.png", "png", 1000)

    fetcher = make_fetcher(allowed_hosts=["*.cloudfront.net", "127.0.0.*"])

    result = await fetcher.download(url, staging, "png")

    assert result.size == 1000


@pytest.mark.parametrize("host", ["127.0.0.1:99999", "[::1", "127.1", "2130706433"])
async def test_invalid_url_permanent(make_fetcher: MakeFetcher, staging: Path, host: str) -> None:
    """A URL with an invalid port, bracket or legacy IPv4 form raises PermanentFetchError."""
    with pytest.raises(PermanentFetchError):
        await make_fetcher().download(f"http://{host}/art.png", staging, "png")


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/art.png", "file:///etc/passwd", "http:///art.png"]
)
async def test_url_rejected(make_fetcher: MakeFetcher, staging: Path, url: str) -> None:
    """A URL that is not http(s) or has no host raises PermanentFetchError."""
    with pytest.raises(PermanentFetchError):
        await make_fetcher().download(url, staging, "png")


# ---------------------------------------------------------------------------
# Backoff


def test_backoff_grows() -> None:
    """Each attempt's delay is between half and all of 2**(attempt-1) seconds."""
    for attempt in range(1, 8):
        ceiling = 2.0 ** (attempt - 1)
        delays = [fetch.backoff_delay(attempt, None, 1000) for _ in range(200)]

        assert min(delays) >= ceiling / 2, attempt
        assert max(delays) <= ceiling, attempt


def test_backoff_capped() -> None:
    """The delay never exceeds the maximum, however many attempts there were."""
    delays = [fetch.backoff_delay(attempt, None, 10) for attempt in range(1, 60)]

    assert max(delays) <= 10
    assert fetch.backoff_delay(50, None, 10) >= 5


def test_backoff_retry_after_floor() -> None:
    """Retry-After is a floor for the delay, itself capped by the maximum."""
    assert fetch.backoff_delay(1, 30, 300) == 30
    assert fetch.backoff_delay(1, 1000, 300) == 300
    assert fetch.backoff_delay(1, 0, 300) <= 1
    assert fetch.backoff_delay(6, 1, 300) >= 16


# ---------------------------------------------------------------------------
# Concurrency limits


class CountingServer:
    """A loopback server that responds after 0.3 s and records the most requests in flight."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.served = 0
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0.3)
        finally:
            self.active -= 1
        self.served += 1
        return web.Response(body=make_artwork("png", 5000))


@pytest.fixture
async def counting_server() -> AsyncIterator[CountingServer]:
    server = CountingServer()
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize(("concurrency", "per_host"), [(8, 2), (2, 8)])
async def test_concurrency_limits(
    counting_server: CountingServer,
    make_fetcher: MakeFetcher,
    tmp_path: Path,
    concurrency: int,
    per_host: int,
) -> None:
    """Five downloads never have more requests in flight than per_host or concurrency allows."""
    fetcher = make_fetcher(concurrency=concurrency, per_host=per_host)
    urls = [f"{counting_server.base_url}/{index}.png" for index in range(5)]
    downloads = [
        fetcher.download(url, tmp_path / f"{index}.part", "png") for index, url in enumerate(urls)
    ]

    results = await asyncio.wait_for(asyncio.gather(*downloads), timeout=20)

    assert len(results) == 5
    assert counting_server.served == 5
    assert counting_server.peak == 2


async def test_per_host_limit_slow_origin(
    origin: ArtworkOrigin, make_fetcher: MakeFetcher, tmp_path: Path
) -> None:
    """With per_host 2, SLOW requests to the origin arrive in waves of at most two."""
    for index in range(5):
        origin.add_generated(f"/slow-{index}.png", "png", 40_000)
        origin.fault(f"/slow-{index}.png", FaultPlan(Fault.SLOW, rate=100_000))
    fetcher = make_fetcher(per_host=2)
    urls = [origin.url(f"/slow-{index}.png") for index in range(5)]
    downloads = [
        fetcher.download(url, tmp_path / f"{index}.part", "png") for index, url in enumerate(urls)
    ]

    await asyncio.wait_for(asyncio.gather(*downloads), timeout=20)

    # Each body takes about 0.4 s at 100 kB/s, so no three requests can start within 0.3 s.
    starts = sorted(request.time for request in origin.requests)
    assert len(starts) == 5
    for first, third in zip(starts, starts[2:], strict=False):
        assert third - first > 0.3
