"""SQL access, one module per aggregate. Every function takes an open AsyncConnection and
runs inside the caller's transaction (see Database.read / Database.write)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import CursorResult, Result


def one(result: Result[Any] | CursorResult[Any]) -> dict[str, Any] | None:
    row = result.first()
    return dict(row._mapping) if row is not None else None


def all_rows(result: Result[Any] | CursorResult[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in result]
