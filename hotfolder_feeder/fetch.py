"""Streaming artwork downloads: one attempt at a time, classified for retry.

A download streams the body into a staging file in large chunks written from a thread, so memory
stays flat whatever the file size. Resumes with `Range` when a staging file is left from an
earlier attempt. The URL is requested exactly as the payload gives it, because re-quoting breaks
presigned S3 signatures. Before a file is accepted its length must match `Content-Length` and its
first bytes the signature of its extension, so a CDN's error page served with 200 is never
delivered as artwork.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import hashlib
import ipaddress
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from .config import DownloadSettings
from .errors import PermanentFetchError, TransientFetchError

CHUNK_SIZE = 1024 * 1024
MAX_REDIRECTS = 10
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "pdf": (b"%PDF-",),
    "tif": (b"II*\x00", b"MM\x00*"),
    "tiff": (b"II*\x00", b"MM\x00*"),
}
SIGNATURE_LENGTH = 8
# Enough of the body's start to recognise an HTML or XML page, after a BOM and blank lines.
HEAD_LENGTH = 64
MARKUP_EXTENSIONS = frozenset({"svg", "xml", "html", "htm"})
MARKUP_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<error", b"<head", b"<body")


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str
    seconds: float
    resumed_from: int


class StagingDiscarded(TransientFetchError):
    """Raised when the staging file cannot be resumed from; it is deleted before the retry."""


class BadContentError(StagingDiscarded):
    """Raised when the body is not the artwork it should be."""


class PrivateAddressError(PermanentFetchError):
    """Raised when an artwork URL's host resolves to a loopback, private or link-local address."""


class GuardedResolver(ThreadedResolver):
    """A resolver that drops loopback, private, link-local and reserved addresses.

    Checking the address actually connected to, rather than a separate look-up first, means a
    host name cannot resolve to a public address for the check and a private one for the request.
    `allowed` is the `allow_private_networks` setting: true, or networks allowed all the same.
    """

    def __init__(self, allowed: bool | list[str]) -> None:
        super().__init__()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        allowed = [result for result in results if not refused_address(result["host"], self._allowed)]
        if not allowed:
            raise PrivateAddressError(
                f"artwork host {host} resolves only to private or loopback addresses; allow it "
                "with allow_private_networks in [download] (true, or a list of networks)"
            )
        return allowed


def _ip_of(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address without its IPv6 zone, reading an IPv4-mapped IPv6 address as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_private_address(address: str) -> bool:
    ip = _ip_of(address)
    return not ip.is_global or ip.is_multicast


# Cloud instance metadata services: refused even with allow_private_networks = true, because an
# artwork URL pointing there can only be an attack. Listing one explicitly allows it.
METADATA_NETWORKS = ("169.254.169.254/32", "169.254.170.2/32", "fd00:ec2::254/128")


def refused_address(address: str, allowed: bool | list[str]) -> bool:
    """Return whether an artwork host's address is refused under `allow_private_networks`."""
    ip = _ip_of(address)
    listed = isinstance(allowed, list) and any(ip in ipaddress.ip_network(n, strict=False) for n in allowed)
    if any(ip in ipaddress.ip_network(network) for network in METADATA_NETWORKS):
        return not listed
    if not is_private_address(str(ip)):
        return False
    return not (allowed is True or listed)


def make_session(settings: DownloadSettings) -> aiohttp.ClientSession:
    """Create the client session for artwork downloads; the caller owns and closes it."""
    resolver = GuardedResolver(settings.allow_private_networks)
    connector = aiohttp.TCPConnector(
        limit=settings.concurrency,
        limit_per_host=settings.per_host,
        resolver=resolver,
        ttl_dns_cache=60,
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
    )
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)


