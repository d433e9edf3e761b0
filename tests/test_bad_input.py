"""A battery of malformed requests against every widget endpoint, on both databases.

Every one must get a 4xx with a JSON body that says why ("error" or "message"), never a
500, and none may change the database: the test snapshots every table before and after."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
from aiohttp.test_utils import TestClient
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from server.services import SERVICES
from tests.conftest import SECRET, Visitor, World

NOT_FOUND = {"error": "Resource could not be found"}
W = "/api/v1/widget"

# Tables that change on their own, with no request: the outbox relay records how far it has
# published (its row appears once it first has).
VOLATILE = {"relay_state"}


@dataclass
class Case:
    method: str
    path: str  # relative to /api/v1/widget, or absolute when it starts with "/"
    body: Any = None  # JSON-encoded unless `raw`
    raw: bytes | None = None
    auth: str | None = "valid"  # "valid", None (no header) or a literal token
    token: str | None = "valid"  # website_token: "valid", None (absent) or a literal
    status: int | None = None  # exact status expected, else any 4xx
    expect: dict[str, Any] | None = None  # exact body expected
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""


# Endpoints, with whether they need the contact JWT and whether they read a JSON body.
VISITOR_ENDPOINTS = [
    ("GET", "conversations"),
    ("POST", "conversations"),
    ("POST", "conversations/set_custom_attributes"),
    ("POST", "conversations/destroy_custom_attributes"),
    ("POST", "conversations/toggle_typing"),
    ("POST", "conversations/update_last_seen"),
    ("GET", "conversations/toggle_status"),
    ("POST", "conversations/voice_transcript"),
    ("GET", "messages"),
    ("POST", "messages"),
    ("GET", "contact"),
    ("PATCH", "contact"),
    ("PATCH", "contact/set_user"),
]
PUBLIC_ENDPOINTS = [
    ("GET", "inbox_members"),
    ("GET", "conversations/voice_signed_url"),
    ("POST", "config"),
]
BODY_ENDPOINTS = [(m, p) for m, p in VISITOR_ENDPOINTS if m != "GET"] + [("POST", "config")]

# A body that is valid for each endpoint, to wrap one bad field at a time.
VALID = {
    "conversations": {"message": {"content": "x"}},
    "messages": {"message": {"content": "x"}},
    "conversations/voice_transcript": {"source": "user", "content": "x"},
}


def deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


HUGE_ATTRS = {f"k{i}": "v" * 100 for i in range(400)}  # ~40 KB, under the body limit
BAD_ATTRS = [
    "x",
    ["a"],
    5,
    True,
    HUGE_ATTRS,
    {"k": "x" * 20_000},
    deep(300),
    deep(254),
    deep(252),
    deep(40),
]
BAD_STRINGS = [[], {}, ["x"], {"a": "b"}, True, False]
NUL = "a\x00b"


def field_cases(path: str, make: Any, values: list[Any], note: str) -> list[Case]:
    method = "PATCH" if path.startswith("contact") else "POST"
    return [Case(method, path, body=make(v), note=f"{note}={v!r:.40}") for v in values]


def wrong_type_cases() -> list[Case]:
    cases: list[Case] = []
    for path in ("conversations", "messages"):
        cases += field_cases(path, lambda v: {"message": v}, ["hi", [], 5, True], "message")
        for key in ("content", "echo_id", "timestamp", "referer_url"):
            cases += field_cases(
                path,
                lambda v, k=key: {"message": {"content": "x", k: v}},
                [*BAD_STRINGS, NUL, "y" * 160_000 if key == "content" else "y" * 5000],
                f"message.{key}",
            )
    cases += field_cases(
        "messages",
        lambda v: {"message": {"content": "x", "reply_to": v}},
        ["abc", {}, [1], 1.5, 2**63, "1e3", True],
        "reply_to",
    )
    cases += field_cases(
        "conversations",
        lambda v: {**VALID["conversations"], "contact": v},
        ["jane", [], 5],
        "contact",
    )
    for key, long in (("name", 300), ("email", 400), ("phone_number", 40)):
        cases += field_cases(
            "conversations",
            lambda v, k=key: {**VALID["conversations"], "contact": {k: v}},
            [*BAD_STRINGS, NUL, "y" * long],
            f"contact.{key}",
        )
    cases += field_cases(
        "conversations",
        lambda v: {**VALID["conversations"], "contact": {"email": v}},
        ["not-an-email", "@x.io", "x@"],
        "contact.email",
    )
    cases += field_cases(
        "conversations",
        lambda v: {**VALID["conversations"], "custom_attributes": v},
        BAD_ATTRS,
        "custom_attributes",
    )
    cases += field_cases(
        "conversations/set_custom_attributes",
        lambda v: {"custom_attributes": v},
        [*BAD_ATTRS, None],
        "custom_attributes",
    )
    cases.append(Case("POST", "conversations/set_custom_attributes", body={}, note="missing"))
    for key in ("custom_attribute", "custom_attributes"):
        cases += field_cases(
            "conversations/destroy_custom_attributes",
            lambda v, k=key: {k: v},
            [5, [1], {}, {"a": 1}, [["a"]], [f"k{i}" for i in range(101)], True],
            key,
        )
    cases += field_cases(
        "conversations/toggle_typing",
        lambda v: {"typing_status": v},
        ["maybe", 1, [], {}, None, True, "ON"],
        "typing_status",
    )
    cases += field_cases(
        "conversations/voice_transcript",
        lambda v: {"source": v, "content": "x"},
        ["bot", 1, ["user"], {}, None, NUL],
        "source",
    )
    cases += field_cases(
        "conversations/voice_transcript",
        lambda v: {"source": "user", "content": v},
        [None, "", "  ", 5, [], {}, True, NUL, "y" * 160_000],
        "content",
    )
    cases += field_cases(
        "conversations/voice_transcript",
        lambda v: {"source": "ai", "content": "x", "event_id": v},
        [{}, [], True, "", "e" * 300, NUL, 2.5],
        "event_id",
    )
    for path in ("contact", "contact/set_user"):
        for key, long in (
            ("name", 300),
            ("email", 400),
            ("phone_number", 40),
            ("avatar_url", 3000),
            ("identifier", 300),
        ):
            cases += field_cases(
                path, lambda v, k=key: {k: v}, [*BAD_STRINGS, NUL, "y" * long], key
            )
        cases += field_cases(path, lambda v: {"email": v}, ["nope", "@a", "b@"], "email")
        for key in ("custom_attributes", "additional_attributes"):
            cases += field_cases(path, lambda v, k=key: {k: v}, BAD_ATTRS, key)
        cases += field_cases(
            path,
            lambda v: {"identifier": "u-1", "identifier_hash": v},
            ["0" * 64, "", "é" * 8, [], {}, NUL, "f" * 300],
            "identifier_hash",
        )
    cases += field_cases("contact/set_user", lambda v: {"identifier": v}, ["", "   "], "identifier")
    return cases


def body_shape_cases() -> list[Case]:
    """Not a JSON object at all, sent to every endpoint that reads a body."""
    raws = [
        b"{",
        b'{"message": ',
        b"not json",
        b'{"a": 1,}',
        b"\xff\xfe\x00",
        b"[" * 3000 + b"]" * 3000,
        b'{"a": "\\ud800"}',
        b'{"a": 1e999}',
        b"[]",
        b'[{"message": {"content": "x"}}]',
        b'"a string"',
        b"42",
        b"null",
        b"true",
    ]
    cases = []
    for method, path in BODY_ENDPOINTS:
        for raw in raws:
            cases.append(
                Case(
                    method,
                    path,
                    raw=raw,
                    headers={"Content-Type": "application/json"},
                    status=400,
                    note=f"raw {raw[:20]!r}",
                )
            )
    return cases


def oversized_cases(max_body: int) -> list[Case]:
    big = orjson.dumps({"message": {"content": "x" * (max_body + 10)}})
    return [
        Case(
            method,
            path,
            raw=big,
            headers={"Content-Type": "application/json"},
            status=413,
            note="body over max_body_bytes",
        )
        for method, path in BODY_ENDPOINTS
    ]


def auth_cases(bad_tokens: dict[str, str]) -> list[Case]:
    cases = []
    for method, path in VISITOR_ENDPOINTS:
        body = VALID.get(path, {"custom_attributes": {"a": 1}, "typing_status": "on"})
        cases.append(
            Case(method, path, body=body, auth=None, status=404, expect=NOT_FOUND, note="no JWT")
        )
        for name, token in bad_tokens.items():
            cases.append(
                Case(method, path, body=body, auth=token, status=404, expect=NOT_FOUND, note=name)
            )
    return cases


def website_token_cases() -> list[Case]:
    tokens = {
        "unknown": "nope",
        "empty": "",
        "long": "a" * 5000,
        "nul": "%00",
        "nul inside": "abc%00def",
        "lone surrogate": "%ED%A0%80",
        "bad utf8": "%FF%FE",
        "sql": "x'%20OR%20'1'='1",
    }
    cases = []
    for method, path in VISITOR_ENDPOINTS + PUBLIC_ENDPOINTS:
        body = VALID.get(path, {})
        for name, token in tokens.items():
            cases.append(
                Case(
                    method,
                    path,
                    body=body,
                    token=token,
                    status=404,
                    expect=NOT_FOUND,
                    note=f"website_token {name}",
                )
            )
        cases.append(
            Case(
                method,
                path,
                body=body,
                token=None,
                status=404,
                expect=NOT_FOUND,
                note="no website_token",
            )
        )
        if method != "GET":
            cases.append(
                Case(
                    method,
                    path,
                    body={**body, "website_token": ["x"]},
                    token=None,
                    status=404,
                    expect=NOT_FOUND,
                    note="website_token list in body",
                )
            )
    for name, token in tokens.items():
        cases.append(
            Case(
                "GET",
                "/widget",
                token=token,
                status=404,
                expect={"error": "web widget does not exist"},
                note=f"page {name}",
            )
        )
    return cases


def query_cases() -> list[Case]:
    values = ["abc", "1.5", "--5", "%C2%B2", "9" * 30, "%00", "1e3", "0x10", "%EF%BC%91"]
    cases = []
    for key in ("before", "after"):
        for value in values:
            cases.append(Case("GET", f"messages?{key}={value}", status=400, note=f"{key}={value}"))
    return cases


async def snapshot(client: TestClient) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the database holds, in a stable order."""
    db = client.app[SERVICES].db

    async def op(conn: AsyncConnection) -> dict[str, list[tuple[Any, ...]]]:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        out = {}
        for name in sorted(set(names) - VOLATILE):
            result = await conn.exec_driver_sql(f'SELECT * FROM "{name}"')
            out[name] = sorted((tuple(row) for row in result), key=repr)
        return out

    return await db.read(op)


