"""The one rule for free-form attribute maps (contact and conversation `custom_attributes` /
`additional_attributes`): what a request gives is merged into what is stored, and the merged
map is refused past MAX_ATTRIBUTES_BYTES.

Checking only the part a request sends let one visitor grow a contact by 16 KB per PATCH
(300 PATCHes made a 5 MB contact that every event about it then carried to every agent
socket). Capping the merged, serialized map bounds what the row, every event payload and
every listing can carry, whatever the number of requests."""

from __future__ import annotations

from typing import Any

import orjson

from server.errors import unprocessable
from server.params import attributes


def merged_attributes(
    body: dict[str, Any],
    key: str,
    current: dict[str, Any],
    limit: int,
    *,
    label: str | None = None,
) -> dict[str, Any] | None:
    """`current` updated with the object `body[key]` (None when the body has no such key),
    or a 422 when the merged map would serialize to more than `limit` bytes; the caller
    writes nothing then. A map that replaces the stored one passes `current={}`."""
    given = attributes(body, key, label=label, max_bytes=None)
    if given is None:
        return None
    merged = {**current, **given}
    size = len(orjson.dumps(merged))
    if size > limit:
        raise unprocessable(
            f"{label or key} would be {size} bytes, over the limit of {limit} bytes: "
            "send fewer or smaller attributes, or remove some first"
        )
    return merged
