"""`python -m server` serves; `python -m server migrate` brings the database schema to this
version's; `python -m server admin ...` administers; `python -m server new-migration`
writes the next schema revision (for developers, docs/migrations.md)."""

from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server")
    sub = parser.add_subparsers(dest="mode")
    sub.add_parser("serve", help="run the web process (the default)")
    migrate = sub.add_parser(
        "migrate", help="bring the database schema to this version's (DATABASE_URL)"
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="change nothing: exit 0 when the schema is this version's, else 2 with why",
    )
    new = sub.add_parser(
        "new-migration",
        help="write the next revision from the difference between server/store/tables.py "
        "and the schema the revisions make (developers; needs no database)",
    )
    new.add_argument("-m", "--message", required=True, help="what the revision changes")
    admin.parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "new-migration":
        from server.store.new_migration import write_revision

        print(write_revision(args.message))
        return 0
    settings = load_settings()
    if settings is None:
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from server.lifecycle import run_process

    if args.mode == "migrate":
        return run_process(migrate_database(settings, check=args.check), settings)
    if args.mode == "admin":
        return run_process(admin.run(settings, args), settings)
    from server.serve import serve

    return serve(settings)


async def migrate_database(settings: Settings, *, check: bool = False) -> int:
    """`migrate`: upgrade to this version's revision (or, with --check, only say whether
    it is there). Exit status 0 when it is, 2 (SchemaNotCurrent, told by run_process) when
    not."""
    import logging

    from server.store import migrate
    from server.store.db import Database, safe_database_url

    log = logging.getLogger("server.migrate")
    db = Database(settings.database_url, timeout=settings.db_timeout)
    where = safe_database_url(settings.database_url)
    try:
        if check:
            async with db.reader.connect() as conn:
                found = await migrate.check(conn, where)
        else:
            await db.migrate()
            async with db.reader.connect() as conn:
                found = await migrate.state(conn)
    finally:
        await db.close()
    log.info("the database at %s is at schema revision %s", where, ", ".join(found.current))
    return 0


if __name__ == "__main__":
    sys.exit(main())