def jwt_variants(world: World, visitor: Visitor) -> dict[str, str]:
    claims = jwt.decode(visitor.auth_token or "", SECRET, algorithms=["HS256"])
    now = int(time.time())
    return {
        "garbage": "not-a-jwt",
        "forged": jwt.encode(claims, "wrong-secret-" + "z" * 40, algorithm="HS256"),
        "expired": jwt.encode(
            {**claims, "iat": now - 200 * 86400, "exp": now - 60}, SECRET, algorithm="HS256"
        ),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "no exp": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"}, SECRET, algorithm="HS256"
        ),
        "unknown source_id": jwt.encode(
            {**claims, "source_id": "00000000-0000-0000-0000-000000000000"},
            SECRET,
            algorithm="HS256",
        ),
        "other inbox": jwt.encode(
            {**claims, "inbox_id": world.other_inbox["id"]}, SECRET, algorithm="HS256"
        ),
        "inbox_id string": jwt.encode(
            {**claims, "inbox_id": str(claims["inbox_id"])}, SECRET, algorithm="HS256"
        ),
        "source_id list": jwt.encode(
            {**claims, "source_id": [claims["source_id"]]}, SECRET, algorithm="HS256"
        ),
        "huge": "a" * 5000,
    }


async def send(client: TestClient, case: Case, visitor: Visitor, world: World) -> Any:
    url = case.path if case.path.startswith("/") else f"{W}/{case.path}"
    if case.token is not None:
        token = world.inbox["website_token"] if case.token == "valid" else case.token
        url += ("&" if "?" in url else "?") + f"website_token={token}"
    headers = dict(case.headers)
    if case.auth == "valid":
        headers["X-Auth-Token"] = visitor.auth_token or ""
    elif case.auth is not None:
        headers["X-Auth-Token"] = case.auth
    data = case.raw
    if data is None and case.body is not None and case.method != "GET":
        data = json.dumps(case.body).encode()  # stdlib: deeper nesting than orjson
        headers.setdefault("Content-Type", "application/json")
    return await client.request(case.method, url, data=data, headers=headers)


