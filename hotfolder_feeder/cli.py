"""The `hotfolder-feeder` command: run the daemon, check a config, and talk to a running daemon.

Exit codes: 0 success, 1 a command failed (for example the daemon is not reachable), 2 usage
error or invalid config, 3 the daemon failed to start.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import hmac
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from . import __version__, config, logs
from .config import Settings
from .auth import SIGNATURE_HEADER
from .errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_START_FAILED = 3

CONFIG_ENV = "HOTFOLDER_FEEDER_CONFIG"
URL_ENV = "HOTFOLDER_FEEDER_URL"
TOKEN_ENV = "HOTFOLDER_FEEDER_TOKEN"

log = structlog.get_logger("hotfolder_feeder.cli")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if not hasattr(arguments, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(arguments.run(arguments))
    except ConfigError as error:
        print(f"hotfolder-feeder: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotfolder-feeder",
        description="Feed Kornit QuickP hot folders from KornitX production pushes.",
    )
    parser.add_argument("--version", action="version", version=f"hotfolder-feeder {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the daemon")
    _add_config(serve)
    serve.set_defaults(run=run_serve)

    check = commands.add_parser("check-config", help="validate a config and check its hot folders")
    check.add_argument("file", type=Path, help="the TOML config file")
    check.set_defaults(run=run_check_config)

    push = commands.add_parser("push", help="send a saved job JSON to the daemon, as KornitX would")
    push.add_argument("file", type=Path, help="the job JSON file")
    push.add_argument("--url", help="the push URL (default: the daemon's, from the config)")
    _add_client(push)
    push.set_defaults(run=run_push)

    status = commands.add_parser("status", help="show the printers of a running daemon")
    _add_client(status)
    status.set_defaults(run=run_status)

    jobs = commands.add_parser("jobs", help="list jobs, or show one job with its deliveries")
    jobs.add_argument("job_id", nargs="?", type=int, help="show this job in full")
    _add_client(jobs)
    jobs.set_defaults(run=run_jobs)

    retry = commands.add_parser("retry", help="put the failed deliveries of a job back to pending")
    retry.add_argument("job_id", type=int, help="the KornitX job id")
    _add_client(retry)
    retry.set_defaults(run=run_job_action, action="retry")

    reprint = commands.add_parser("reprint", help="write a job's files into the hot folder again")
    reprint.add_argument("job_id", type=int, help="the KornitX job id")
    reprint.add_argument("--item", type=int, dest="item_id", help="reprint only this item (its id in the job)")
    _add_client(reprint)
    reprint.set_defaults(run=run_job_action, action="reprint")

    cancel = commands.add_parser(
        "cancel", help="drop a job's waiting files and recall those the RIP has not taken"
    )
    cancel.add_argument("job_id", type=int, help="the KornitX job id")
    _add_client(cancel)
    cancel.set_defaults(run=run_job_action, action="cancel")

    prioritize = commands.add_parser("prioritize", help="move a job ahead of the others waiting")
    prioritize.add_argument("job_id", type=int, help="the KornitX job id")
    prioritize.add_argument(
        "--priority", type=int, help="set this priority (higher goes first; default: ahead of all)"
    )
    _add_client(prioritize)
    prioritize.set_defaults(run=run_job_action, action="prioritize")

    for action, text in (("pause", "stop feeding a printer; it keeps what it has"), ("resume", "feed a paused printer again")):
        command = commands.add_parser(action, help=text)
        command.add_argument("printer", help="the printer's name from the config")
        _add_client(command)
        command.set_defaults(run=run_printer_action, action=action)

    demo = commands.add_parser("demo", help="run the whole flow on this machine with example jobs")
    demo.add_argument("--keep", action="store_true", help="keep running after the jobs complete, until Ctrl+C")
    demo.set_defaults(run=run_demo)
    return parser


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help=f"TOML config file (default: ${CONFIG_ENV}, else embedded defaults)"
    )


def _add_client(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    parser.add_argument("--server", help=f"the daemon's base URL (default: ${URL_ENV}, else from the config)")
    parser.add_argument("--token", help=f"API token (default: ${TOKEN_ENV}, else from the config)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON response")


def settings_source(arguments: argparse.Namespace) -> Path | None:
    """Return the config file: the --config flag, then $HOTFOLDER_FEEDER_CONFIG, else None."""
    return arguments.config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)


def load_settings(arguments: argparse.Namespace) -> Settings:
    return config.load(settings_source(arguments))


# serve


def run_serve(arguments: argparse.Namespace) -> int:
    settings = load_settings(arguments)
    if settings_source(arguments) is None:
        # The embedded defaults promise a working daemon in the current folder.
        for printer in settings.printers:
            printer.hotfolder.mkdir(parents=True, exist_ok=True)
    logs.configure(settings.log.level, settings.log.format)
    source = settings_source(arguments)
    log.info("config_loaded", source=str(source or "embedded defaults"), settings=config.redacted(settings))
    return asyncio.run(serve(settings))


async def serve(settings: Settings) -> int:
    """Run the daemon until SIGTERM or SIGINT; a second SIGINT exits at once."""
    from .daemon import Daemon

    daemon = Daemon(settings)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, daemon.reload_tls)
    try:
        await daemon.start()
    except (ConfigError, OSError) as error:
        log.error("start_failed", error=str(error))
        await daemon.stop()
        return EXIT_USAGE if isinstance(error, ConfigError) else EXIT_START_FAILED
    await stop.wait()
    log.info("stopping")
    await daemon.stop()
    return EXIT_OK


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        if stop.is_set():
            print("hotfolder-feeder: second interrupt, exiting at once", file=sys.stderr)
            os._exit(EXIT_FAILED)
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, on_interrupt)


# check-config


def run_check_config(arguments: argparse.Namespace) -> int:
    from .checks import check_settings

    settings = config.load(arguments.file)
    problems = check_settings(settings, sys.stdout)
    return EXIT_USAGE if problems else EXIT_OK


# Client commands


def _base_url(arguments: argparse.Namespace, settings: Settings) -> str:
    if arguments.server:
        return str(arguments.server).rstrip("/")
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV].rstrip("/")
    host, port = config.split_listen(settings.server.listen)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    scheme = "https" if settings.server.tls.cert else "http"
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


def _token(arguments: argparse.Namespace, accepted: list[str]) -> str | None:
    return arguments.token or os.environ.get(TOKEN_ENV) or (accepted[0] if accepted else None)


async def _request(
    method: str, url: str, token: str | None, body: bytes | None = None, extra: dict[str, str] | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Operator": _operator(), **(extra or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.request(method, url, data=body, headers=headers) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except json.JSONDecodeError:
                return response.status, {"error": text}


def _operator() -> str:
    """Name the operator for the journal's record of actions: the login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _call(
    method: str, url: str, token: str | None, body: bytes | None = None, extra: dict[str, str] | None = None
) -> tuple[int, Any]:
    try:
        return asyncio.run(_request(method, url, token, body, extra))
    except aiohttp.ClientError as error:
        print(f"hotfolder-feeder: cannot reach the daemon at {url}: {error}; is it running?", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None


def run_push(arguments: argparse.Namespace) -> int:
    settings = load_settings(arguments)
    try:
        body = arguments.file.read_bytes()
    except OSError as error:
        print(f"hotfolder-feeder: cannot read {arguments.file}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    url = arguments.url or _base_url(arguments, settings) + settings.server.path
    key = settings.server.auth.hmac_key
    # Signed as the platform signs it, so a daemon that checks signatures accepts the push.
    signature = {SIGNATURE_HEADER: hmac.new(key.encode(), body, hashlib.sha256).hexdigest()} if key else None
    status, answer = _call("POST", url, _token(arguments, settings.server.auth.tokens), body, signature)
    print(json.dumps(answer, indent=2))
    return EXIT_OK if status in (200, 202) else EXIT_FAILED


def run_status(arguments: argparse.Namespace) -> int:
    settings = load_settings(arguments)
    token = _token(arguments, settings.server.auth.admin_tokens or settings.server.auth.tokens)
    status, answer = _call("GET", _base_url(arguments, settings) + "/api/floor", token)
    if status != 200:
        _print_error(status, answer)
        return EXIT_FAILED
    if arguments.json:
        print(json.dumps({"printers": answer["printers"], "totals": answer["totals"]}, indent=2))
        return EXIT_OK

    print(_table(_STATUS_HEADER, [_status_row(printer) for printer in answer["printers"]]))
    totals = answer["totals"]
    print(
        f"\n{totals['online']} of {totals['printers']} printers online, {totals['waiting']} files waiting, "
        f"{totals['queued']} queued, {totals['stalled']} stalled, {totals['failed']} failed"
    )
    return EXIT_OK


_STATUS_HEADER = ["printer", "state", "waiting", "staged", "queued", "taken 1h", "oldest", "stalled", "outage"]


def _status_row(printer: dict[str, Any]) -> list[str]:
    """Format one printer of GET /api/floor; `waiting` shows the feed limit when there is one."""
    waiting = str(printer["waiting"]) + (f"/{printer['max_waiting']}" if printer["max_waiting"] else "")
    oldest = printer["oldest_waiting"]
    return [
        printer["name"], printer["state"], waiting, str(printer["staged"]), str(printer["queued"]),
        str(printer["taken_last_hour"]), _age(oldest["age_seconds"]) if oldest else "-",
        str(printer["stalled"]), printer["outage"] or "",
    ]  # fmt: skip


def _age(seconds: float) -> str:
    """Format a duration as the two largest units: `45s`, `12m05s`, `3h05m`, `2d04h`."""
    whole = int(seconds)
    minutes, second = divmod(whole, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    if days:
        return f"{days}d{hour:02d}h"
    if hours:
        return f"{hours}h{minute:02d}m"
    if minutes:
        return f"{minutes}m{second:02d}s"
    return f"{second}s"


def run_jobs(arguments: argparse.Namespace) -> int:
    settings = load_settings(arguments)
    token = _token(arguments, settings.server.auth.admin_tokens or settings.server.auth.tokens)
    path = f"/api/jobs/{arguments.job_id}" if arguments.job_id is not None else "/api/jobs"
    status, answer = _call("GET", _base_url(arguments, settings) + path, token)
    if status != 200 and not arguments.json:
        _print_error(status, answer)
        return EXIT_FAILED
    if arguments.json:
        print(json.dumps(answer, indent=2))
        return EXIT_OK if status == 200 else EXIT_FAILED
    if arguments.job_id is None:
        rows = [[str(j["id"]), j["state"], j["received_at"], _counts(j["counts"])] for j in answer["jobs"]]
        print(_table(["job", "state", "received", "deliveries"], rows))
    else:
        print(f"job {answer['id']} ({answer['kind']}): {answer['state']}, received {answer['received_at']}")
        rows = [
            [str(d["id"]), d["printer"] or "-", d["state"] + (" (stalled)" if d["stalled"] else ""), d["name"] or d["artwork_name"], d["error"] or ""]
            for d in answer["deliveries"]
        ]
        print(_table(["delivery", "printer", "state", "file", "error"], rows))
    return EXIT_OK


def run_job_action(arguments: argparse.Namespace) -> int:
    options = {
        key: getattr(arguments, key)
        for key in ("item_id", "priority")
        if getattr(arguments, key, None) is not None
    }
    path = f"/api/jobs/{arguments.job_id}/{arguments.action}"
    return _post_action(arguments, path, options)


def run_printer_action(arguments: argparse.Namespace) -> int:
    return _post_action(arguments, f"/api/printers/{arguments.printer}/{arguments.action}", {})


def _post_action(arguments: argparse.Namespace, path: str, options: dict[str, Any]) -> int:
    settings = load_settings(arguments)
    token = _token(arguments, settings.server.auth.admin_tokens or settings.server.auth.tokens)
    body = json.dumps(options).encode()
    status, answer = _call("POST", _base_url(arguments, settings) + path, token, body)
    if arguments.json:
        print(json.dumps(answer, indent=2))
    elif status != 200:
        _print_error(status, answer)
    else:
        print(_describe(answer))
    return EXIT_OK if status == 200 else EXIT_FAILED


def _print_error(status: int, answer: Any) -> None:
    reason = answer.get("reason") or answer.get("error") if isinstance(answer, dict) else answer
    print(f"hotfolder-feeder: HTTP {status}: {reason}", file=sys.stderr)


_OUTCOMES = {
    "retried": "{} deliveries put back to pending",
    "reprinted": "{} files to be written again",
    "cancelled": "{} waiting deliveries cancelled",
    "recalled": "{} files recalled from the hot folder",
    "priority": "priority is now {}",
}


def _describe(answer: dict[str, Any]) -> str:
    if "paused" in answer:
        return f"printer {answer['printer']} {'paused: it gets no new files' if answer['paused'] else 'resumed'}"
    parts = [template.format(answer[key]) for key, template in _OUTCOMES.items() if key in answer]
    return f"job {answer.get('job_id')}: " + "; ".join(parts)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "none"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


# demo


def run_demo(arguments: argparse.Namespace) -> int:
    from .demo import run

    logs.configure("warning", "console")
    return asyncio.run(run(keep=arguments.keep))


if __name__ == "__main__":
    raise SystemExit(main())
