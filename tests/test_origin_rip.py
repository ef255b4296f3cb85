"""Tests of the artwork origin and the simulated RIP, against real sockets and folders."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yarl

from hotfolder_feeder.origin import (
    SIGNATURES,
    ArtworkOrigin,
    Fault,
    FaultPlan,
    artwork_sha256,
    iter_artwork,
    make_artwork,
)
from hotfolder_feeder.rip import SimulatedRip, TakenFile

MIB = 1024 * 1024
PRESIGNED_QUERY = "X-Amz-Signature=ab%2Fcd&X-Amz-Date=20261204T000000Z"


@pytest.fixture
async def origin() -> AsyncIterator[ArtworkOrigin]:
    async with ArtworkOrigin() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def fetch(session: aiohttp.ClientSession, url: str | yarl.URL, **kwargs: object) -> bytes:
    async with session.get(url, **kwargs) as response:  # type: ignore[arg-type]
        return await response.read()


def write_atomically(hotfolder: Path, name: str, body: bytes) -> None:
    """Write a file the way the feeder does: stage it in a dot-folder, then rename it in."""
    staging = hotfolder / ".staging"
    staging.mkdir(exist_ok=True)
    part = staging / f"{name}.part"
    part.write_bytes(body)
    part.rename(hotfolder / name)


# ---------------------------------------------------------------------------
# make_artwork


@pytest.mark.parametrize("kind", ["png", "jpg", "pdf", "tif"])
def test_make_artwork_signature(kind: str) -> None:
    """Generated artwork starts with the format's signature and has the requested size."""
    body = make_artwork(kind, 100_000, seed=7)

    assert body.startswith(SIGNATURES[kind])
    assert len(body) == 100_000


def test_make_artwork_deterministic() -> None:
    """The same kind, size and seed give the same bytes, and another seed differs."""
    assert make_artwork("png", 3 * MIB, seed=1) == make_artwork("png", 3 * MIB, seed=1)
    assert make_artwork("png", 3 * MIB, seed=1) != make_artwork("png", 3 * MIB, seed=2)


def test_make_artwork_tiny_size() -> None:
    """A size below the signature length gives the signature cut short."""
    assert make_artwork("png", 3) == SIGNATURES["png"][:3]
    assert make_artwork("pdf", 0) == b""


def test_iter_artwork_slices() -> None:
    """Any byte window of iter_artwork equals the same slice of make_artwork."""
    size = 2 * MIB + 12_345
    whole = make_artwork("jpg", size, seed=4)

    for start, end in [(0, 10), (5, 300_000), (262_143, 262_145), (size - 7, size), (MIB, size)]:
        window = b"".join(iter_artwork("jpg", size, 4, start, end))
        assert window == whole[start:end], (start, end)


def test_make_artwork_unknown_kind() -> None:
    """An unknown kind raises ValueError that lists the known kinds."""
    with pytest.raises(ValueError, match="png"):
        make_artwork("gif", 10)


# ---------------------------------------------------------------------------
# ArtworkOrigin: normal serving


async def test_origin_serves_bytes(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """Added bytes are served with 200, Content-Length and a matching SHA-256."""
    body = make_artwork("png", 300_000, seed=1)
    url = origin.add("/auto-crop/4f/af/artwork 1.png", body)

    async with session.get(url) as response:
        received = await response.read()
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(body))
        assert response.headers["Content-Type"] == "image/png"

    assert received == body
    assert hashlib.sha256(received).hexdigest() == origin.expected_sha256(
        "/auto-crop/4f/af/artwork 1.png"
    )
    assert url.startswith(origin.base_url + "/auto-crop/4f/af/artwork%201.png")