async def run_battery(
    client: TestClient, visitor: Visitor, world: World, cases: list[Case]
) -> list[str]:
    problems = []
    for case in cases:
        resp = await send(client, case, visitor, world)
        text = await resp.text()
        where = f"{case.method} {case.path} [{case.note}] -> {resp.status} {text[:120]}"
        if not 400 <= resp.status < 500:
            problems.append(f"not a 4xx: {where}")
            continue
        if case.status is not None and resp.status != case.status:
            problems.append(f"expected {case.status}: {where}")
            continue
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            problems.append(f"not JSON: {where}")
            continue
        if not isinstance(body, dict) or not (
            isinstance(body.get("error"), str) or isinstance(body.get("message"), str)
        ):
            problems.append(f"no error/message: {where}")
        elif case.expect is not None and body != case.expect:
            problems.append(f"expected {case.expect}: {where}")
    return problems


async def prepared(client: TestClient, world: World) -> Visitor:
    """A visitor with an open conversation, so every validation is reached."""
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    resp = await visitor.post(
        "conversations",
        {"message": {"content": "hello"}, "custom_attributes": {"keep": "me"}},
    )
    assert resp.status == 200
    await visitor.send("second")
    return visitor


async def check(client: TestClient, world: World, cases: list[Case]) -> None:
    visitor = await prepared(client, world)
    before = await snapshot(client)
    problems = await run_battery(client, visitor, world, cases)
    after = await snapshot(client)
    assert problems == [], f"{len(problems)} of {len(cases)} cases failed:\n" + "\n".join(problems)
    changed = [name for name in before if before[name] != after.get(name)]
    assert changed == [], f"tables changed by rejected requests: {changed}"
    assert set(after) == set(before)


