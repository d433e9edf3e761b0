"""docs/openapi.json: a valid OpenAPI 3.1 document, served at GET /api/openapi.json, that
names every /api/ route the app registers (and no other), and that the answers of a real
widget and agent session, errors included, conform to, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from server.app import create_app
from server.ratelimit.rules import Rate, RateLimits
from tests.conftest import Visitor, build_world, make_settings

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
DOC = json.loads(DOC_PATH.read_text())
METHODS = ("get", "post", "patch", "put", "delete")


def documented_operations() -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in DOC["paths"].items() for m in item if m in METHODS}


def test_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1")
    validate(DOC)  # raises with the first problem


def test_every_api_route_is_documented_and_every_documented_path_exists(tmp_path: Any) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path)
    app = create_app(settings)
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(("/api/", "/webhooks/"))
        and route.method != "HEAD"
    }
    assert registered - documented_operations() == set(), "routes missing from the document"
    assert documented_operations() - registered == set(), "documented routes the app lacks"


class Checker:
    """Validates answers against the document: the status must be documented for the
    operation, a JSON body must match its schema, an empty one must be documented as empty,
    and documented headers (Retry-After) must be present."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.statuses: set[int] = set()

    def _response(self, method: str, template: str, status: int) -> dict[str, Any]:
        operation = DOC["paths"][template][method.lower()]
        spec = operation["responses"].get(str(status))
        assert spec is not None, f"{method} {template}: {status} is not documented"
        if "$ref" in spec:
            spec = DOC["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
        return spec

    async def check(self, resp: Any, method: str, template: str) -> Any:
        spec = self._response(method, template, resp.status)
        raw = await resp.read()
        for header in spec.get("headers", {}):
            assert header in resp.headers, f"{method} {template}: {header} missing"
        self.seen.add((method, template))
        self.statuses.add(resp.status)
        if "content" not in spec:
            assert raw == b"", f"{method} {template}: documented empty, got {raw[:200]!r}"
            return None
        assert resp.content_type == "application/json"
        body = json.loads(raw)
        schema = {"components": DOC["components"], **spec["content"]["application/json"]["schema"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
        assert not errors, f"{method} {template} {resp.status}: {errors[0].message}"
        return body


@pytest.fixture
async def api(db_url: str, tmp_path: Any, aiohttp_client: Any) -> TestClient:
    # A typing budget of 2 lets the session meet a 429 (with Retry-After) quickly.
    limits = RateLimits(typing_per_sender=Rate(2, 60))
    return await aiohttp_client(create_app(make_settings(db_url, tmp_path, rate_limits=limits)))


async def test_a_real_session_conforms_to_the_document(api: TestClient) -> None:
    from server.services import SERVICES

    world = await build_world(api.app[SERVICES].db)
    c = Checker()
    w = "/api/v1/widget"
    token = world.inbox["website_token"]

    resp = await api.get("/api/openapi.json")
    assert json.loads(await resp.read()) == DOC
    await c.check(resp, "GET", "/api/openapi.json")

    resp = await api.post(f"{w}/config?website_token={token}")
    cfg = await c.check(resp, "POST", f"{w}/config")
    v = Visitor(api, token)
    v.auth_token = cfg["website_channel_config"]["auth_token"]

    await c.check(await v.get("conversations"), "GET", f"{w}/conversations")  # {} before any
    await c.check(await v.get("messages"), "GET", f"{w}/messages")  # empty
    await c.check(await v.get("inbox_members"), "GET", f"{w}/inbox_members")
    created = await c.check(
        await v.post(
            "conversations",
            {"contact": {"email": "ada@example.com"}, "message": {"content": "Hi", "echo_id": "e"}},
        ),
        "POST",
        f"{w}/conversations",
    )
    await c.check(await v.get("conversations"), "GET", f"{w}/conversations")
    sent = await v.post("messages", {"message": {"content": "Anyone?", "echo_id": "e2"}})
    await c.check(sent, "POST", f"{w}/messages")
    await c.check(await v.get("messages?after=0"), "GET", f"{w}/messages")
    for status in ("on", "off"):
        typing = await v.post("conversations/toggle_typing", {"typing_status": status})
        await c.check(typing, "POST", f"{w}/conversations/toggle_typing")
    limited = await v.post("conversations/toggle_typing", {"typing_status": "on"})
    assert limited.status == 429
    await c.check(limited, "POST", f"{w}/conversations/toggle_typing")
    attrs = {"custom_attributes": {"plan": "pro"}}
    set_attrs = await v.post("conversations/set_custom_attributes", attrs)
    await c.check(set_attrs, "POST", f"{w}/conversations/set_custom_attributes")
    removed = await v.post("conversations/destroy_custom_attributes", {"custom_attribute": "plan"})
    await c.check(removed, "POST", f"{w}/conversations/destroy_custom_attributes")
    seen = await v.post("conversations/update_last_seen")
    await c.check(seen, "POST", f"{w}/conversations/update_last_seen")
    await c.check(await v.get("contact"), "GET", f"{w}/contact")
    patched = await v.patch("contact", {"name": "Ada", "custom_attributes": {"tier": 1}})
    await c.check(patched, "PATCH", f"{w}/contact")
    named = await v.patch("contact/set_user", {"identifier": "ada-1"})
    await c.check(named, "PATCH", f"{w}/contact/set_user")
    turn = {"source": "user", "content": "by voice", "event_id": "t1"}
    for _ in range(2):  # the second answer says duplicate
        said = await v.post("conversations/voice_transcript", turn)
        await c.check(said, "POST", f"{w}/conversations/voice_transcript")
    no_voice = await v.get("conversations/voice_signed_url")  # this inbox has no agent: 422
    await c.check(no_voice, "GET", f"{w}/conversations/voice_signed_url")
    dropped = await v.post("contact/destroy_custom_attributes", {"custom_attributes": ["tier"]})
    await c.check(dropped, "POST", f"{w}/contact/destroy_custom_attributes")
    mailed = await v.post("conversations/transcript")  # no SMTP_URL: 200, nothing sent
    await c.check(mailed, "POST", f"{w}/conversations/transcript")
    event = {"name": "webwidget.triggered", "event_info": {"referer": "https://a.example/"}}
    await c.check(await v.post("events", event), "POST", f"{w}/events")
    await c.check(await v.post("events", {"name": ""}), "POST", f"{w}/events")
    await c.check(await v.get("campaigns"), "GET", f"{w}/campaigns")
    # A voice call's lifecycle (tests/test_voice_calls.py has the rest of it).
    vc = f"{w}/conversations"
    for action, method, body in (
        ("inbox_config", "GET", None),
        ("voice_call_active", "GET", None),
        ("voice_heartbeat", "POST", {}),
        ("voice_link_elevenlabs", "POST", {"elevenlabs_conversation_id": "conv_openapi"}),
        ("voice_link_elevenlabs", "POST", {}),  # 400
        ("voice_call_active", "GET", None),
        ("voice_history?limit=5", "GET", None),
        ("voice_transcript_poll?synced_count=0", "GET", None),  # no API key: nothing
        ("voice_call_ended", "POST", {}),
        ("voice_heartbeat", "POST", {}),  # end_requested
    ):
        resp = await v.request(method, f"conversations/{action}", json=body)
        await c.check(resp, method, f"{vc}/{action.split('?')[0]}")
    hook = await api.post(
        "/webhooks/elevenlabs", json={"data": {"conversation_id": "conv_openapi"}}
    )
    await c.check(hook, "POST", "/webhooks/elevenlabs")  # 401: no signature

    # The agent side.
    agent = {"api_access_token": world.admin["access_token"]}
    await c.check(await api.get("/api/v1/profile", headers=agent), "GET", "/api/v1/profile")
    events_of = "/api/v1/accounts/{account_id}/contacts/{contact_id}/widget_events"
    listed = await api.get(
        f"/api/v1/accounts/{world.account['id']}/contacts/{cfg['contact']['id']}/widget_events",
        headers=agent,
    )
    assert len((await c.check(listed, "GET", events_of))["payload"]) == 1
    convs = "/api/v1/accounts/{account_id}/conversations"
    one = convs + "/{display_id}"
    base = f"/api/v1/accounts/{world.account['id']}/conversations"
    path = f"{base}/{created['id']}"
    await c.check(await api.get(base, headers=agent), "GET", convs)
    await c.check(await api.get(path, headers=agent), "GET", one)
    await c.check(await api.get(f"{path}/messages", headers=agent), "GET", one + "/messages")
    for reply in ({"content": "Hello Ada"}, {"content": "VIP", "private": True}):
        resp = await api.post(f"{path}/messages", json=reply, headers=agent)
        await c.check(resp, "POST", one + "/messages")
    # Labels, an interactive message and its answer, CSAT answers.
    account_labels = "/api/v1/accounts/{account_id}/labels"
    labels_url = f"/api/v1/accounts/{world.account['id']}/labels"
    for _ in range(2):  # the second is a taken title: 422
        resp = await api.post(labels_url, json={"title": "vip"}, headers=agent)
        await c.check(resp, "POST", account_labels)
    await c.check(await api.get(labels_url, headers=agent), "GET", account_labels)
    resp = await api.post(f"{path}/labels", json={"labels": ["vip", "new"]}, headers=agent)
    await c.check(resp, "POST", one + "/labels")
    await c.check(await api.get(f"{path}/labels", headers=agent), "GET", one + "/labels")
    await c.check(await v.post("labels", {"label": "vip"}), "POST", f"{w}/labels")
    await c.check(await v.request("DELETE", "labels/vip"), "DELETE", f"{w}/labels/{{label}}")
    select = {
        "content": "Pick",
        "content_type": "input_select",
        "content_attributes": {"items": [{"title": "A", "value": "a"}]},
    }
    sent = await c.check(
        await api.post(f"{path}/messages", json=select, headers=agent), "POST", one + "/messages"
    )
    pick = {"message": {"submitted_values": [{"title": "A", "value": "a"}]}}
    for message_id in (sent["id"], 999_999_999):  # the second: 404
        resp = await v.patch(f"messages/{message_id}", pick)
        await c.check(resp, "PATCH", f"{w}/messages/{{id}}")
    csat = "/api/v1/accounts/{account_id}/csat_survey_responses"
    csat_url = f"/api/v1/accounts/{world.account['id']}/csat_survey_responses"
    await c.check(await api.get(csat_url, headers=agent), "GET", csat)
    resp = await api.post(
        f"{path}/toggle_typing_status", json={"typing_status": "on"}, headers=agent
    )
    await c.check(resp, "POST", one + "/toggle_typing_status")
    resp = await api.post(f"{path}/update_last_seen", headers=agent)
    await c.check(resp, "POST", one + "/update_last_seen")
    resp = await api.post(f"{path}/toggle_status", headers=agent)
    await c.check(resp, "POST", one + "/toggle_status")
    resp = await api.post(f"{path}/toggle_status", json={"status": "open"}, headers=agent)
    await c.check(resp, "POST", one + "/toggle_status")
    resolved = await v.get("conversations/toggle_status")
    await c.check(resolved, "GET", f"{w}/conversations/toggle_status")
    # Issue 19: assignment, inbox members, search, the contact panel's endpoints.
    resp = await api.post(
        f"{path}/assignments", json={"assignee_id": world.admin["id"]}, headers=agent
    )
    assert (await c.check(resp, "POST", one + "/assignments"))["id"] == world.admin["id"]
    resp = await api.post(f"{path}/assignments", json={"assignee_id": None}, headers=agent)
    assert await c.check(resp, "POST", one + "/assignments") is None
    resp = await api.post(f"{path}/assignments", json={"assignee_id": 999_999}, headers=agent)
    await c.check(resp, "POST", one + "/assignments")  # 422
    acc = f"/api/v1/accounts/{world.account['id']}"
    members = f"{acc}/inbox_members/{world.inbox['id']}"
    resp = await api.get(members, headers=agent)
    await c.check(resp, "GET", "/api/v1/accounts/{account_id}/inbox_members/{inbox_id}")
    resp = await api.get(f"{base}/search?q=Anyone", headers=agent)
    assert (await c.check(resp, "GET", convs + "/search"))["data"]["payload"]
    resp = await api.get(f"{base}/search?q=a", headers=agent)
    await c.check(resp, "GET", convs + "/search")  # 400
    contact_t = "/api/v1/accounts/{account_id}/contacts/{contact_id}"
    contact_url = f"{acc}/contacts/{cfg['contact']['id']}"
    await c.check(await api.get(contact_url, headers=agent), "GET", contact_t)
    resp = await api.put(contact_url, json={"name": "Ada L."}, headers=agent)
    await c.check(resp, "PUT", contact_t)
    resp = await api.patch(contact_url, json={"email": "nope"}, headers=agent)
    await c.check(resp, "PATCH", contact_t)  # 422
    resp = await api.get(f"{contact_url}/conversations", headers=agent)
    await c.check(resp, "GET", contact_t + "/conversations")

    # Errors, each in the document's error shapes.
    resp = await api.post(f"{w}/config?website_token=unknown")
    await c.check(resp, "POST", f"{w}/config")
    resp = await api.get(f"{w}/messages?website_token={token}", headers={"X-Auth-Token": "x"})
    await c.check(resp, "GET", f"{w}/messages")
    raw_url = f"{w}/messages?website_token={token}"

    async def raw(data: bytes, content_type: str = "application/json") -> Any:
        headers = {"X-Auth-Token": v.auth_token or "", "Content-Type": content_type}
        return await api.post(raw_url, data=data, headers=headers)

    await c.check(await raw(b"{"), "POST", f"{w}/messages")
    await c.check(await v.post("messages", {"message": {"content": " "}}), "POST", f"{w}/messages")
    multipart = await raw(b"--x--", "multipart/form-data; boundary=x")  # no content, no file
    await c.check(multipart, "POST", f"{w}/messages")
    # Files (multipart): the answer with its attachments; and multipart where no files go.
    upload = aiohttp.FormData()
    upload.add_field("message[content]", "a file")
    upload.add_field(
        "message[attachments][]", b"hello", filename="a.txt", content_type="text/plain"
    )
    resp = await api.post(raw_url, data=upload, headers={"X-Auth-Token": v.auth_token or ""})
    assert (await c.check(resp, "POST", f"{w}/messages"))["attachments"]
    resp = await api.post(
        f"{w}/conversations/toggle_typing?website_token={token}",
        data=b"--x--",
        headers={
            "X-Auth-Token": v.auth_token or "",
            "Content-Type": "multipart/form-data; boundary=x",
        },
    )
    await c.check(resp, "POST", f"{w}/conversations/toggle_typing")
    await c.check(await raw(b"{" + b" " * (2 << 20) + b"}"), "POST", f"{w}/messages")
    await c.check(await api.get(base, headers={"api_access_token": "bad"}), "GET", convs)
    await c.check(await api.get(f"{base}?status=nope", headers=agent), "GET", convs)
    await c.check(await api.get(f"{base}/999999", headers=agent), "GET", one)
    incoming = {"content": "x", "message_type": "incoming"}
    resp = await api.post(f"{path}/messages", json=incoming, headers=agent)
    await c.check(resp, "POST", one + "/messages")

    assert c.seen == documented_operations(), documented_operations() - c.seen
    assert {200, 204, 400, 401, 404, 413, 415, 422, 429} <= c.statuses
