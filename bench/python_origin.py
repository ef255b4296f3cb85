"""Serve a folder's files with the project's Python origin; the benchmark's fallback for nginx.

Usage: python bench/python_origin.py --root FOLDER

Registers every file in FOLDER at start, listens on 127.0.0.1 on a free port, prints one JSON
line `{"url": ...}` to stdout, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

import structlog

from hotfolder_feeder.origin import ArtworkOrigin


async def serve(root: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    async with ArtworkOrigin() as origin:
        for file in sorted(root.iterdir()):
            if file.is_file():
                origin.add_file(f"/{file.name}", file)
        print(json.dumps({"url": origin.base_url}), flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder whose files are served")
    arguments = parser.parse_args()

    # The parent reads only the first line of stdout, so the origin's per-request debug lines
    # must not fill the pipe.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(serve(arguments.root))


if __name__ == "__main__":
    main()