class Fetcher:
    """Runs single download attempts under the global and per-host limits."""

    def __init__(self, session: aiohttp.ClientSession, settings: DownloadSettings) -> None:
        self._session = session
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._space = SpaceReservations()

    async def download(self, url: str, staging: Path, ext: str) -> Downloaded:
        """Download `url` into `staging`, resuming a partial file; one attempt, no retry.

        Raises TransientFetchError for what a later attempt may fix and PermanentFetchError for
        what it will not.
        """
        try:
            target = URL(url, encoded=True)
            self._check_url(target)
        except ValueError as error:
            raise PermanentFetchError(f"invalid artwork URL: {error}") from None
        host = target.host or ""
        host_slots = self._host_slots.setdefault(host, asyncio.Semaphore(self._settings.per_host))
        async with self._slots, host_slots:
            try:
                return await self._attempt(target, staging, ext.lower())
            except StagingDiscarded:
                await asyncio.to_thread(discard_staging, staging)
                raise

    async def _attempt(self, url: URL, staging: Path, ext: str) -> Downloaded:
        started = time.monotonic()
        offset, validator = await asyncio.to_thread(_resumable, staging)
        try:
            response = await self._open(url, offset, validator)
            async with response:
                resumed_from = _resume_offset(response, offset)
                if not resumed_from:
                    await asyncio.to_thread(_save_validator, staging, response.headers)
                expected = _expected_size(response, resumed_from)
                self._check_size(expected, url)
                needed = expected - resumed_from if expected is not None else 0
                async with self._space.reserve(staging.parent, needed):
                    size, sha256 = await self._stream(response, staging, resumed_from, expected, ext)
        except aiohttp.InvalidURL as error:
            raise PermanentFetchError(f"invalid artwork URL: {error}") from None
        except (aiohttp.ServerTimeoutError, TimeoutError):
            # aiohttp's timeouts also subclass ClientConnectionError, so they are caught first.
            raise TransientFetchError(
                f"no data for {self._settings.read_timeout:g}s (read timeout) or no connection "
                f"within {self._settings.connect_timeout:g}s (connect timeout)"
            ) from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as error:
            raise TransientFetchError(f"{type(error).__name__}: {error or 'connection lost'}") from None
        except OSError as error:
            if error.errno == errno.ENOSPC:
                # Give the space back, so that concurrent downloads cannot all stall half-written.
                raise StagingDiscarded(f"cannot write staging file {staging}: {error}") from None
            raise TransientFetchError(f"cannot write staging file {staging}: {error}") from None
        return Downloaded(size, sha256, time.monotonic() - started, resumed_from)

    async def _open(self, url: URL, offset: int, validator: str | None) -> aiohttp.ClientResponse:
        """Send the request, following redirects by hand so each hop is checked.

        A resume sends `If-Range`, so an origin whose file changed since the first attempt sends
        the whole new file rather than the rest of it.
        """
        headers = {"Accept-Encoding": "identity"}
        if offset and validator:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = validator
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._session.get(url, headers=headers, allow_redirects=False)
            if response.status not in (301, 302, 303, 307, 308):
                _raise_for_status(response, url)
                return response
            location = response.headers.get("Location")
            response.release()
            if not location:
                raise PermanentFetchError(f"redirect from {_public(url)} without a Location header")
            url = url.join(URL(location, encoded=True))
            self._check_url(url)
        raise PermanentFetchError(f"more than {MAX_REDIRECTS} redirects from {_public(url)}")

    def _check_url(self, url: URL) -> None:
        if url.scheme not in ("http", "https"):
            raise PermanentFetchError(f"artwork URL scheme {url.scheme!r} is not http or https")
        if url.scheme == "http" and not self._settings.allow_http:
            raise PermanentFetchError(
                f"artwork URL {_public(url)} is plain http; set allow_http = true in [download] "
                "to allow it"
            )
        host = url.host or ""
        if not host:
            raise PermanentFetchError(f"artwork URL {_public(url)} has no host")
        patterns = self._settings.allowed_hosts
        if patterns and not any(fnmatchcase(host.lower(), p.lower()) for p in patterns):
            raise PermanentFetchError(
                f"artwork host {host} is not in [download] allowed_hosts ({', '.join(patterns)})"
            )
        if self._refuses_literal(host):
            raise PrivateAddressError(
                f"artwork host {host} is a private or loopback address; allow it with "
                "allow_private_networks in [download] (true, or a list of networks)"
            )

    def _refuses_literal(self, host: str) -> bool:
        """Check a host written as an address, which aiohttp connects to without resolving."""
        allowed = self._settings.allow_private_networks
        try:
            return refused_address(host.strip("[]"), allowed)
        except ValueError:
            name = host.lower()
            local = name in ("localhost", "localhost.localdomain") or name.endswith(".localhost")
            return local and allowed is False

    def _check_size(self, expected: int | None, url: URL) -> None:
        limit = self._settings.max_file_size
        if limit and expected is not None and expected > limit:
            raise PermanentFetchError(
                f"{_public(url)} is {expected} bytes, over [download] max_file_size ({limit})"
            )

    async def _stream(
        self, response: aiohttp.ClientResponse, staging: Path, offset: int, expected: int | None, ext: str
    ) -> tuple[int, str]:
        sink = await asyncio.to_thread(_Sink.open, staging, offset)
        try:
            await self._copy(response, sink, ext)
        finally:
            await asyncio.to_thread(sink.close)
        if expected is not None and sink.size != expected:
            raise TransientFetchError(f"body cut short: got {sink.size} of {expected} bytes")
        if sink.size == 0:
            raise TransientFetchError("empty body")
        if not sink.checked:
            await asyncio.to_thread(_check_head, sink.head, ext)
        return sink.size, sink.hexdigest()

    async def _copy(self, response: aiohttp.ClientResponse, sink: _Sink, ext: str) -> None:
        limit = self._settings.max_file_size
        buffer: list[bytes] = []
        buffered = 0
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            buffer.append(chunk)
            buffered += len(chunk)
            if buffered >= CHUNK_SIZE:
                await asyncio.to_thread(sink.write, b"".join(buffer), ext)
                buffer, buffered = [], 0
            if limit and sink.size + buffered > limit:
                raise PermanentFetchError(f"body is over [download] max_file_size ({limit} bytes)")
        if buffer:
            await asyncio.to_thread(sink.write, b"".join(buffer), ext)


