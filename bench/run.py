"""Benchmark hotfolder-feeder against a curl script and write the results as markdown.

Usage: python bench/run.py [--quick] [--output FILE]

Starts nginx on 127.0.0.1 as the artwork origin (the project's Python origin when nginx is
missing), runs every scenario against its reference in the same run, and prints one markdown
page: the machine, the command, a summary and a table per scenario. The full run takes about
10 minutes on a 2-core machine and needs about 20 GiB free in the work folder. `--quick` runs
small sizes once, in under a minute, to check that every scenario works. Its figures are not
results.
Everything stays on loopback and in a temporary folder, deleted at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

# Run as a script, this file's folder is on sys.path but the repository is not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import journal_load, memory, pickup, throughput  # noqa: E402
from bench.context import FULL, QUICK, Bench  # noqa: E402
from bench.curl import curl_version  # noqa: E402
from bench.report import Section, command_line, describe_machine, new_section, render  # noqa: E402

GROUPS = ("throughput", "memory", "pickup", "journal")
# The scenarios each group produces, so a group that fails still leaves its rows in the summary.
GROUP_SECTIONS = {"throughput": (1, 2), "memory": (3,), "pickup": (5,), "journal": (3, 4, 5, 6)}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each: checks that every scenario runs")
    parser.add_argument("--output", type=Path, help="also write the markdown results to this file")
    parser.add_argument(
        "--workdir", type=Path,
        help="folder in which a new work folder for artwork, hot folders and journals is made (default: the system's temporary folder)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work folder at the end")
    parser.add_argument("--python-origin", action="store_true", help="serve artwork with the Python origin even when nginx is installed")
    parser.add_argument(
        "--only", default=",".join(GROUPS),
        help=f"comma-separated groups to run, from {', '.join(GROUPS)} (default: all)",
    )  # fmt: skip
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.only.split(",")) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group in --only: {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return arguments


async def run(arguments: argparse.Namespace, workdir: Path) -> tuple[str, bool]:
    """Run the chosen groups; return the markdown page and whether every group completed."""
    bench = Bench(workdir, QUICK if arguments.quick else FULL, use_nginx=not arguments.python_origin)
    started = time.monotonic()
    sections: dict[int, Section] = {}
    complete = True
    groups: dict[str, Callable[[Bench, dict[int, Section]], Awaitable[None]]] = {
        "throughput": _throughput, "memory": _memory, "pickup": _pickup, "journal": _journal,
    }  # fmt: skip
    for name in GROUPS:
        if name not in arguments.only.split(","):
            continue
        _progress(f"running {name} ...")
        group_started = time.monotonic()
        try:
            await groups[name](bench, sections)
        except Exception as error:
            complete = False
            traceback.print_exc()
            for number in GROUP_SECTIONS[name]:
                _section(sections, number).error = f"{type(error).__name__}: {error}"
        _progress(f"{name} took {time.monotonic() - group_started:.0f} s")

    machine = describe_machine(workdir, bench.origin_description or "not started", curl_version())
    ordered = [sections[number] for number in sorted(sections)]
    minutes = (time.monotonic() - started) / 60
    return render(ordered, machine, command_line(), minutes, arguments.quick), complete


async def _throughput(bench: Bench, sections: dict[int, Section]) -> None:
    sections[1], sections[2] = await throughput.measure(bench)


async def _memory(bench: Bench, sections: dict[int, Section]) -> None:
    sections[3] = await memory.measure(bench)


async def _pickup(bench: Bench, sections: dict[int, Section]) -> None:
    sections[5] = await pickup.measure(bench)


# Runs last, because it adds rows to the sections of scenarios 3 and 5.
async def _journal(bench: Bench, sections: dict[int, Section]) -> None:
    figures = await journal_load.measure(bench)
    memory_section = _section(sections, 3)
    memory_section.rows += journal_load.memory_rows(bench, figures)
    memory_section.notes.append(journal_load.memory_note(bench, figures))
    _section(sections, 5).rows.append(journal_load.polling_row(bench, figures))
    sections[4] = journal_load.push_section(bench, figures)
    sections[6] = journal_load.status_section(bench, figures)


def _section(sections: dict[int, Section], number: int) -> Section:
    """Return a scenario's section, creating an empty one when its group did not run."""
    if number not in sections:
        sections[number] = new_section(number)
    return sections[number]


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.workdir is not None:
        arguments.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="hotfolder-feeder-bench-", dir=arguments.workdir))
    # nginx's workers may run as an unprivileged user and must reach the files below.
    workdir.chmod(0o755)
    try:
        page, complete = asyncio.run(run(arguments, workdir))
    finally:
        if arguments.keep:
            _progress(f"kept the work folder {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(page)
    if arguments.output is not None:
        arguments.output.write_text(page)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
