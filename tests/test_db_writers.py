"""DB_WRITERS: how many write transactions one process runs at once on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.settings import Settings
from server.store.db import Database


def test_setting(tmp_path: Any) -> None:
    assert Settings.from_env({"DATA_DIR": str(tmp_path)}).db_writers == 6
    assert Settings.from_env({"DATA_DIR": str(tmp_path), "DB_WRITERS": "3"}).db_writers == 3
    for bad in ("many", "0", "257"):  # 0 was quietly taken as 1: now it is an error
        with pytest.raises(SystemExit, match="DB_WRITERS"):
            Settings.from_env({"DATA_DIR": str(tmp_path), "DB_WRITERS": bad})


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_at_most_that_many_writes_at_once(db_url: str) -> None:
    db = Database(db_url, pg_writers=2)
    await db.start()
    running = peak = 0

    async def op(conn: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await conn.exec_driver_sql("SELECT pg_sleep(0.05)")
        running -= 1

    try:
        await asyncio.gather(*(db.write(op) for _ in range(6)))
    finally:
        await db.close()
    assert peak == 2