class SpaceReservations:
    """Disk space promised to running downloads, per filesystem.

    A download starts only when its remaining bytes fit in the free space less what running
    downloads on the same filesystem still need. Without this, several downloads into a nearly
    full disk each write part of their file and none can finish.
    """

    def __init__(self) -> None:
        self._reserved: dict[int, int] = {}

    @contextlib.asynccontextmanager
    async def reserve(self, folder: Path, size: int) -> AsyncIterator[None]:
        device, free = await asyncio.to_thread(_free_space, folder)
        available = free - self._reserved.get(device, 0)
        if size > available:
            raise TransientFetchError(
                f"not enough space in {folder}: the file needs {size} more bytes, "
                f"{max(available, 0)} are free after running downloads"
            )
        self._reserved[device] = self._reserved.get(device, 0) + size
        try:
            yield
        finally:
            self._reserved[device] -= size


def _free_space(folder: Path) -> tuple[int, int]:
    folder.mkdir(parents=True, exist_ok=True)
    status = os.statvfs(folder)
    return os.stat(folder).st_dev, status.f_bavail * status.f_frsize


class _Sink:
    """The staging file being written, with its running hash and first bytes."""

    def __init__(self, file: BinaryIO, size: int, digest: Any, head: bytes) -> None:
        self.file = file
        self.size = size
        self.digest = digest
        self.head = head
        self.checked = False

    @classmethod
    def open(cls, path: Path, offset: int) -> _Sink:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        head = b""
        file: BinaryIO
        if offset:
            file = path.open("r+b")
            head = _hash_existing(file, offset, digest)
            file.truncate(offset)
        else:
            file = path.open("wb")
        return cls(file, offset, digest, head)

    def write(self, data: bytes, ext: str) -> None:
        if not self.checked and len(self.head) < HEAD_LENGTH:
            self.head += data[: HEAD_LENGTH - len(self.head)]
        if not self.checked and len(self.head) >= HEAD_LENGTH:
            _check_head(self.head, ext)
            self.checked = True
        self.file.write(data)
        self.digest.update(data)
        self.size += len(data)

    def close(self) -> None:
        self.file.close()

    def hexdigest(self) -> str:
        return str(self.digest.hexdigest())


def _hash_existing(file: BinaryIO, offset: int, digest: Any) -> bytes:
    head = file.read(HEAD_LENGTH)
    file.seek(0)
    remaining = offset
    while remaining:
        block = file.read(min(CHUNK_SIZE, remaining))
        if not block:
            raise OSError(f"staging file shorter than {offset} bytes")
        digest.update(block)
        remaining -= len(block)
    file.seek(offset)
    return head[:offset]


def _check_head(head: bytes, ext: str) -> None:
    """Raise BadContentError when the first bytes do not fit the file's extension.

    Transient, because a CDN that serves an error page now often serves the file later.
    """
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if ext not in MARKUP_EXTENSIONS and start.startswith(MARKUP_STARTS):
        raise BadContentError(f"body is an HTML or XML page, not a .{ext or 'file'} artwork")
    signatures = SIGNATURES.get(ext)
    if signatures and not head.startswith(signatures):
        raise BadContentError(
            f"body does not start with the .{ext} file signature (starts with {head[:8]!r})"
        )


def validator_path(staging: Path) -> Path:
    """Return the file beside a staging file that keeps the origin's ETag or Last-Modified."""
    return staging.with_name(staging.name + ".validator")


def discard_staging(staging: Path) -> None:
    """Delete a staging file and its validator."""
    staging.unlink(missing_ok=True)
    validator_path(staging).unlink(missing_ok=True)


def _resumable(staging: Path) -> tuple[int, str | None]:
    """Return the size to resume from and its validator, or 0 when the file cannot be resumed."""
    try:
        size = staging.stat().st_size
        validator = validator_path(staging).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return 0, None
    return (size, validator) if size and validator else (0, None)


def _save_validator(staging: Path, headers: Any) -> None:
    """Keep a strong ETag, else Last-Modified; an origin with neither is never resumed."""
    etag = headers.get("ETag", "")
    validator = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified", "")
    path = validator_path(staging)
    if validator:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(validator, encoding="utf-8")
    else:
        path.unlink(missing_ok=True)


def _resume_offset(response: aiohttp.ClientResponse, offset: int) -> int:
    """Return where the body starts in the file: `offset` for a matching 206, else 0."""
    if response.status != 206 or not offset:
        return 0
    content_range = response.headers.get("Content-Range", "")
    if not content_range.startswith(f"bytes {offset}-"):
        raise StagingDiscarded(f"origin sent Content-Range {content_range!r} for a resume at {offset}")
    return offset


def _expected_size(response: aiohttp.ClientResponse, offset: int) -> int | None:
    if response.status == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) + offset if length and length.isdigit() else None


def _raise_for_status(response: aiohttp.ClientResponse, url: URL) -> None:
    status = response.status
    if status in (200, 206):
        return
    response.release()
    message = f"HTTP {status} {response.reason or ''} from {_public(url)}".rstrip()
    if status in TRANSIENT_STATUSES:
        raise TransientFetchError(message, retry_after=parse_retry_after(response.headers))
    if status == 416:
        # A staging file left complete by a crash requests a range past the end.
        raise StagingDiscarded(f"{message}: the resume offset was refused, starting again")
    if 400 <= status < 500:
        raise PermanentFetchError(message)
    raise TransientFetchError(message)


def parse_retry_after(headers: Any, now: Callable[[], float] = time.time) -> float | None:
    """Return the seconds a `Retry-After` header requests (seconds or an HTTP date), else None."""
    value = headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def backoff_delay(attempt: int, retry_after: float | None, maximum: float) -> float:
    """Return the wait before the next attempt: exponential from 1s with full jitter, capped.

    A server's `Retry-After` is honoured as a floor, itself capped at `maximum`.
    """
    ceiling = min(maximum, 2.0 ** max(0, attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, maximum))
    return delay


def _public(url: URL) -> str:
    """Return a URL without credentials: no user or password, no query (presigned URLs carry
    their signature there)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))
