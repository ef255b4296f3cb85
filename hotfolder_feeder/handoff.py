"""Staging and hand-off: how a downloaded file enters a hot folder.

Files are downloaded into a staging folder on the hot folder's own filesystem, under
`<delivery id>.part`, then fsynced and renamed into the hot folder. A rename within one
filesystem is atomic, so the RIP sees either nothing or the whole file under its final name.
The default staging folder is a dot-folder inside the hot folder, because that is the only place
certain to share its filesystem, and RIPs read the hot folder's own files, not its subfolders.
Every function here blocks; callers run them in a thread.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .config import PrinterSettings
from .errors import ConfigError

PART_SUFFIX = ".part"


def staging_path(printer: PrinterSettings, delivery_id: int) -> Path:
    return printer.staging_dir / f"{delivery_id}{PART_SUFFIX}"


def prepare_staging(printer: PrinterSettings) -> None:
    """Create the staging folder and check it shares the hot folder's filesystem.

    Raises ConfigError when it does not, because the hand-off rename would then be a copy that
    the RIP could see half-written.
    """
    printer.staging_dir.mkdir(parents=True, exist_ok=True)
    hotfolder_device = printer.hotfolder.stat().st_dev
    staging_device = printer.staging_dir.stat().st_dev
    if hotfolder_device != staging_device:
        raise ConfigError(
            f"printer {printer.name}: staging folder {printer.staging_dir} is not on the same "
            f"filesystem as hot folder {printer.hotfolder}, so the hand-off could not be an "
            "atomic rename; remove the staging key to use the default inside the hot folder"
        )


def hand_off(staged: Path, final: Path) -> None:
    """Make the staged file durable, then rename it into the hot folder, and drop its validator.

    Raises FileExistsError when a file of that name is already there: it is never overwritten.
    """
    with staged.open("rb") as file:
        os.fsync(file.fileno())
    if final.exists():
        raise FileExistsError(errno.EEXIST, "file exists in the hot folder", str(final))
    # NOTE: the check and the rename are two steps, so a file created under the same name in
    # between would be replaced. Only the feeder writes these names, so this is accepted.
    os.rename(staged, final)
    _fsync_folder(final.parent)
    staged.with_name(staged.name + ".validator").unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable. Some network filesystems cannot fsync a folder; that is fine."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(descriptor)


def list_files(hotfolder: Path) -> set[str]:
    """Return the names of the regular files in a hot folder, skipping dot-files and folders."""
    names = set()
    with os.scandir(hotfolder) as entries:
        for entry in entries:
            if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
                names.add(entry.name)
    return names


def remove_orphans(printer: PrinterSettings, keep: set[int]) -> list[str]:
    """Delete staging files whose delivery is no longer being worked on; return their names."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(printer.staging_dir))
    except FileNotFoundError:
        return removed
    for entry in entries:
        delivery_id = entry.name.partition(".")[0]
        is_ours = entry.name.endswith((PART_SUFFIX, PART_SUFFIX + ".validator"))
        if is_ours and delivery_id.isdigit() and int(delivery_id) not in keep:
            Path(entry.path).unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def recall(delivered: Path, target: Path) -> None:
    """Move a delivered file out of the hot folder; raises FileNotFoundError once it is gone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(delivered, target)
    _fsync_folder(delivered.parent)
