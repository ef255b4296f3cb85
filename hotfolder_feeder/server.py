"""The HTTP interface: the KornitX push, the operators' API, health checks and the dashboard."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from . import actions, kornitx, metrics
from .auth import Gate
from .errors import PayloadError

if TYPE_CHECKING:
    from .daemon import Daemon

log = structlog.get_logger("hotfolder_feeder.server")

DAEMON_KEY: web.AppKey[Daemon] = web.AppKey("daemon")
GATE_KEY: web.AppKey[Gate] = web.AppKey("gate", Gate)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(daemon: Daemon) -> web.Application:
    settings = daemon.settings.server
    app = web.Application(
        client_max_size=settings.max_body_size,
        middlewares=[metrics.push_counter(daemon.metrics, settings.path), _json_errors],
        handler_args={"access_log": None},
    )
    app[DAEMON_KEY] = daemon
    app[GATE_KEY] = Gate(settings.auth)
    app.router.add_post(settings.path, receive_job)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/jobs", list_jobs)
    app.router.add_get("/api/jobs/{job_id}", show_job)
    app.router.add_post("/api/jobs/{job_id}/{action:retry|reprint|cancel|prioritize}", job_action)
    app.router.add_get("/api/printers", list_printers)
    app.router.add_post("/api/printers/{printer}/{action:pause|resume}", printer_action)
    app.router.add_get("/api/floor", floor)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/", dashboard)
    app.router.add_get("/static/{name}", static_file)
    return app


def _check_body_headers(request: web.Request, limit: int) -> None:
    """Refuse before reading: a declared size over the limit, or a compressed body.

    aiohttp would inflate a gzip body before counting it against the limit, so a small
    compressed body could make the daemon allocate hundreds of megabytes.
    """
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise web.HTTPUnsupportedMediaType(text=f"Content-Encoding {encoding[:50]!r} is not accepted; send the job uncompressed")


class BodyError(ValueError):
    """Raised when a push body is not a JSON object that can be read at all."""


def decode_job(body: bytes) -> kornitx.Job:
    """Decode and validate a push body. Runs in a thread: a 32 MiB body takes a while.

    Raises BodyError for what is not JSON (answered 400) and PayloadError for JSON that is not
    a valid job (answered 422).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyError(f"body is not UTF-8 text: invalid byte at position {error.start}") from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as error:
        raise BodyError(f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise BodyError("body is nested too deeply to be a KornitX job") from None
    return kornitx.parse_job(data)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse an object with a key twice: readers disagree on which value wins."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise json.JSONDecodeError(f"duplicate key {key[:100]!r} in an object", "", 0)
        result[key] = value
    return result


def error_response(status: int, field: str | None, reason: str) -> web.Response:
    body = {"error": web.Response(status=status).reason, "field": field, "reason": reason}
    return web.json_response(body, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Return every error as a JSON response, so the platform and scripts can read it."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[DAEMON_KEY].settings.server.max_body_size
        return error_response(413, "$", f"body is larger than [server] max_body_size ({limit} bytes)")
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = error_response(error.status, None, error.text or error.reason)
        for header in ("WWW-Authenticate", "Retry-After", "Allow"):
            if header in error.headers:
                response.headers[header] = error.headers[header]
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        # One JSON log line rather than aiohttp's multi-line traceback, which journald would split.
        log.exception("request_failed", path=request.path, method=request.method)
        return error_response(500, None, "internal error; the daemon logged it as request_failed")


# Authentication


def _authorize(request: web.Request, read_only: bool = False) -> None:
    """Check an operators' API request; raises the HTTP error that rejects it."""
    request.app[GATE_KEY].require_operator(request, read_only=read_only)


# The push


async def receive_job(request: web.Request) -> web.Response:
    """Validate a pushed job, commit it to the journal, then answer 202 (or 200 for a re-push)."""
    daemon = request.app[DAEMON_KEY]
    gate = request.app[GATE_KEY]
    gate.require_push(request)
    _check_body_headers(request, daemon.settings.server.max_body_size)
    body = await request.read()
    gate.require_signature(request, body)

    try:
        job = await asyncio.to_thread(decode_job, body)
    except BodyError as error:
        return error_response(400, "$", str(error))
    except PayloadError as error:
        log.warning("job_rejected", remote=gate.address(request), field=error.path, reason=error.reason)
        return error_response(422, error.path, error.reason)

    try:
        result = await daemon.receive(job, body.decode("utf-8"))
    except sqlite3.Error as error:
        log.error("journal_write_failed", job_id=job.id, error=str(error))
        return error_response(503, None, "the journal cannot be written; send the job again later")

    answer: dict[str, Any] = {"job_id": job.id, "duplicate": result.duplicate, "deliveries": result.deliveries}
    if result.duplicate:
        answer["added"] = result.added
        return web.json_response(answer, status=200)
    return web.json_response(answer, status=202)


# Health


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Answer 200 when the journal is writable and every printer is reachable and watched."""
    problems = await request.app[DAEMON_KEY].readiness_problems()
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


# The operators' API


async def list_jobs(request: web.Request) -> web.Response:
    _authorize(request, read_only=True)
    limit = _int_query(request, "limit", 100)
    jobs = await request.app[DAEMON_KEY].journal.jobs(limit)
    return web.json_response({"jobs": [_job_summary(job) for job in jobs]})


async def show_job(request: web.Request) -> web.Response:
    _authorize(request, read_only=True)
    job_id = _job_id(request)
    job = await request.app[DAEMON_KEY].journal.job(job_id)
    if job is None:
        return error_response(404, None, f"job {job_id} is not known")
    summary = _job_summary(job)
    summary["deliveries"] = [_delivery(row) for row in job["deliveries"]]
    summary["actions"] = [
        {**action, "at": iso_time(action["at"])} for action in await request.app[DAEMON_KEY].journal.actions(job_id)
    ]
    return web.json_response(summary)


async def job_action(request: web.Request) -> web.Response:
    """Run an operator action on a job: retry, reprint (optional item_id), cancel, prioritize."""
    _authorize(request)
    job_id = _job_id(request)
    daemon = request.app[DAEMON_KEY]
    if not await daemon.journal.job_exists(job_id):
        return error_response(404, None, f"job {job_id} is not known")
    options = await _options(request)
    actor = _actor(request)
    action = request.match_info["action"]
    if action == "retry":
        result = await actions.retry(daemon, job_id, actor)
    elif action == "reprint":
        result = await actions.reprint(daemon, job_id, _optional_int(options, "item_id"), actor)
    elif action == "cancel":
        result = await actions.cancel(daemon, job_id, actor)
    else:
        priority = _optional_int(options, "priority")
        if priority is not None and not -1000 <= priority <= 1000:
            raise web.HTTPBadRequest(text=f"priority must be from -1000 to 1000, got {priority}")
        result = await actions.prioritize(daemon, job_id, priority, actor)
    return web.json_response(result)


async def printer_action(request: web.Request) -> web.Response:
    """Pause or resume a printer."""
    _authorize(request)
    daemon = request.app[DAEMON_KEY]
    printer = request.match_info["printer"]
    if printer not in daemon.feeds:
        return error_response(404, None, f"printer {printer!r} is not configured; printers: {', '.join(daemon.feeds)}")
    paused = request.match_info["action"] == "pause"
    return web.json_response(await actions.set_paused(daemon, printer, paused, _actor(request)))


async def _options(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        options = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be a JSON object, or empty") from None
    if not isinstance(options, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object, or empty")
    return options


def _optional_int(options: dict[str, Any], name: str) -> int | None:
    value = options.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise web.HTTPBadRequest(text=f"{name} must be a whole number, got {value!r}")
    return value


def _actor(request: web.Request) -> str:
    """Name who asked: the X-Operator header the CLI sends, and the address it came from."""
    operator = request.headers.get("X-Operator", "").strip()[:100] or "unknown operator"
    return f"{operator} from {request.remote}"


async def list_printers(request: web.Request) -> web.Response:
    _authorize(request, read_only=True)
    return web.json_response({"printers": await request.app[DAEMON_KEY].printers()})


async def floor(request: web.Request) -> web.Response:
    """Return everything the floor dashboard shows; `?q=` narrows the jobs to a search."""
    _authorize(request, read_only=True)
    daemon = request.app[DAEMON_KEY]
    return web.json_response(await daemon.floor.read(daemon, request.query.get("q", "")[:200]))


async def metrics_page(request: web.Request) -> web.Response:
    _authorize(request, read_only=True)
    daemon = request.app[DAEMON_KEY]
    return web.Response(body=await daemon.metrics.render(daemon), headers={"Content-Type": metrics.CONTENT_TYPE})


# The dashboard is static: it reads /api/floor with the token the operator gives it.
STATIC_TYPES = {"dashboard.html": "text/html", "dashboard.js": "text/javascript", "dashboard.css": "text/css"}
STATIC_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
}


async def dashboard(request: web.Request) -> web.Response:
    return _static("dashboard.html")


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_TYPES:
        raise web.HTTPNotFound(text=f"no static file {name[:100]!r}")
    return _static(name)


def _static(name: str) -> web.Response:
    return web.Response(
        body=_static_bytes(name), content_type=STATIC_TYPES[name], charset="utf-8", headers=STATIC_HEADERS
    )


@functools.cache
def _static_bytes(name: str) -> bytes:
    return resources.files("hotfolder_feeder").joinpath("static", name).read_bytes()


def _job_id(request: web.Request) -> int:
    text = request.match_info["job_id"]
    if not text.isdigit():
        raise web.HTTPBadRequest(text=f"job id must be a number, got {text[:50]!r}")
    return int(text)


def _int_query(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not 0 < int(text) <= 10_000:
        raise web.HTTPBadRequest(text=f"{name} must be a number from 1 to 10000, got {text[:50]!r}")
    return int(text)


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _job_summary(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": job["id"],
        "kind": job["kind"],
        "state": job["state"],
        "received_at": iso_time(job["received_at"]),
        "pushes": job["pushes"],
        "items": job["items"],
        "counts": job["counts"],
    }


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "item_id": row["item_id"],
        "order_item_id": row["order_item_id"],
        "name": row["name"],
        "artwork_name": row["artwork_name"],
        "printer": row["printer"],
        "path": row["path"],
        "state": row["state"],
        "stalled": bool(row["stalled"]),
        "bytes": row["bytes"],
        "sha256": row["sha256"],
        "attempts": row["attempts"],
        "priority": row["priority"],
        "reason": row["reason"],
        "error": row["error"],
        "created_at": iso_time(row["created_at"]),
        "staged_at": iso_time(row["staged_at"]),
        "delivered_at": iso_time(row["delivered_at"]),
        "picked_up_at": iso_time(row["picked_up_at"]),
    }
