"""A local artwork origin for tests and the demo.

An aiohttp server on 127.0.0.1 serves artwork bytes under URL paths and misbehaves on
request the way CDNs and object stores do: error statuses, error pages sent with 200,
cut-short bodies, stalls, connection resets, wrong lengths, redirects and slow links.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import mimetypes
import pathlib
import random
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Protocol
from urllib.parse import quote

import structlog
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

log = structlog.get_logger(__name__)

SIGNATURES: dict[str, bytes] = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpg": b"\xff\xd8\xff\xe0",
    "pdf": b"%PDF-1.7\n",
    "tif": b"II*\x00",
}
KIND_ALIASES = {"jpeg": "jpg", "tiff": "tif"}
CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "pdf": "application/pdf",
    "tif": "image/tiff",
}

BLOCK_SIZE = 256 * 1024
"""Size of one generated filler block and of one chunk written to the socket."""

XML_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
    "<RequestId>4442587FB7D0A2F9</RequestId>"
    "<HostId>bG9jYWwgYXJ0d29yayBvcmlnaW4=</HostId></Error>\n"
)
HTML_ERROR_BODY = (
    "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n"
    "<body><h1>Service Unavailable</h1>"
    "<p>The server is temporarily unable to service your request.</p></body></html>\n"
)

_RANGE_PATTERN = re.compile(r"bytes=(\d*)-(\d*)")


# ---------------------------------------------------------------------------
# Generated artwork


def normalize_kind(kind: str) -> str:
    """Return the canonical kind ("png", "jpg", "pdf", "tif") for a kind or its alias.

    Raises ValueError for any other kind.
    """
    canonical = KIND_ALIASES.get(kind.lower(), kind.lower())
    if canonical not in SIGNATURES:
        raise ValueError(f"unknown artwork kind {kind!r}: expected one of {sorted(SIGNATURES)}")
    return canonical


@lru_cache(maxsize=64)
def _filler_pool(kind: str, seed: int) -> bytes:
    return random.Random(f"{kind}:{seed}").randbytes(BLOCK_SIZE)


def _filler_block(kind: str, seed: int, index: int) -> bytes:
    # Each block is the same random pool, rotated by an offset that depends on the
    # block index. Copying is far faster than drawing fresh random bytes. Because the
    # multiplier is odd, the first 2**18 blocks (64 GiB) all get different rotations,
    # so a block written at the wrong place changes the SHA-256.
    pool = _filler_pool(kind, seed)
    rotation = (index * 40503) % BLOCK_SIZE
    return pool[rotation:] + pool[:rotation]


def iter_artwork(
    kind: str, size: int, seed: int = 0, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """Yield bytes `start` to `end` (exclusive) of `make_artwork(kind, size, seed)`.

    Chunks are at most BLOCK_SIZE bytes, so memory stays constant for any size.
    """
    kind = normalize_kind(kind)
    end = size if end is None else min(end, size)
    signature = SIGNATURES[kind][:size]
    position = max(start, 0)

    while position < end:
        index, offset = divmod(position, BLOCK_SIZE)
        block = _filler_block(kind, seed, index)
        if index == 0:
            block = signature + block[len(signature) :]

        stop = min(BLOCK_SIZE, end - index * BLOCK_SIZE)
        yield block[offset:stop]
        position = index * BLOCK_SIZE + stop


def make_artwork(kind: str, size: int, seed: int = 0) -> bytes:
    """Build `size` bytes of artwork: the real signature of `kind`, then deterministic filler.

    The same arguments always give the same bytes. A size shorter than the signature
    gives the signature cut to that size.
    """
    return b"".join(iter_artwork(kind, size, seed))


def artwork_sha256(kind: str, size: int, seed: int = 0) -> str:
    """Compute the hex SHA-256 of `make_artwork(kind, size, seed)` without holding it in memory."""
    digest = hashlib.sha256()
    for chunk in iter_artwork(kind, size, seed):
        digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# Content sources


class _Content(Protocol):
    content_type: str

    def size(self) -> int: ...

    def etag(self) -> str: ...

    def chunks(self, start: int, end: int) -> Iterator[bytes]: ...

    def sha256(self) -> str: ...


def _guess_content_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


class _BytesContent:
    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self._sha256 = hashlib.sha256(body).hexdigest()

    def size(self) -> int:
        return len(self.body)

    def etag(self) -> str:
        return f'"{self._sha256[:32]}"'

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        view = memoryview(self.body)
        for position in range(start, end, BLOCK_SIZE):
            yield bytes(view[position : min(position + BLOCK_SIZE, end)])

    def sha256(self) -> str:
        return self._sha256


class _FileContent:
    def __init__(self, file: pathlib.Path, content_type: str) -> None:
        self.file = file
        self.content_type = content_type
        self._sha256: tuple[tuple[int, int], str] | None = None

    def size(self) -> int:
        return self.file.stat().st_size

    def etag(self) -> str:
        stat = self.file.stat()
        return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        with self.file.open("rb") as handle:
            handle.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = handle.read(min(BLOCK_SIZE, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def sha256(self) -> str:
        # The digest is cached per (size, mtime), so a file changed on disk is hashed again.
        stat = self.file.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        if self._sha256 is None or self._sha256[0] != key:
            digest = hashlib.sha256()
            for chunk in self.chunks(0, stat.st_size):
                digest.update(chunk)
            self._sha256 = (key, digest.hexdigest())
        return self._sha256[1]


class _GeneratedContent:
    def __init__(self, kind: str, size: int, seed: int) -> None:
        self.kind = normalize_kind(kind)
        self.length = size
        self.seed = seed
        self.content_type = CONTENT_TYPES[self.kind]
        self._sha256: str | None = None

    def size(self) -> int:
        return self.length

    def etag(self) -> str:
        return f'"generated-{self.kind}-{self.length:x}-{self.seed:x}"'

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        return iter_artwork(self.kind, self.length, self.seed, start, end)

    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = artwork_sha256(self.kind, self.length, self.seed)
        return self._sha256


# ---------------------------------------------------------------------------
# Faults and request records


class Fault(enum.Enum):
    """A way for the origin to misbehave on a request."""

    NONE = "none"
    STATUS = "status"
    HTML_ERROR_PAGE = "html_error_page"
    XML_ERROR_PAGE = "xml_error_page"
    TRUNCATE = "truncate"
    STALL = "stall"
    RESET = "reset"
    WRONG_LENGTH = "wrong_length"
    REDIRECT = "redirect"
    SLOW = "slow"


@dataclass
class FaultPlan:
    """Fault to apply to the next `times` requests of a path, where -1 means forever.

    How each fault reads the fields:
    - STATUS: responds with `status` and a short text body, plus `Retry-After: retry_after`
      when it is set.
    - HTML_ERROR_PAGE, XML_ERROR_PAGE: status 200 with an HTML page or an S3-style
      AccessDenied XML document in place of the artwork.
    - TRUNCATE: declares the full Content-Length, sends `after_bytes` bytes, then closes.
    - STALL: sends `after_bytes` bytes, sends nothing for `seconds` with the connection
      open, then sends the rest.
    - RESET: resets the TCP connection (RST) before any response.
    - WRONG_LENGTH: declares a Content-Length `max(after_bytes, 1)` bytes larger than the
      body, sends the whole body, then closes.
    - REDIRECT: 302 to `location`. A location starting with "/" is made absolute on this
      origin, and its query string is sent exactly as given.
    - SLOW: sends the body at `rate` bytes per second.
    All faults that send a body honour Range requests like a normal response.
    """

    fault: Fault
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    after_bytes: int = 0
    seconds: float = 0.0
    location: str | None = None
    rate: int = 0

    def validate(self) -> None:
        """Raise ValueError when the plan cannot be carried out."""
        if self.times == 0 or self.times < -1:
            raise ValueError(f"invalid times {self.times}: expected -1 (forever) or at least 1")
        if self.fault is Fault.STATUS and not 100 <= self.status <= 599:
            raise ValueError(f"invalid status {self.status}: expected 100 to 599")
        if self.fault is Fault.REDIRECT and not self.location:
            raise ValueError("a REDIRECT fault needs a location")
        if self.fault is Fault.SLOW and self.rate <= 0:
            raise ValueError(f"invalid rate {self.rate}: a SLOW fault needs bytes/s above 0")
        if self.after_bytes < 0 or self.seconds < 0:
            raise ValueError("after_bytes and seconds must not be negative")


@dataclass
class _ActivePlan:
    plan: FaultPlan
    remaining: int


@dataclass(frozen=True)
class RequestRecord:
    """One request as the origin received it."""

    method: str
    path: str
    """Decoded path without the query string: the key that `add` and `fault` use."""
    query_string: str
    """Query string exactly as received, escapes such as %2F kept."""
    target: str
    """Request target exactly as received: raw path and query string."""
    headers: CIMultiDictProxy[str]
    time: float
    """time.time() when the request arrived."""
    fault: Fault = Fault.NONE
    """Fault applied to this request."""

    @property
    def range(self) -> str | None:
        """Value of the Range header, if any."""
        return self.headers.get("Range")


def _split_path(path: str) -> tuple[str, str]:
    if not path.startswith("/"):
        raise ValueError(f"invalid path {path!r}: must start with '/'")
    route, _, query = path.partition("?")
    return route, query


# ---------------------------------------------------------------------------
# The server


class ArtworkOrigin:
    """An aiohttp server on 127.0.0.1 that serves artwork and misbehaves on request.

    With `ranges=False` the origin ignores Range headers and always sends the whole
    body with 200, like origins that do not support resume.
    """

    def __init__(self, *, port: int = 0, ranges: bool = True) -> None:
        self.port = port
        self.ranges = ranges
        self.base_url = ""
        self.requests: list[RequestRecord] = []
        self._contents: dict[str, _Content] = {}
        self._faults: dict[str, deque[_ActivePlan]] = {}
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Start listening on 127.0.0.1 and set `base_url`."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)

        # Stalled and slow handlers end when _stopping is set. The short shutdown timeout
        # caps how long stop() waits for any other handler, where aiohttp waits 60 s.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()

        self._runner = runner
        self._stopping.clear()
        host, port = runner.addresses[0][:2]
        self.port = port
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop the server and end requests still in flight."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ArtworkOrigin:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- content -----------------------------------------------------------

    def url(self, path: str) -> str:
        """Return the full URL of `path`, quoting the path and keeping any query string as given."""
        route, query = _split_path(path)
        url = self.base_url + quote(route, safe="/-._~!$&'()*+,;=:@")
        return f"{url}?{query}" if query else url

    def add(self, path: str, body: bytes) -> str:
        """Serve `body` under `path` and return its URL.

        `path` is the decoded path, such as "/auto-crop/4f/af/5d.png". A query string
        after "?" is not part of the key: it is only appended, unchanged, to the URL.
        """
        route, _ = _split_path(path)
        self._contents[route] = _BytesContent(body, _guess_content_type(route))
        return self.url(path)

    def add_file(self, path: str, file: pathlib.Path) -> str:
        """Serve a file from disk under `path`, read in chunks on each request, and return its URL."""
        route, _ = _split_path(path)
        file = pathlib.Path(file)
        if not file.is_file():
            raise FileNotFoundError(f"artwork file not found: {file}")
        self._contents[route] = _FileContent(file, _guess_content_type(route))
        return self.url(path)

    def add_generated(self, path: str, kind: str, size: int, seed: int = 0) -> str:
        """Serve `make_artwork(kind, size, seed)` under `path`, generated while it streams.

        Any size works, 2 GiB included, because the body is never held in memory.
        `artwork_sha256(kind, size, seed)` recomputes its digest.
        """
        route, _ = _split_path(path)
        if size < 0:
            raise ValueError(f"invalid size {size}: must not be negative")
        self._contents[route] = _GeneratedContent(kind, size, seed)
        return self.url(path)

    def expected_sha256(self, path: str) -> str:
        """Return the hex SHA-256 of the body served under `path`.

        Runs in the calling thread and reads files or generated content whole, which
        takes seconds for multi-GiB bodies. The result is cached.
        """
        route, _ = _split_path(path)
        return self._content(route).sha256()

    def expected_size(self, path: str) -> int:
        """Return the size in bytes of the body served under `path`."""
        route, _ = _split_path(path)
        return self._content(route).size()

    def _content(self, route: str) -> _Content:
        try:
            return self._contents[route]
        except KeyError:
            raise KeyError(f"no artwork added under {route!r}") from None

    # -- faults and records ------------------------------------------------

    def fault(self, path: str, plan: FaultPlan) -> None:
        """Apply `plan` to the next `plan.times` requests of `path`, then serve normally.

        Plans for one path queue in the order given. The path need not have content,
        because a status, an error page, a reset or a redirect needs none.
        """
        plan.validate()
        route, _ = _split_path(path)
        self._faults.setdefault(route, deque()).append(_ActivePlan(plan, plan.times))

    def clear_faults(self, path: str | None = None) -> None:
        """Drop the queued fault plans of `path`, or of every path when `path` is None."""
        if path is None:
            self._faults.clear()
            return
        route, _ = _split_path(path)
        self._faults.pop(route, None)

    def requests_for(self, path: str) -> list[RequestRecord]:
        """Return the requests received for `path`, oldest first, whatever their query string."""
        route, _ = _split_path(path)
        return [record for record in self.requests if record.path == route]

    def _take_fault(self, route: str) -> FaultPlan | None:
        queue = self._faults.get(route)
        if not queue:
            return None

        active = queue[0]
        if active.remaining > 0:
            active.remaining -= 1
            if active.remaining == 0:
                queue.popleft()
        return active.plan

    def _record(self, request: web.Request, route: str, fault: Fault) -> None:
        target = request.raw_path
        record = RequestRecord(
            method=request.method,
            path=route,
            query_string=target.partition("?")[2],
            target=target,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            time=time.time(),
            fault=fault,
        )
        self.requests.append(record)

    # -- request handling --------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = request.rel_url.path
        plan = self._take_fault(route) or FaultPlan(Fault.NONE)
        self._record(request, route, plan.fault)

        if plan.fault is Fault.RESET:
            return _reset_connection(request)
        if plan.fault is Fault.STATUS:
            return _status_response(plan)
        if plan.fault is Fault.HTML_ERROR_PAGE:
            return web.Response(text=HTML_ERROR_BODY, content_type="text/html")
        if plan.fault is Fault.XML_ERROR_PAGE:
            return web.Response(text=XML_ERROR_BODY, content_type="application/xml")
        if plan.fault is Fault.REDIRECT:
            return self._redirect_response(plan)

        content = self._contents.get(route)
        if content is None:
            return web.Response(status=404, text=f"404 Not Found: {route}\n")
        return await self._serve(request, content, plan)

    def _redirect_response(self, plan: FaultPlan) -> web.Response:
        location = plan.location or "/"
        if location.startswith("/"):
            location = self.base_url + location

        # The Location header is set as a raw string because web.HTTPFound would
        # parse and requote it, and the query string must reach the client unchanged.
        return web.Response(status=302, headers={"Location": location})

    async def _serve(
        self, request: web.Request, content: _Content, plan: FaultPlan
    ) -> web.StreamResponse:
        try:
            size = await asyncio.to_thread(content.size)
            etag = await asyncio.to_thread(content.etag)
        except FileNotFoundError:
            return web.Response(status=404, text=f"404 Not Found: {request.rel_url.path}\n")

        window = self._select_range(request, size, etag)
        if window is None:
            return web.Response(
                status=416, headers={"Content-Range": f"bytes */{size}", "ETag": etag}
            )

        start, end, partial = window
        response = web.StreamResponse(status=206 if partial else 200)
        response.content_type = content.content_type
        response.headers["ETag"] = etag
        if self.ranges:
            response.headers["Accept-Ranges"] = "bytes"
        if partial:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"

        declared = end - start
        if plan.fault is Fault.WRONG_LENGTH:
            declared += max(plan.after_bytes, 1)
        response.content_length = declared

        try:
            await response.prepare(request)
            if request.method != "HEAD":
                await self._send_body(request, response, content, start, end, plan)
            await response.write_eof()
        except ConnectionError as error:
            log.debug("origin_connection_closed", path=request.rel_url.path, error=str(error))
        return response

    def _select_range(
        self, request: web.Request, size: int, etag: str
    ) -> tuple[int, int, bool] | None:
        """Return (start, end, partial) for the request, or None when the range is unsatisfiable.

        Only a single range is served. A malformed or multi-part Range header, or an
        If-Range that does not match the ETag, gets the whole body, as RFC 9110 allows.
        """
        header = request.headers.get("Range")
        if not self.ranges or header is None:
            return 0, size, False

        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range != etag:
            return 0, size, False

        match = _RANGE_PATTERN.fullmatch(header.strip())
        if match is None or match.group(1) == match.group(2) == "":
            return 0, size, False

        first, last = match.groups()
        if first == "":
            start, end = max(size - int(last), 0), size
        else:
            start = int(first)
            end = size if last == "" else min(int(last) + 1, size)

        if start >= size or start >= end:
            return None
        return start, end, True

    async def _send_body(
        self,
        request: web.Request,
        response: web.StreamResponse,
        content: _Content,
        start: int,
        end: int,
        plan: FaultPlan,
    ) -> None:
        if plan.fault is Fault.TRUNCATE:
            await self._write_range(response, content, start, min(start + plan.after_bytes, end))
            _close_connection(request)
            return

        if plan.fault is Fault.STALL:
            middle = min(start + plan.after_bytes, end)
            await self._write_range(response, content, start, middle)
            await self._stall(plan.seconds)
            await self._write_range(response, content, middle, end)
            return

        rate = plan.rate if plan.fault is Fault.SLOW else 0
        await self._write_range(response, content, start, end, rate)
        if plan.fault is Fault.WRONG_LENGTH:
            _close_connection(request)

    async def _write_range(
        self,
        response: web.StreamResponse,
        content: _Content,
        start: int,
        end: int,
        rate: int = 0,
    ) -> None:
        """Write bytes `start` to `end` of `content`, at `rate` bytes/s when `rate` is above 0."""
        # Reading files and generating filler run in a thread, because tests run the
        # daemon in the same event loop and a multi-GiB body must not block it.
        chunks = await asyncio.to_thread(content.chunks, start, end)
        began = time.monotonic()
        sent = 0
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    return
                for piece in _split_for_rate(chunk, rate):
                    self._check_stopping()
                    await response.write(piece)
                    sent += len(piece)
                    if rate > 0:
                        await asyncio.sleep(max(began + sent / rate - time.monotonic(), 0))
        finally:
            await asyncio.to_thread(_close_iterator, chunks)

    async def _stall(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return
        self._check_stopping()

    def _check_stopping(self) -> None:
        if self._stopping.is_set():
            raise ConnectionAbortedError("artwork origin is stopping")


def _split_for_rate(chunk: bytes, rate: int) -> list[bytes]:
    if rate <= 0:
        return [chunk]
    # About ten writes per second keep the rate smooth without a write per byte.
    piece = max(1, min(BLOCK_SIZE, rate // 10))
    return [chunk[i : i + piece] for i in range(0, len(chunk), piece)]


def _close_iterator(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _status_response(plan: FaultPlan) -> web.Response:
    headers = {}
    if plan.retry_after is not None:
        headers["Retry-After"] = plan.retry_after
    response = web.Response(status=plan.status, headers=headers)
    response.text = f"{response.status} {response.reason}\n"
    return response


def _close_connection(request: web.Request) -> None:
    """Close the connection after the bytes already written are flushed."""
    transport = request.transport
    if transport is not None:
        transport.close()


def _reset_connection(request: web.Request) -> web.Response:
    """Reset the connection with a TCP RST and return a response that is never sent.

    aiohttp treats the failed write of that response as a client disconnect and logs
    nothing.
    """
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=500)


__all__ = [
    "SIGNATURES",
    "ArtworkOrigin",
    "Fault",
    "FaultPlan",
    "RequestRecord",
    "artwork_sha256",
    "iter_artwork",
    "make_artwork",
    "normalize_kind",
]
