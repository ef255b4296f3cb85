"""Artwork files for the origin to serve: a PNG signature, then random bytes.

The daemon checks that a .png body starts with the PNG signature, so every file starts with it.
Drawing fresh random bytes runs at about 0.1 GiB/s on the benchmark machine, too slow for the
12 GiB a full run serves, so each file is cut from one random pool at its own offset instead.
The bytes are incompressible and differ from file to file, which is all a download measures.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POOL_SIZE = 64 * 1024**2
WRITE_SIZE = 4 * 1024**2
MiB = 1024**2
GiB = 1024**3


@dataclass(frozen=True)
class Artwork:
    """One file served by the origin: its name (also its URL path) and size in bytes."""

    name: str
    size: int


class ArtworkWriter:
    """Writes artwork files into one folder from a random pool made once."""

    def __init__(self, folder: Path, seed: int = 1) -> None:
        self.folder = folder
        self._random = random.Random(seed)
        self._pool = self._random.randbytes(POOL_SIZE)
        self._files_written = 0

    def write(self, name: str, size: int) -> Artwork:
        """Write `name` with `size` bytes, the signature included, and return it."""
        if size < len(PNG_SIGNATURE):
            raise ValueError(f"an artwork of {size} bytes cannot hold the {len(PNG_SIGNATURE)}-byte PNG signature")

        # An odd step gives each of the first 2**26 files its own start offset in the pool.
        offset = (self._files_written * 7_919_993) % POOL_SIZE
        self._files_written += 1

        with (self.folder / name).open("wb") as file:
            file.write(PNG_SIGNATURE)
            remaining = size - len(PNG_SIGNATURE)
            while remaining:
                length = min(WRITE_SIZE, remaining, POOL_SIZE - offset)
                file.write(self._pool[offset : offset + length])
                remaining -= length
                offset = (offset + length) % POOL_SIZE
        return Artwork(name, size)

    def write_many(self, prefix: str, sizes: Iterable[int]) -> list[Artwork]:
        """Write one file per size, named `<prefix>-0000.png` and up, then flush them to disk.

        The flush keeps the kernel's writeback of these files out of the timed runs that follow.
        """
        written = [self.write(f"{prefix}-{index:04d}.png", size) for index, size in enumerate(sizes)]
        os.sync()
        return written

    def mixed_sizes(self, count: int, smallest: int, largest: int) -> list[int]:
        """Return `count` sizes drawn uniformly from `smallest` to `largest` bytes, repeatably."""
        return [self._random.randint(smallest, largest) for _ in range(count)]
