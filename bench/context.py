"""The state every scenario shares: the work folder, the sizes of this mode, the origin and curl."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from .artwork import GiB, MiB, ArtworkWriter
from .curl import curl_path
from .origin import Origin, serve_folder


@dataclass(frozen=True)
class Sizes:
    """The workload of one mode. The full mode uses the sizes the targets are stated for."""

    runs: int
    throughput_count: int
    throughput_size: int
    mix_count: int
    mix_smallest: int
    mix_largest: int
    memory_count: int
    memory_large: int
    memory_small: int
    journal_jobs: int
    journal_items: int
    pushes: int
    push_items: int
    background_size: int
    pickup_samples: int
    idle_seconds: float
    api_requests: int


FULL = Sizes(
    runs=3,
    throughput_count=64, throughput_size=32 * MiB,
    mix_count=500, mix_smallest=1 * MiB, mix_largest=8 * MiB,
    memory_count=8, memory_large=1 * GiB, memory_small=128 * MiB,
    journal_jobs=10, journal_items=2_000,
    pushes=20, push_items=2_000, background_size=1 * GiB,
    pickup_samples=20, idle_seconds=20.0, api_requests=50,
)  # fmt: skip

# Small enough to finish in a few minutes; it checks that every scenario runs, not how fast.
QUICK = Sizes(
    runs=1,
    throughput_count=8, throughput_size=1 * MiB,
    mix_count=20, mix_smallest=64 * 1024, mix_largest=512 * 1024,
    memory_count=8, memory_large=8 * MiB, memory_small=1 * MiB,
    journal_jobs=2, journal_items=100,
    pushes=3, push_items=200, background_size=64 * MiB,
    pickup_samples=3, idle_seconds=2.0, api_requests=10,
)  # fmt: skip

# The daemon's default download concurrency, which curl's --parallel-max matches.
CONCURRENCY = 8
# The daemon's default poll interval, used by every polled printer in the benchmark.
POLL_INTERVAL = 2.0


@dataclass
class Bench:
    """The state of one benchmark run."""

    workdir: Path
    sizes: Sizes
    use_nginx: bool
    origin_description: str = ""

    def __post_init__(self) -> None:
        self.origin_root = self.workdir / "origin"
        self.origin_root.mkdir(parents=True, exist_ok=True)
        self.writer = ArtworkWriter(self.origin_root)

    @property
    def has_curl(self) -> bool:
        return curl_path() is not None

    @contextlib.asynccontextmanager
    async def origin(self) -> AsyncIterator[Origin]:
        """Serve the origin folder; the Python fallback serves only files that exist when it starts."""
        async with serve_folder(self.origin_root, self.workdir, self.use_nginx) as origin:
            self.origin_description = origin.description
            yield origin

    def folder(self, name: str) -> Path:
        """Return a new, empty folder for one step of a scenario."""
        path = self.workdir / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def remove(self, *paths: Path) -> None:
        """Delete files or folders, then flush, so their writeback cannot slow the next step."""
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        os.sync()