async def test_origin_unknown_path(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """A path that was never added gets 404."""
    async with session.get(origin.base_url + "/missing.png") as response:
        assert response.status == 404


async def test_origin_head(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """HEAD returns the headers of GET without a body."""
    url = origin.add_generated("/a.pdf", "pdf", 5000)

    async with session.head(url) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == "5000"
        assert response.headers["Accept-Ranges"] == "bytes"
        assert await response.read() == b""


async def test_origin_generated_sha256(
    origin: ArtworkOrigin, session: aiohttp.ClientSession
) -> None:
    """Generated content of a few MiB hashes to expected_sha256 and artwork_sha256."""
    size = 5 * MIB + 3
    url = origin.add_generated("/big.tif", "tif", size, seed=9)

    digest = hashlib.sha256()
    async with session.get(url) as response:
        assert response.headers["Content-Length"] == str(size)
        async for chunk in response.content.iter_chunked(MIB):
            digest.update(chunk)

    assert digest.hexdigest() == origin.expected_sha256("/big.tif")
    assert digest.hexdigest() == artwork_sha256("tif", size, 9)
    assert origin.expected_size("/big.tif") == size


async def test_origin_serves_file(
    origin: ArtworkOrigin, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A file added from disk is served whole and by range."""
    file = tmp_path / "art.jpg"
    body = make_artwork("jpg", 3 * MIB + 1, seed=5)
    file.write_bytes(body)
    url = origin.add_file("/files/art.jpg", file)

    assert await fetch(session, url) == body
    assert await fetch(session, url, headers={"Range": f"bytes={MIB}-"}) == body[MIB:]
    assert origin.expected_sha256("/files/art.jpg") == hashlib.sha256(body).hexdigest()


async def test_origin_add_missing_file(origin: ArtworkOrigin, tmp_path: Path) -> None:
    """add_file of a file that does not exist raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError, match="nope.png"):
        origin.add_file("/nope.png", tmp_path / "nope.png")


# ---------------------------------------------------------------------------
# ArtworkOrigin: ranges and raw request targets


async def test_origin_range_resume(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """Range: bytes=N- gets 206 with Content-Range, and the parts join to the whole body."""
    size = 2 * MIB + 100
    url = origin.add_generated("/resume.png", "png", size, seed=2)
    whole = make_artwork("png", size, seed=2)

    async with session.get(url, headers={"Range": "bytes=1000000-"}) as response:
        tail = await response.read()
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 1000000-{size - 1}/{size}"
        assert response.headers["Content-Length"] == str(size - 1_000_000)

    assert whole[:1_000_000] + tail == whole
    assert origin.requests_for("/resume.png")[0].range == "bytes=1000000-"


async def test_origin_range_forms(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """Closed and suffix ranges are served, and a start past the end gets 416."""
    body = make_artwork("pdf", 1000)
    url = origin.add("/r.pdf", body)

    assert await fetch(session, url, headers={"Range": "bytes=10-19"}) == body[10:20]
    assert await fetch(session, url, headers={"Range": "bytes=-5"}) == body[-5:]

    async with session.get(url, headers={"Range": "bytes=1000-"}) as response:
        assert response.status == 416
        assert response.headers["Content-Range"] == "bytes */1000"


async def test_origin_if_range_mismatch(
    origin: ArtworkOrigin, session: aiohttp.ClientSession
) -> None:
    """A Range with an If-Range that does not match the ETag gets the whole body with 200."""
    body = make_artwork("png", 1000)
    url = origin.add("/etag.png", body)

    async with session.get(url, headers={"Range": "bytes=10-", "If-Range": '"old"'}) as response:
        assert response.status == 200
        assert await response.read() == body
        etag = response.headers["ETag"]

    async with session.get(url, headers={"Range": "bytes=10-", "If-Range": etag}) as response:
        assert response.status == 206


async def test_origin_ranges_disabled(session: aiohttp.ClientSession) -> None:
    """With ranges=False the origin ignores Range and sends the whole body with 200."""
    body = make_artwork("png", 50_000)
    async with ArtworkOrigin(ranges=False) as origin:
        url = origin.add("/a.png", body)

        async with session.get(url, headers={"Range": "bytes=100-"}) as response:
            assert response.status == 200
            assert "Content-Range" not in response.headers
            assert "Accept-Ranges" not in response.headers
            assert await response.read() == body


async def test_origin_raw_query_recorded(
    origin: ArtworkOrigin, session: aiohttp.ClientSession
) -> None:
    """The query string of a presigned URL is recorded byte for byte, %2F escapes kept."""
    url = origin.add(f"/a.png?{PRESIGNED_QUERY}", make_artwork("png", 100))
    assert url == f"{origin.base_url}/a.png?{PRESIGNED_QUERY}"

    await fetch(session, yarl.URL(url, encoded=True))

    [record] = origin.requests_for("/a.png")
    assert record.method == "GET"
    assert record.query_string == PRESIGNED_QUERY
    assert record.target == f"/a.png?{PRESIGNED_QUERY}"


# ---------------------------------------------------------------------------
# ArtworkOrigin: faults


async def test_origin_status_fault(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """A STATUS fault responds with its status and Retry-After header."""
    url = origin.add("/a.png", make_artwork("png", 100))
    origin.fault("/a.png", FaultPlan(Fault.STATUS, status=429, retry_after="7"))

    async with session.get(url) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"
    assert origin.requests_for("/a.png")[0].fault is Fault.STATUS


async def test_origin_status_without_content(
    origin: ArtworkOrigin, session: aiohttp.ClientSession
) -> None:
    """A fault applies to a path that has no content, and then the path gets 404."""
    origin.fault("/gone.png", FaultPlan(Fault.STATUS, status=503))

    async with session.get(origin.base_url + "/gone.png") as response:
        assert response.status == 503
        assert "Retry-After" not in response.headers
    async with session.get(origin.base_url + "/gone.png") as response:
        assert response.status == 404


async def test_origin_html_page(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """An HTML_ERROR_PAGE fault responds 200 with an HTML document in place of the artwork."""
    url = origin.add("/a.png", make_artwork("png", 100))
    origin.fault("/a.png", FaultPlan(Fault.HTML_ERROR_PAGE))

    async with session.get(url) as response:
        body = await response.read()
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")

    assert body.startswith(b"<!DOCTYPE html>")
    assert not body.startswith(SIGNATURES["png"])


async def test_origin_xml_page(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """An XML_ERROR_PAGE fault responds 200 with an S3-style AccessDenied document."""
    url = origin.add("/a.png", make_artwork("png", 100))
    origin.fault("/a.png", FaultPlan(Fault.XML_ERROR_PAGE))

    async with session.get(url) as response:
        body = await response.read()
        assert response.status == 200

    assert body.startswith(b"<?xml")
    assert b"<Error><Code>AccessDenied</Code>" in body


async def test_origin_truncate(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """A TRUNCATE fault declares the full length, sends after_bytes, then closes."""
    size = 2 * MIB
    url = origin.add_generated("/a.png", "png", size)
    origin.fault("/a.png", FaultPlan(Fault.TRUNCATE, after_bytes=100_000))

    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(url) as response:
            assert response.headers["Content-Length"] == str(size)
            async for chunk in response.content.iter_any():
                received += chunk

    assert bytes(received) == make_artwork("png", size)[:100_000]


async def test_origin_truncate_at_zero(
    origin: ArtworkOrigin, session: aiohttp.ClientSession
) -> None:
    """A TRUNCATE fault after 0 bytes still sends the status and headers before closing."""
    url = origin.add("/a.png", make_artwork("png", 1000))
    origin.fault("/a.png", FaultPlan(Fault.TRUNCATE, after_bytes=0))

    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == "1000"
            await response.read()


async def test_origin_file_removed(
    origin: ArtworkOrigin, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A file removed from disk after add_file gets 404."""
    file = tmp_path / "art.png"
    file.write_bytes(make_artwork("png", 100))
    url = origin.add_file("/art.png", file)
    file.unlink()

    async with session.get(url) as response:
        assert response.status == 404


async def test_origin_stall(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """A STALL fault sends after_bytes then nothing, so a client read timeout fires."""
    url = origin.add_generated("/a.png", "png", MIB)
    origin.fault("/a.png", FaultPlan(Fault.STALL, after_bytes=1000, seconds=5.0))
    timeout = aiohttp.ClientTimeout(sock_read=0.3)

    received = bytearray()
    began = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(url, timeout=timeout) as response:
            async for chunk in response.content.iter_any():
                received += chunk

    assert len(received) == 1000
    assert time.monotonic() - began < 4.0


async def test_origin_stall_then_rest(
    origin: ArtworkOrigin, session: aiohttp.ClientSession
) -> None:
    """After a stall shorter than the read timeout, the rest of the body arrives."""
    body = make_artwork("png", 200_000)
    url = origin.add("/a.png", body)
    origin.fault("/a.png", FaultPlan(Fault.STALL, after_bytes=50_000, seconds=0.3))

    began = time.monotonic()
    assert await fetch(session, url, timeout=aiohttp.ClientTimeout(sock_read=5)) == body
    assert time.monotonic() - began >= 0.3


async def test_origin_reset(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """A RESET fault drops the connection before any response, then the path serves normally."""
    body = make_artwork("png", 1000)
    url = origin.add("/a.png", body)
    # aiohttp 3.14 sends an idempotent request a second time after a disconnect, so
    # the fault must apply twice for the client to see it.
    origin.fault("/a.png", FaultPlan(Fault.RESET, times=2))

    with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
        await fetch(session, url)

    assert [record.fault for record in origin.requests_for("/a.png")] == [Fault.RESET] * 2
    assert await fetch(session, url) == body


async def test_origin_wrong_length(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """A WRONG_LENGTH fault declares more bytes than it sends, then closes."""
    url = origin.add("/a.png", make_artwork("png", 1000))
    origin.fault("/a.png", FaultPlan(Fault.WRONG_LENGTH, after_bytes=500))

    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(url) as response:
            assert response.headers["Content-Length"] == "1500"
            await response.read()


async def test_origin_redirect_query(
    origin: ArtworkOrigin, session: aiohttp.ClientSession
) -> None:
    """A REDIRECT fault sends 302 with the Location and its query string exactly as given."""
    body = make_artwork("png", 1000)
    origin.add("/real.png", body)
    origin.fault("/old.png", FaultPlan(Fault.REDIRECT, location=f"/real.png?{PRESIGNED_QUERY}"))

    async with session.get(origin.base_url + "/old.png", allow_redirects=False) as response:
        assert response.status == 302
        location = response.headers["Location"]
    assert location == f"{origin.base_url}/real.png?{PRESIGNED_QUERY}"

    assert await fetch(session, yarl.URL(location, encoded=True)) == body
    [record] = origin.requests_for("/real.png")
    assert record.query_string == PRESIGNED_QUERY


async def test_origin_slow(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """A SLOW fault throttles the body to its rate in bytes per second."""
    body = make_artwork("png", 100_000)
    url = origin.add("/a.png", body)
    origin.fault("/a.png", FaultPlan(Fault.SLOW, rate=200_000))

    began = time.monotonic()
    assert await fetch(session, url) == body
    assert time.monotonic() - began >= 0.4


async def test_origin_fault_times(origin: ArtworkOrigin, session: aiohttp.ClientSession) -> None:
    """A fault applies to `times` requests, then the next queued plan, then normal serving."""
    url = origin.add("/a.png", make_artwork("png", 1000))
    origin.fault("/a.png", FaultPlan(Fault.STATUS, times=2, status=503))
    origin.fault("/a.png", FaultPlan(Fault.STATUS, times=1, status=500))

    statuses = []
    for _ in range(5):
        async with session.get(url) as response:
            statuses.append(response.status)

    assert statuses == [503, 503, 500, 200, 200]


async def test_origin_fault_forever(
    origin: ArtworkOrigin, session: aiohttp.ClientSession
) -> None:
    """A fault with times=-1 applies until clear_faults."""
    url = origin.add("/a.png", make_artwork("png", 1000))
    origin.fault("/a.png", FaultPlan(Fault.STATUS, times=-1, status=403))

    for _ in range(4):
        async with session.get(url) as response:
            assert response.status == 403

    origin.clear_faults("/a.png")
    async with session.get(url) as response:
        assert response.status == 200


def test_fault_plan_invalid() -> None:
    """Plans that cannot be carried out raise ValueError."""
    invalid = [
        FaultPlan(Fault.STATUS, times=0),
        FaultPlan(Fault.STATUS, status=99),
        FaultPlan(Fault.REDIRECT),
        FaultPlan(Fault.SLOW),
        FaultPlan(Fault.TRUNCATE, after_bytes=-1),
    ]
    for plan in invalid:
        with pytest.raises(ValueError):
            plan.validate()


async def test_origin_stop_ends_stall(session: aiohttp.ClientSession) -> None:
    """stop() ends a stalled response at once instead of waiting for the stall."""
    origin = ArtworkOrigin()
    await origin.start()
    url = origin.add_generated("/a.png", "png", MIB)
    origin.fault("/a.png", FaultPlan(Fault.STALL, after_bytes=10, seconds=60))

    async with session.get(url) as response:
        await response.content.readexactly(10)
        began = time.monotonic()
        await asyncio.wait_for(origin.stop(), timeout=5)

    assert time.monotonic() - began < 3


# ---------------------------------------------------------------------------
# SimulatedRip


async def test_rip_takes_files(tmp_path: Path) -> None:
    """Files in the hot folder are read, checked against expected digests and deleted."""
    bodies = {f"job_{index}.png": make_artwork("png", 1000 + index, seed=index) for index in range(3)}
    expected = {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}

    async with SimulatedRip(tmp_path, interval=0.05, expected=expected) as rip:
        for name, body in bodies.items():
            write_atomically(tmp_path, name, body)
        taken = await rip.wait_taken(3, timeout=5)

    assert {file.name: file.sha256 for file in taken} == expected
    assert {file.name: file.size for file in taken} == {n: len(b) for n, b in bodies.items()}
    assert rip.problems == []
    assert sorted(path.name for path in tmp_path.iterdir()) == [".staging"]


async def test_rip_ignores_hidden(tmp_path: Path) -> None:
    """Dot-files, .part files and subfolders, dot-folders included, are left alone."""
    staging = tmp_path / ".staging"
    staging.mkdir()
    (staging / "staged.png.part").write_bytes(b"x")
    (staging / "staged.png").write_bytes(b"x")
    (tmp_path / "downloading.png.part").write_bytes(b"x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "subfolder").mkdir()
    (tmp_path / "subfolder" / "inner.png").write_bytes(b"x")

    async with SimulatedRip(tmp_path, interval=0.05) as rip:
        # Each scan lists the whole folder, so once a file written later is taken,
        # the scans that took it have also passed over the files written above.
        write_atomically(tmp_path, "marker.png", make_artwork("png", 100))
        taken = await rip.wait_taken(1, timeout=5)

    assert [file.name for file in taken] == ["marker.png"]
    assert (staging / "staged.png.part").exists()
    assert (staging / "staged.png").exists()
    assert (tmp_path / "downloading.png.part").exists()
    assert (tmp_path / ".hidden.png").exists()
    assert (tmp_path / "subfolder" / "inner.png").exists()
    assert rip.problems == []


async def test_rip_pause_resume(tmp_path: Path) -> None:
    """A paused RIP takes nothing, and takes the waiting file after resume."""
    async with SimulatedRip(tmp_path, interval=0.05) as rip:
        rip.pause()
        write_atomically(tmp_path, "a.png", make_artwork("png", 100))

        with pytest.raises(TimeoutError):
            await rip.wait_taken(1, timeout=0.5)
        assert (tmp_path / "a.png").exists()

        rip.resume()
        taken = await rip.wait_taken(1, timeout=5)

    assert [file.name for file in taken] == ["a.png"]
    assert not (tmp_path / "a.png").exists()


async def test_rip_mismatch(tmp_path: Path) -> None:
    """A digest that differs from expected, and a name not expected, are problems."""
    expected = {"a.png": "0" * 64}

    async with SimulatedRip(tmp_path, interval=0.05, expected=expected) as rip:
        write_atomically(tmp_path, "a.png", make_artwork("png", 100))
        write_atomically(tmp_path, "b.png", make_artwork("png", 100))
        await rip.wait_taken(2, timeout=5)

    assert any(problem.startswith("mismatch: a.png sha256") for problem in rip.problems)
    assert any(problem.startswith("unexpected: b.png") for problem in rip.problems)
    assert len(rip.problems) == 2


async def test_rip_duplicate(tmp_path: Path) -> None:
    """A name taken twice is a duplicate problem."""
    body = make_artwork("png", 100)

    async with SimulatedRip(tmp_path, interval=0.05) as rip:
        write_atomically(tmp_path, "a.png", body)
        await rip.wait_taken(1, timeout=5)
        write_atomically(tmp_path, "a.png", body)
        await rip.wait_taken(2, timeout=5)

    assert rip.problems == ["duplicate: a.png taken twice"]


async def test_rip_signature_problem(tmp_path: Path) -> None:
    """An HTML page saved under a .png name is a signature problem."""
    async with SimulatedRip(tmp_path, interval=0.05) as rip:
        write_atomically(tmp_path, "a.png", b"<!DOCTYPE html><html></html>")
        await rip.wait_taken(1, timeout=5)

    assert len(rip.problems) == 1
    assert rip.problems[0].startswith("signature: a.png")


async def test_rip_slow(tmp_path: Path) -> None:
    """With `slow` set, a file stays in the folder that long before it is deleted."""
    async with SimulatedRip(tmp_path, interval=0.05) as rip:
        rip.slow = 0.4
        written = time.time()
        write_atomically(tmp_path, "a.png", make_artwork("png", 100))
        [taken] = await rip.wait_taken(1, timeout=5)

    assert taken.taken_at - written >= 0.4


async def test_rip_settle(tmp_path: Path) -> None:
    """With `settle` set, a file is taken only after it stayed unchanged that long."""
    async with SimulatedRip(tmp_path, interval=0.05, settle=0.4) as rip:
        written = time.time()
        write_atomically(tmp_path, "a.png", make_artwork("png", 100))
        [taken] = await rip.wait_taken(1, timeout=5)

    assert taken.taken_at - written >= 0.4


async def test_rip_on_take(tmp_path: Path) -> None:
    """on_take is called with each file taken."""
    seen: list[TakenFile] = []

    async with SimulatedRip(tmp_path, interval=0.05, on_take=seen.append) as rip:
        write_atomically(tmp_path, "a.pdf", make_artwork("pdf", 100))
        taken = await rip.wait_taken(1, timeout=5)

    assert seen == taken


async def test_rip_folder_appears(tmp_path: Path) -> None:
    """A hot folder missing at start, like an unmounted share, is polled until it appears."""
    hotfolder = tmp_path / "share"

    async with SimulatedRip(hotfolder, interval=0.05) as rip:
        hotfolder.mkdir()
        write_atomically(hotfolder, "a.tif", make_artwork("tif", 100))
        taken = await rip.wait_taken(1, timeout=5)

    assert [file.name for file in taken] == ["a.tif"]


async def test_rip_wait_timeout_message(tmp_path: Path) -> None:
    """wait_taken times out with a message naming what was taken and what is in the folder."""
    (tmp_path / ".staging").mkdir()
    (tmp_path / ".staging" / "b.png.part").write_bytes(b"x")

    async with SimulatedRip(tmp_path, interval=0.05) as rip:
        write_atomically(tmp_path, "a.png", make_artwork("png", 100))
        await rip.wait_taken(1, timeout=5)

        with pytest.raises(TimeoutError) as caught:
            await rip.wait_taken(2, timeout=0.3)

    message = str(caught.value)
    assert "waiting for 2 files" in message
    assert "1 taken (a.png)" in message
    assert ".staging/ [b.png.part]" in message
