"""`check-config`: explain a valid config and check the folders it names on this machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from .config import Settings
from .daemon import _check_listen_is_safe, _ssl_context
from .errors import ConfigError
from .watch import mount_of, watch_mode


def check_settings(settings: Settings, out: TextIO) -> int:
    """Print what the config means and what is wrong on this machine; return the problem count."""
    problems = 0
    out.write(f"listen: {settings.server.listen}, push path: {settings.server.path}\n")
    try:
        _check_listen_is_safe(settings)
    except ConfigError as error:
        problems += _problem(out, str(error))
    problems += _check_folder(out, "state_dir", settings.storage.state_dir, create=True)
    try:
        _ssl_context(settings)
    except ConfigError as error:
        problems += _problem(out, str(error))

    for printer in settings.printers:
        out.write(f"printer {printer.name}: hot folder {printer.hotfolder}\n")
        if _check_folder(out, f"printer {printer.name} hotfolder", printer.hotfolder, create=False):
            problems += 1
            continue
        mount = mount_of(printer.hotfolder)
        out.write(
            f"  filesystem {mount.fstype} mounted on {mount.mount_point}; "
            f"watch: {watch_mode(printer, mount.fstype)} (configured {printer.watch})\n"
        )
        if printer.require_mount and mount.mount_point == "/":
            problems += _problem(out, f"printer {printer.name}: require_mount is set but {printer.hotfolder} is not on a mounted filesystem")
        problems += _check_staging(out, printer.name, printer.hotfolder, printer.staging_dir)

    out.write(f"routing: {len(settings.routing.rules)} rules, default {settings.routing.default or 'none'}\n")
    out.write("config OK\n" if not problems else f"{problems} problem(s) found\n")
    return problems


def _check_folder(out: TextIO, label: str, folder: Path, create: bool) -> int:
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return _problem(out, f"{label} {folder} cannot be created: {error.strerror}")
    if not folder.is_dir():
        return _problem(out, f"{label} {folder} does not exist or is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        return _problem(out, f"{label} {folder} is not writable by this user")
    return 0


def _check_staging(out: TextIO, name: str, hotfolder: Path, staging: Path) -> int:
    existing = staging if staging.exists() else staging.parent
    if not existing.exists():
        return _problem(out, f"printer {name}: staging folder {staging} and its parent do not exist")
    if existing.stat().st_dev != hotfolder.stat().st_dev:
        return _problem(out, f"printer {name}: staging {staging} is not on the hot folder's filesystem, so hand-off would not be atomic")
    out.write(f"  staging {staging}: same filesystem as the hot folder\n")
    return 0


def _problem(out: TextIO, message: str) -> int:
    out.write(f"  PROBLEM: {message}\n")
    return 1
