"""Reading request input: the JSON body and typed fields, each with a clear 4xx on misuse."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from aiohttp import web

from server.content_encoding import decode_body
from server.errors import ApiError, bad_request
from server.services import SERVICES

MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_ATTRIBUTES_DEPTH = 32
MAX_NAME = 255
MAX_EMAIL = 320
_INT = re.compile(r"-?[0-9]{1,19}")

JSON_BODY = web.RequestKey("json_body", dict)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; {} when there is none. Cached on the request."""
    cached = request.get(JSON_BODY)
    if cached is not None:
        return cached
    raw = await read_body(request)
    raw = decode_body(raw, request.headers.get("Content-Encoding", ""), request.client_max_size)
    if not raw.strip():
        body: dict[str, Any] = {}
    else:
        if request.content_type.startswith("multipart/"):
            raise ApiError(415, {"error": "attachments are not supported by this server"})
        # Any other content type is read as JSON: curl's default form type included.
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"malformed JSON body: {exc.msg}") from None
        if not isinstance(parsed, dict):
            raise bad_request("JSON body must be an object")
        body = parsed
    request[JSON_BODY] = body
    return body


async def read_body(request: web.Request) -> bytes:
    """The raw body, within BODY_TIMEOUT (a client trickling a body holds a descriptor and a
    handler for as long as it likes otherwise): 408 past it. aiohttp enforces
    client_max_size (413). A body that has already arrived whole costs no timer."""
    if request.content.is_eof():
        return await request.read()
    timeout = request.app[SERVICES].settings.body_timeout
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, {"error": f"request body not received within {timeout:g} s"}) from None


def obj(body: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested object field, {} when absent."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{key} must be an object")
    return value


def opt_str(
    body: dict[str, Any], key: str, *, max_len: int = 1024, label: str | None = None
) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    name = label or key
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise bad_request(f"{name} must be a string")
    text = str(value)
    if len(text) > max_len:
        raise bad_request(f"{name} is too long (at most {max_len} characters)")
    if "\x00" in text:
        raise bad_request(f"{name} must not contain NUL characters")
    return text


def opt_int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise bad_request(f"{name} must be an integer")
    if isinstance(value, int):
        out = value
    elif isinstance(value, str) and _INT.fullmatch(value.strip()):
        # Only ASCII digits: str.isdigit() also accepts "²" and int() then raises.
        out = int(value.strip())
    else:
        raise bad_request(f"{name} must be an integer")
    if not -(2**62) < out < 2**62:
        raise bad_request(f"{name} is out of range")
    return out


def attributes(
    body: dict[str, Any],
    key: str,
    *,
    label: str | None = None,
    max_bytes: int | None = MAX_ATTRIBUTES_BYTES,
) -> dict[str, Any] | None:
    """A free-form attributes object, bounded in depth and (unless `max_bytes` is None, for
    maps that server.attributes caps once merged) in size."""
    value = body.get(key)
    if value is None:
        return None
    name = label or key
    if not isinstance(value, dict):
        raise bad_request(f"{name} must be an object")
    if _depth(value) > MAX_ATTRIBUTES_DEPTH:
        # Stored attributes are re-encoded inside event payloads a few levels deeper; past
        # orjson's nesting limit that encoding fails after the checks, as a 500.
        raise bad_request(f"{name} is nested too deeply (at most {MAX_ATTRIBUTES_DEPTH} levels)")
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        raise bad_request(f"{name} is not valid JSON") from None
    if max_bytes is not None and len(encoded) > max_bytes:
        raise bad_request(f"{name} is too large (at most {max_bytes} bytes)")
    return value


def key_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{key} must be a list of strings")
    if len(value) > 100:
        raise bad_request(f"{key} has too many entries (at most 100)")
    return value


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (iterative: no recursion limit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_ATTRIBUTES_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest
