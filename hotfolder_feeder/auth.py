"""Who may push jobs and who may use the operators' API.

Push: an optional address allow-list, a token (`?token=`, Bearer, or a Basic password) and an
optional HMAC-SHA256 signature of the body. Operators' API and dashboard: an admin token (the
push tokens when none is set), or no token at all for reading from `read_only_ips`.

Answers: 401 when credentials are missing or wrong, 403 when they are right but not enough (a
push token on the operators' API, an address outside the allow-list), 429 after repeated
failures from one address. Every rejection is logged with the address and the reason, never
the secret. Secrets are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import time
from collections import OrderedDict, deque

import structlog
from aiohttp import web

from .config import AuthSettings

log = structlog.get_logger("hotfolder_feeder.auth")

SIGNATURE_HEADER = "X-CustomGateway-Hmac"
# An address with this many failures within the window is refused until the oldest expires.
MAX_FAILURES = 10
FAILURE_WINDOW = 300.0
# Addresses tracked at once; the least recently failing is forgotten first.
MAX_TRACKED = 10_000


class FailureThrottle:
    """Counts authentication failures per address and refuses an address that fails too often."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self._limit = limit
        self._window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str, now: float | None = None) -> float | None:
        """Return the seconds until `address` may try again, or None when it may now."""
        now = time.monotonic() if now is None else now
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if len(failures) < self._limit:
            return None
        return failures[0] + self._window - now

    def record(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._failures.setdefault(address, deque(maxlen=self._limit)).append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)

    def clear(self, address: str) -> None:
        self._failures.pop(address, None)


def client_address(request: web.Request, trusted_proxies: list[str]) -> str:
    """Return the client's address: the peer, or from X-Forwarded-For when the peer is trusted.

    The header is read from the right, skipping trusted proxies, because a client can put
    anything on its left.
    """
    address = request.remote or ""
    if not trusted_proxies or not in_networks(address, trusted_proxies):
        return address
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not in_networks(hop, trusted_proxies):
            return hop
    return address


def in_networks(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


def presented_token(request: web.Request) -> str | None:
    """Return the token a request carries: a Bearer token, a Basic password, or `?token=`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return request.query.get("token") or None


def token_matches(presented: str | None, accepted: list[str]) -> bool:
    """Compare against every accepted token in constant time, so timing reveals nothing."""
    if presented is None:
        return False
    found = False
    for token in accepted:
        found |= hmac.compare_digest(presented.encode(), token.encode())
    return found


def signature_matches(body: bytes, presented: str | None, key: str) -> bool:
    """Check an `X-CustomGateway-Hmac` header: HMAC-SHA256 of the raw body, hex or base64."""
    if not presented:
        return False
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    presented = presented.strip()
    found = False
    for candidate in (digest.hex(), base64.b64encode(digest).decode()):
        found |= hmac.compare_digest(presented.encode(), candidate.encode())
    return found


class Gate:
    """Applies the `[server.auth]` rules to requests; raises an HTTP error to reject one."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.throttle = FailureThrottle()

    def address(self, request: web.Request) -> str:
        return client_address(request, self.settings.trusted_proxies)

    def require_push(self, request: web.Request) -> None:
        """Check the address and the token of a push."""
        address = self.address(request)
        self._check_throttle(request, address)
        if self.settings.allowed_ips and not in_networks(address, self.settings.allowed_ips):
            self._reject(request, address, 403, f"address {address} is not in [server.auth] allowed_ips")
        self._check_token(request, address, self.settings.tokens)

    def require_signature(self, request: web.Request, body: bytes) -> None:
        key = self.settings.hmac_key
        if key and not signature_matches(body, request.headers.get(SIGNATURE_HEADER), key):
            address = self.address(request)
            self.throttle.record(address)
            self._reject(request, address, 401, f"missing or invalid {SIGNATURE_HEADER} signature of the body")

    def require_operator(self, request: web.Request, read_only: bool = False) -> None:
        """Check an operators' API request; reading may be open to `read_only_ips`."""
        address = self.address(request)
        self._check_throttle(request, address)
        if read_only and in_networks(address, self.settings.read_only_ips):
            return
        admin = self.settings.admin_tokens or self.settings.tokens
        if self.settings.admin_tokens and token_matches(presented_token(request), self.settings.tokens):
            self._reject(request, address, 403, "a push token cannot use the operators' API; use an admin token")
        self._check_token(request, address, admin)

    def _check_token(self, request: web.Request, address: str, accepted: list[str]) -> None:
        if not accepted:
            return
        presented = presented_token(request)
        if token_matches(presented, accepted):
            self.throttle.clear(address)
            return
        self.throttle.record(address)
        reason = "missing token" if presented is None else "invalid token"
        self._reject(request, address, 401, reason)

    def _check_throttle(self, request: web.Request, address: str) -> None:
        wait = self.throttle.retry_after(address)
        if wait is not None:
            self._reject(
                request, address, 429, f"too many failed attempts from {address}; try again later",
                {"Retry-After": str(max(1, int(wait + 0.999)))},
            )  # fmt: skip

    def _reject(
        self, request: web.Request, address: str, status: int, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        log.warning("request_rejected", remote=address, path=request.path, status=status, reason=reason)
        headers = dict(headers or {})
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="hotfolder-feeder"'
        raise _ERRORS[status](text=reason, headers=headers)


_ERRORS: dict[int, type[web.HTTPException]] = {
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    429: web.HTTPTooManyRequests,
}
