"""Request bodies sent with a Content-Encoding, on both databases: a body that does not
decode (gzip or deflate that is garbage, cut short or of the other kind) was a 500, a
plain-text 400 or no answer at all; it must be a JSON 400 that changes nothing (the
battery from test_bad_input snapshots every table around the requests). Valid compressed
bodies still work, and a compression bomb meets the body limit."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import orjson
from aiohttp.test_utils import TestClient

from server.services import SERVICES
from tests.conftest import Visitor, World
from tests.test_bad_input import (
    BODY_ENDPOINTS,
    Case,
    check,
    prepared,
)

W = "/api/v1/widget"

# What a client could put on the wire under each Content-Encoding: garbage, a stream cut
# short, and a valid stream of the other kind.
VALID_JSON = orjson.dumps({"message": {"content": "x"}})
BAD_ENCODED = [
    ("gzip", b"not gzip at all"),
    ("gzip", gzip.compress(VALID_JSON)[:12]),
    ("gzip", b"\x1f\x8b\x08\x00" + b"\xff" * 40),
    ("deflate", b"not deflate"),
    ("deflate", b"\x78\x9c" + b"\xff" * 40),
    ("deflate", zlib.compress(VALID_JSON)[:-6]),
    ("deflate", gzip.compress(VALID_JSON)),
    ("gzip", zlib.compress(VALID_JSON)),
]


def encoding_cases() -> list[Case]:
    cases = []
    for method, path in BODY_ENDPOINTS:
        for encoding, raw in BAD_ENCODED:
            cases.append(
                Case(
                    method,
                    path,
                    raw=raw,
                    headers={"Content-Type": "application/json", "Content-Encoding": encoding},
                    status=400,
                    note=f"{encoding} {raw[:12]!r}",
                )
            )
    return cases


async def test_bodies_that_do_not_decompress_are_400(client: TestClient, world: World) -> None:
    await check(client, world, encoding_cases())


async def test_agent_bodies_that_do_not_decompress_are_400(
    client: TestClient, world: World
) -> None:
    """The agent API reads bodies through the same reader: the same 400."""
    visitor = await prepared(client, world)
    conv = await (await visitor.get("conversations")).json()
    url = f"/api/v1/accounts/{world.account['id']}/conversations/{conv['id']}/messages"
    for encoding, raw in BAD_ENCODED:
        resp = await client.post(
            url,
            data=raw,
            headers={
                "api_access_token": world.agent["access_token"],
                "Content-Type": "application/json",
                "Content-Encoding": encoding,
            },
        )
        assert resp.status == 400, (encoding, raw, await resp.text())
        body = await resp.json()
        assert encoding in body["error"], body


async def test_a_truncated_body_in_two_packets_is_answered(
    client: TestClient, world: World
) -> None:
    """A deflate stream cut short, its body sent after the headers: aiohttp's own decoder
    only noticed at the end of the message, outside the handler that was waiting for the
    body, and the request was never answered. The answer is a 400, at once, and the
    connection still serves the next request."""
    body = zlib.compress(VALID_JSON)[:-6]
    url = f"{W}/config?website_token={world.inbox['website_token']}"
    head = (
        f"POST {url} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: deflate\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head)
        await writer.drain()
        await asyncio.sleep(0.05)  # let the server start the handler on the head alone
        writer.write(body)
        await writer.drain()
        async with asyncio.timeout(10):  # a deadline for the answer, not a measurement
            status = await reader.readline()
            headers = await read_headers(reader)
            answer = orjson.loads(await reader.readexactly(int(headers["content-length"])))
        assert status.startswith(b"HTTP/1.1 400 "), status
        assert answer == {"error": "deflate body is truncated"}
        # The framing was intact: the same connection answers a valid request.
        writer.write(
            f"GET {W}/inbox_members?website_token=nope HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        )
        async with asyncio.timeout(10):
            assert (await reader.readline()).startswith(b"HTTP/1.1 404 ")
    finally:
        writer.close()


async def read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


async def test_compression_bombs_and_unknown_encodings(visitor: Visitor) -> None:
    """A small gzip body that decodes past the body limit is a 413, like a big plain body;
    an encoding we do not decode is a 415 that says what we accept."""
    limit = visitor.client.app[SERVICES].settings.max_body_bytes
    bomb = gzip.compress(b'{"message": {"content": "' + b" " * (limit * 4) + b'"}}')
    assert len(bomb) < limit // 50
    for encoding, raw, status, error in (
        ("gzip", bomb, 413, "request body too large"),
        (
            "br",
            b"\x0b\x02\x80{}\x03",
            415,
            "unsupported Content-Encoding 'br': send identity, gzip or deflate",
        ),
        ("gzip, gzip", gzip.compress(gzip.compress(VALID_JSON)), 415, None),
    ):
        resp = await visitor.client.post(
            visitor._url("messages"),
            data=raw,
            headers={
                "X-Auth-Token": visitor.auth_token or "",
                "Content-Type": "application/json",
                "Content-Encoding": encoding,
            },
        )
        assert resp.status == status, (encoding, await resp.text())
        body = await resp.json()
        if error:
            assert body == {"error": error}


async def test_a_valid_compressed_body_is_read(visitor: Visitor) -> None:
    """Compression is not refused, only broken compression: a gzip body is a message."""
    for encoding, raw in (
        ("gzip", gzip.compress(VALID_JSON)),
        ("deflate", zlib.compress(VALID_JSON)),
    ):
        resp = await visitor.client.post(
            visitor._url("messages"),
            data=raw,
            headers={
                "X-Auth-Token": visitor.auth_token or "",
                "Content-Type": "application/json",
                "Content-Encoding": encoding,
            },
        )
        assert resp.status == 200, (encoding, await resp.text())
        assert (await resp.json())["content"] == "x"
