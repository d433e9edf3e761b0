"""`python -m server` serves; `python -m server admin ...` administers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from server import admin
from server.settings import Settings


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server")
    sub = parser.add_subparsers(dest="mode")
    sub.add_parser("serve", help="run the web process (the default)")
    admin.parser(sub)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    if args.mode == "admin":
        return asyncio.run(admin.run(settings, args))
    from server.serve import serve

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
