"""JSON encoding in one place, so the whole server serializes the same way (orjson)."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


loads = orjson.loads