async def test_wrong_types_oversized_fields_and_nul_bytes(client: TestClient, world: World) -> None:
    await check(client, world, wrong_type_cases())


async def test_bodies_that_are_not_json_objects(client: TestClient, world: World) -> None:
    await check(client, world, body_shape_cases())


async def test_oversized_body_is_413(client: TestClient, world: World) -> None:
    max_body = client.app[SERVICES].settings.max_body_bytes
    await check(client, world, oversized_cases(max_body))


async def test_missing_forged_and_expired_tokens(client: TestClient, world: World) -> None:
    visitor = await prepared(client, world)
    await check(client, world, auth_cases(jwt_variants(world, visitor)))


async def test_unknown_website_tokens(client: TestClient, world: World) -> None:
    await check(client, world, website_token_cases())


async def test_bad_paging_queries(client: TestClient, world: World) -> None:
    await check(client, world, query_cases())


async def test_the_battery_can_fail(client: TestClient, world: World) -> None:
    """The checks above are not vacuous: a valid request changes the snapshot and a
    request that succeeds is reported as a problem."""
    visitor = await prepared(client, world)
    before = await snapshot(client)
    ok = Case("POST", "messages", body={"message": {"content": "valid"}})
    problems = await run_battery(client, visitor, world, [ok])
    assert problems and problems[0].startswith("not a 4xx")
    assert await snapshot(client) != before
