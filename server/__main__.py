"""`python -m server` serves; `python -m server admin ...` administers."""

from __future__ import annotations

import argparse
import asyncio
import sys

from server import admin, logs
from server.settings import Settings, SettingsError


def configure_logging(level: str, fmt: str = "plain") -> None:
    logs.configure(level, fmt)


def load_settings() -> Settings | None:
    """The settings from the environment, or None once every problem with them has been
    told in one line (the caller exits with status 2)."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        logs.configure("INFO", "plain")
        logs.settings_log.error("%s", exc)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server")
    sub = parser.add_subparsers(dest="mode")
    sub.add_parser("serve", help="run the web process (the default)")
    admin.parser(sub)
    args = parser.parse_args(argv)
    settings = load_settings()
    if settings is None:
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.mode == "admin":
        return asyncio.run(admin.run(settings, args))
    from server.serve import serve

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
