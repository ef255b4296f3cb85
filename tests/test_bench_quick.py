"""The benchmark's quick mode: every scenario runs and produces its rows. No time is asserted."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 300
SCENARIOS = {
    1: "Throughput",
    2: "CPU per GiB",
    3: "Memory",
    4: "Push latency",
    5: "Pickup detection",
    6: "Status API under load",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run `python bench/run.py --quick` once for the module; return the process and the page."""
    folder = tmp_path_factory.mktemp("bench")
    output = folder / "results.md"
    process = subprocess.run(
        [sys.executable, str(REPOSITORY / "bench" / "run.py"), "--quick", "--output", str(output), "--workdir", str(folder)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=folder,
    )  # fmt: skip
    page = output.read_text() if output.exists() else ""
    return process, page


def summary_rows(page: str) -> dict[int, list[str]]:
    """Return the summary table's cells by scenario number."""
    summary = page.split("### Summary", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in summary.splitlines():
        match = re.match(r"\| (\d)\. ", line)
        if match:
            rows[int(match.group(1))] = [cell.strip() for cell in line.strip("|").split("|")]
    return rows


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_quick_run_exits_zero(quick_run: tuple[subprocess.CompletedProcess[str], str]) -> None:
    """The quick run completes every scenario and exits 0."""
    process, _ = quick_run
    assert process.returncode == 0, process.stderr[-3000:]


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_quick_summary_has_every_scenario(quick_run: tuple[subprocess.CompletedProcess[str], str]) -> None:
    """The summary table has one measured row per scenario, none marked as failed."""
    _, page = quick_run
    rows = summary_rows(page)
    assert sorted(rows) == sorted(SCENARIOS)
    for number, title in SCENARIOS.items():
        cells = rows[number]
        assert cells[0] == f"{number}. {title}"
        assert cells[1] != "—", f"scenario {number} has no headline figure"
        assert cells[-1] != "failed to run", f"scenario {number} failed: {page}"


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_quick_sections_have_tables(quick_run: tuple[subprocess.CompletedProcess[str], str]) -> None:
    """Each scenario has its own section with a reference and at least one table row."""
    _, page = quick_run
    for number, title in SCENARIOS.items():
        section = page.split(f"### {number}. {title}\n", 1)[1].split("\n### ", 1)[0]
        assert section.startswith("\nReference: ")
        table_rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
        assert len(table_rows) >= 2, f"scenario {number} has no measured row:\n{section}"


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_quick_page_describes_run(quick_run: tuple[subprocess.CompletedProcess[str], str]) -> None:
    """The page names the command, the machine and the origin that served the artwork."""
    _, page = quick_run
    assert "`python bench/run.py --quick --output " in page
    for name in ("CPU", "memory", "disk", "kernel", "origin", "curl"):
        assert f"| {name} |" in page
    origin = "nginx/" if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else "Python origin"
    assert origin in page


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_missing_curl_skips_reference(tmp_path: Path) -> None:
    """Without curl on PATH, the curl rows state that the reference was skipped, and the run passes."""
    output = tmp_path / "results.md"
    # The sbin folders hold nginx but not curl, which is in /usr/bin.
    path = "/usr/local/sbin:/usr/sbin:/sbin"
    process = subprocess.run(
        [
            sys.executable, str(REPOSITORY / "bench" / "run.py"), "--quick", "--only", "throughput,memory",
            "--output", str(output), "--workdir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=tmp_path, env={**os.environ, "PATH": path},
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    page = output.read_text()
    assert "curl not installed" in page
    assert "curl is not installed, so the reference was skipped" in page
    assert sorted(summary_rows(page)) == [1, 2, 3]


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_python_origin_fallback(tmp_path: Path) -> None:
    """With --python-origin, the throughput scenario runs against the project's Python origin."""
    output = tmp_path / "results.md"
    process = subprocess.run(
        [
            sys.executable, str(REPOSITORY / "bench" / "run.py"), "--quick", "--python-origin",
            "--only", "throughput", "--output", str(output), "--workdir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=tmp_path,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    page = output.read_text()
    assert "Python origin (hotfolder_feeder.origin.ArtworkOrigin)" in page
    rows = summary_rows(page)
    assert sorted(rows) == [1, 2]
