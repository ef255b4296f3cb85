"""The results as markdown: the machine, the command, a summary and one table per scenario."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from .context import CONCURRENCY, POLL_INTERVAL

MiB = 1024**2
GiB = 1024**3
REPOSITORY = Path(__file__).resolve().parent.parent


# Each scenario's title and what its reference is.
SCENARIOS: dict[int, tuple[str, str]] = {
    1: (
        "Throughput",
        f"`curl --parallel --parallel-max {CONCURRENCY}` fetching the same URLs into a folder on the "
        "same filesystem, in the same run. Wall time runs from the push to the last file renamed "
        "into the hot folder for the daemon, and is curl's process lifetime for curl.",
    ),
    2: (
        "CPU per GiB",
        "curl's user plus system CPU time from the kernel's resource usage of the child, for the "
        "same runs as scenario 1. The daemon's is read from /proc (psutil) for its process, from "
        "the push to the last file delivered.",
    ),
    3: (
        "Memory",
        "curl's peak RSS (ru_maxrss of the child) fetching the same large files with the same "
        "parallelism, and the daemon's own peak with small files for flatness. Daemon figures "
        "are VmHWM from /proc, the peak over the process's whole life.",
    ),
    4: (
        "Push latency",
        "a one-item push to the same daemon, alternating with the large pushes. Each time runs "
        "from sending the request to the full answer, which comes after the durable commit.",
    ),
    5: (
        "Pickup detection",
        "native mode: the benchmark's own inotify watch (watchdog) seeing the same deletions; "
        f"polling mode: the poll interval ({POLL_INTERVAL:g} s). The polling cost row compares "
        "the same daemon idle with empty hot folders.",
    ),
    6: (
        "Status API under load",
        "the same requests to the same daemon when its journal was empty. Requests are sequential "
        "over one keep-alive connection; `/api/jobs` lists the newest 100 jobs with their counts.",
    ),
}


@dataclass
class Row:
    """One measured figure beside its reference from the same run."""

    figure: str
    value: str
    reference: str = "—"
    ratio: float | None = None
    target: str = "—"
    met: bool | None = None


@dataclass
class Section:
    """One scenario's table, with the figure that stands for it in the summary."""

    number: int
    title: str
    reference: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    headline: int = 0
    error: str | None = None

    def verdict(self) -> str:
        if self.error is not None:
            return "failed to run"
        checked = [row.met for row in self.rows if row.met is not None]
        if not checked:
            return "no target"
        missed = checked.count(False)
        return "all targets met" if not missed else f"{missed} of {len(checked)} targets missed"


def new_section(number: int) -> Section:
    title, reference = SCENARIOS[number]
    return Section(number, title, reference)


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def mebibytes(value: float) -> str:
    return f"{value / MiB:.1f} MiB"


def ratio_text(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def met_text(met: bool | None) -> str:
    if met is None:
        return "—"
    return "yes" if met else "**no**"


def render(
    sections: list[Section], machine: list[tuple[str, str]], command: str, minutes: float, quick: bool
) -> str:
    """Render the whole results page."""
    lines = [
        "## Results",
        "",
        f"Command: `{command}`, run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, took {minutes:.1f} minutes.",
        "",
    ]
    if quick:
        lines += [
            "Quick mode: small sizes and one run each. It checks that every scenario runs; its "
            "figures are not results and its verdicts mean nothing.",
            "",
        ]
    lines += [
        "| machine | |",
        "| --- | --- |",
        *[f"| {name} | {value} |" for name, value in machine],
        "",
        "### Summary",
        "",
        "| scenario | headline figure | hotfolder-feeder | reference | ratio | target | met | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for section in sections:
        lines.append(_summary_row(section))
    for section in sections:
        lines += ["", *_section_lines(section)]
    return "\n".join(lines) + "\n"


def _summary_row(section: Section) -> str:
    name = f"{section.number}. {section.title}"
    if section.error is not None or not section.rows:
        return f"| {name} | — | — | — | — | — | — | {section.verdict()} |"
    row = section.rows[section.headline]
    return (
        f"| {name} | {row.figure} | {row.value} | {row.reference} | {ratio_text(row.ratio)} "
        f"| {row.target} | {met_text(row.met)} | {section.verdict()} |"
    )


def _section_lines(section: Section) -> list[str]:
    lines = [f"### {section.number}. {section.title}", "", f"Reference: {section.reference}", ""]
    if section.error is not None:
        lines += [f"The scenario failed: {section.error}", ""]
    if section.rows:
        lines += [
            "| figure | hotfolder-feeder | reference | ratio | target | met |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in section.rows:
            lines.append(
                f"| {row.figure} | {row.value} | {row.reference} | {ratio_text(row.ratio)} "
                f"| {row.target} | {met_text(row.met)} |"
            )
    if section.notes:
        lines += ["", *[f"- {note}" for note in section.notes]]
    return lines


# The machine


def describe_machine(workdir: Path, origin: str, curl: str) -> list[tuple[str, str]]:
    """Return the facts that the figures depend on, as (name, value) pairs."""
    return [
        ("CPU", f"{os.cpu_count()} cores, {_cpu_model()}"),
        ("memory", f"{psutil.virtual_memory().total / GiB:.1f} GiB"),
        ("disk", _disk(workdir)),
        ("disk write with fsync", _disk_speed(workdir)),
        ("kernel", f"Linux {platform.release()}"),
        ("system", _os_name()),
        ("Python", platform.python_version()),
        ("origin", origin),
        ("curl", curl),
        ("hotfolder-feeder", _commit()),
    ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown model"


def _disk(folder: Path) -> str:
    """Name the filesystem and device that hold `folder`, from /proc/self/mountinfo."""
    real = os.path.realpath(folder)
    best = ("/", "unknown", "unknown")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mount_point = fields[4]
        separator = fields.index("-")
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[0]):
            best = (mount_point, fields[separator + 1], fields[separator + 2])
    status = os.statvfs(folder)
    size = status.f_blocks * status.f_frsize / GiB
    return f"{best[1]} on {best[2]} ({size:.0f} GiB), work folder {folder}"


def _disk_speed(folder: Path) -> str:
    """Write 256 MiB in 4 MiB blocks, fsync it and return the speed, for reading the results."""
    path = folder / "disk-speed.tmp"
    block = os.urandom(4 * MiB)
    started = time.perf_counter()
    with path.open("wb") as file:
        for _ in range(64):
            file.write(block)
        os.fsync(file.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return f"{256 * MiB / elapsed / 1e6:.0f} MB/s (256 MiB, one file)"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return platform.platform()


def _commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPOSITORY, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit (git is missing or this is not a git checkout)"
    return f"commit {commit}" + (" with uncommitted changes" if changed else "")


def command_line() -> str:
    """Return the command that started this run, as a user would type it."""
    script = os.path.relpath(sys.argv[0], REPOSITORY) if sys.argv[0] else "bench/run.py"
    return shlex.join(["python", script, *sys.argv[1:]])
