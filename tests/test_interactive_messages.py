"""Interactive messages and CSAT over real HTTP on both databases (issue 17 item 2): agents send
input_email, input_select, form, cards and input_csat with their content_attributes, checked
and bounded; the visitor answers with PATCH /api/v1/widget/messages/:id (checked against
what the message offered, message.updated on real sockets, 404 for a message that is not
theirs); resolving a conversation of an inbox with the CSAT setting sends the survey, whose
answers agents list at /api/v1/accounts/{id}/csat_survey_responses."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.auth import identifier_hash
from server.ratelimit import Rate, RateLimits
from server.services import SERVICES
from server.store import accounts as accounts_store
from tests.conftest import Visitor, World, build_world, make_settings
from tests.test_agent_api import call, started
from tests.test_realtime_events import agent_cable, relayed, visitor_cable

API = "/api/v1"

SELECT = {
    "content": "Pick one",
    "content_type": "input_select",
    "content_attributes": {
        "items": [{"title": "Sales", "value": "sales"}, {"title": "Support", "value": "support"}]
    },
}
FORM = {
    "content": "Tell us more",
    "content_type": "form",
    "content_attributes": {
        "items": [
            {"name": "email", "label": "Email", "type": "email", "required": True},
            {"name": "note", "label": "Note", "type": "text_area", "placeholder": "..."},
            {
                "name": "plan",
                "label": "Plan",
                "type": "select",
                "options": [{"label": "Free", "value": "free"}, {"label": "Pro", "value": "pro"}],
            },
        ]
    },
}
CARDS = {
    "content": "Our products",
    "content_type": "cards",
    "content_attributes": {
        "items": [
            {
                "title": "Widget",
                "description": "A fine widget",
                "media_url": "https://example.com/w.png",
                "actions": [
                    {"type": "link", "text": "View", "uri": "https://example.com/w"},
                    {"type": "postback", "text": "Buy", "payload": "BUY_W"},
                ],
                "ignored": {"deep": {"deeper": 1}},
            }
        ]
    },
}
EMAIL = {"content": "Your email?", "content_type": "input_email"}


def messages_url(world: World, did: int) -> str:
    return f"{API}/accounts/{world.account['id']}/conversations/{did}/messages"


async def agent_sends(client: TestClient, world: World, did: int, body: dict[str, Any]) -> Any:
    status, sent = await call(client, "POST", messages_url(world, did), world.agent, body)
    assert status == 200, sent
    return sent


async def answer(visitor: Visitor, message_id: int | str, body: Any) -> tuple[int, Any]:
    resp = await visitor.patch(f"messages/{message_id}", body)
    text = await resp.text()
    return resp.status, (await resp.json() if text else None)


async def visitor_sees(visitor: Visitor, message_id: int) -> dict[str, Any]:
    resp = await visitor.get("messages")
    assert resp.status == 200
    return next(m for m in (await resp.json())["payload"] if m["id"] == message_id)


async def test_agents_send_interactive_messages_the_widget_renders(
    client: TestClient, world: World
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    await relayed(client)
    vcable = await visitor_cable(client, visitor)
    cards = await agent_sends(client, world, did, CARDS)
    assert cards["content_type"] == "cards"
    item = cards["content_attributes"]["items"][0]
    assert "ignored" not in item  # rebuilt from the known keys only
    assert item["actions"][1] == {"type": "postback", "text": "Buy", "payload": "BUY_W"}
    created = await vcable.wait_event("message.created", lambda d: d["id"] == cards["id"])
    assert created["content_type"] == "cards"
    assert created["content_attributes"]["items"] == cards["content_attributes"]["items"]
    select = await agent_sends(client, world, did, SELECT)
    assert select["content_attributes"]["items"][0] == {"title": "Sales", "value": "sales"}
    form = await agent_sends(client, world, did, FORM)
    fields = form["content_attributes"]["items"]
    assert [f["name"] for f in fields] == ["email", "note", "plan"]
    assert fields[0]["required"] is True and fields[1]["required"] is False
    email = await agent_sends(client, world, did, EMAIL)
    shown = await visitor_sees(visitor, email["id"])
    assert shown["content_type"] == "input_email"
    await vcable.close()


def _items(n: int) -> list[dict[str, str]]:
    return [{"title": f"t{i}", "value": f"v{i}"} for i in range(n)]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"content_type": "input_select"}, "items must be a non-empty list"),
        ({"content_type": "input_select", "content_attributes": {"items": []}}, "non-empty"),
        ({"content_type": "input_select", "content_attributes": {"items": _items(21)}}, "at most"),
        ({"content_type": "input_select", "content_attributes": {"items": ["x"]}}, "objects"),
        (
            {"content_type": "input_select", "content_attributes": {"items": [{"value": "v"}]}},
            "title is required",
        ),
        (
            {
                "content_type": "input_select",
                "content_attributes": {"items": [{"title": "x" * 256}]},
            },
            "too long",
        ),
        (
            {
                "content_type": "form",
                "content_attributes": {"items": [{"name": "a", "type": "date"}]},
            },
            "type must be one of",
        ),
        (
            {
                "content_type": "form",
                "content_attributes": {"items": [{"name": "a"}, {"name": "a"}]},
            },
            "used by another field",
        ),
        (
            {
                "content_type": "form",
                "content_attributes": {"items": [{"name": "a", "type": "select"}]},
            },
            "options must be a non-empty list",
        ),
        (
            {
                "content_type": "cards",
                "content_attributes": {
                    "items": [{"title": "c", "actions": [{"type": "call", "text": "x"}]}]
                },
            },
            "link or postback",
        ),
        (
            {
                "content_type": "cards",
                "content_attributes": {
                    "items": [{"title": "c", "actions": [{"type": "link", "text": "x"}] * 6}]
                },
            },
            "at most 5",
        ),
        (
            {
                "content_type": "input_csat",
                "content_attributes": {"submitted_values": {"csat_survey_response": {"rating": 5}}},
            },
            "written by the visitor's answer",
        ),
        (
            {"content_type": "input_email", "content_attributes": {"submitted_email": "a@b.c"}},
            "written",
        ),
    ],
)
async def test_bad_interactive_messages_are_refused(
    client: TestClient, world: World, body: dict[str, Any], says: str
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    status, answer_body = await call(
        client, "POST", messages_url(world, did), world.agent, {"content": "x", **body}
    )
    assert status == 400, answer_body
    assert says in answer_body["error"]
    _, listed = await call(client, "GET", messages_url(world, did), world.agent)
    assert [m["content"] for m in listed["payload"]] == ["hello"]


async def test_the_visitor_picks_an_option_with_message_updated(
    client: TestClient, world: World
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    sent = await agent_sends(client, world, did, SELECT)
    await relayed(client)
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)

    status, body = await answer(visitor, sent["id"], {"message": {"submitted_values": "sales"}})
    assert status == 400  # a string is not a list of answers
    status, body = await answer(
        visitor, sent["id"], {"message": {"submitted_values": [{"title": "X", "value": "nope"}]}}
    )
    assert status == 422 and "not one of the options" in body["error"]
    status, body = await answer(
        visitor,
        sent["id"],
        {"message": {"submitted_values": [{"title": "Support", "value": "support"}]}},
    )
    assert status == 200, body
    assert body["contact"]["id"] == visitor.contact_id
    want = [{"title": "Support", "value": "support"}]
    for cable in (vcable, acable):
        updated = await cable.wait_event("message.updated", lambda d: d["id"] == sent["id"])
        assert updated["content_attributes"]["submitted_values"] == want
        assert updated["content_attributes"]["items"] == SELECT["content_attributes"]["items"]
        assert updated["previous_changes"]["content_attributes"][0].get("submitted_values") is None
        assert updated["conversation_id"] == did
    assert (await visitor_sees(visitor, sent["id"]))["content_attributes"]["submitted_values"] == (
        want
    )
    _, listed = await call(client, "GET", messages_url(world, did), world.agent)
    stored = next(m for m in listed["payload"] if m["id"] == sent["id"])
    assert stored["content_attributes"]["submitted_values"] == want
    await vcable.close()
    await acable.close()


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ([{"name": "note", "value": "hi"}], "'email' is required"),
        ([{"name": "email", "value": "not-an-email"}], "not a valid email"),
        ([{"name": "email", "value": "a@b.io"}, {"name": "zip", "value": "1"}], "no field"),
        ([{"name": "email", "value": "a@b.io"}, {"name": "plan", "value": "gold"}], "options"),
        ([{"name": "email", "value": "a@b.io"}, {"name": "email", "value": "c@d.io"}], "twice"),
        ([{"value": "a@b.io"}], "name is required"),
        ([{"name": "note", "value": "n" * 10_001}], "too long"),
    ],
)
async def test_a_bad_form_answer_is_refused_and_nothing_is_written(
    client: TestClient, world: World, values: Any, says: str
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    sent = await agent_sends(client, world, did, FORM)
    status, body = await answer(visitor, sent["id"], {"message": {"submitted_values": values}})
    assert status in (400, 422), body
    assert says in body["error"]
    assert "submitted_values" not in (await visitor_sees(visitor, sent["id"]))["content_attributes"]


async def test_the_visitor_fills_a_form(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    sent = await agent_sends(client, world, did, FORM)
    values = [
        {"name": "email", "value": " Jane@Example.com "},
        {"name": "plan", "value": "pro"},
        {"name": "note", "value": "call me"},
    ]
    status, body = await answer(visitor, sent["id"], {"message": {"submitted_values": values}})
    assert status == 200, body
    stored = (await visitor_sees(visitor, sent["id"]))["content_attributes"]["submitted_values"]
    assert stored == [
        {"name": "email", "title": "Email", "value": "jane@example.com"},
        {"name": "plan", "title": "Plan", "value": "pro"},
        {"name": "note", "title": "Note", "value": "call me"},
    ]


async def test_the_email_prompt_sets_the_contacts_email(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    sent = await agent_sends(client, world, did, EMAIL)
    status, body = await answer(visitor, sent["id"], {"contact": {"email": "nope"}})
    assert status == 422 and "valid email" in body["error"]
    status, body = await answer(visitor, sent["id"], {"contact": {}})
    assert status == 422
    status, body = await answer(visitor, sent["id"], {"contact": {"email": "Jo@Example.com"}})
    assert status == 200, body
    assert body["contact"]["email"] == "jo@example.com"
    assert body["contact"]["id"] == visitor.contact_id
    shown = await visitor_sees(visitor, sent["id"])
    assert shown["content_attributes"]["submitted_email"] == "jo@example.com"
    resp = await visitor.get("contact")
    assert (await resp.json())["has_email"] is True


async def test_the_email_prompt_never_replaces_a_verified_contacts_email(
    client: TestClient, world: World
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    proof = identifier_hash(world.inbox["hmac_token"], "user-7")
    resp = await visitor.patch(
        "contact/set_user",
        {"identifier": "user-7", "identifier_hash": proof, "email": "owner@site.io"},
    )
    assert resp.status == 200, await resp.text()
    sent = await agent_sends(client, world, did, EMAIL)
    status, body = await answer(visitor, sent["id"], {"contact": {"email": "someone@else.io"}})
    assert status == 200, body
    assert body["contact"]["email"] == "owner@site.io"
    shown = await visitor_sees(visitor, sent["id"])
    assert shown["content_attributes"]["submitted_email"] == "someone@else.io"


async def test_only_the_visitors_own_messages_can_be_answered(
    client: TestClient, world: World
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    sent = await agent_sends(client, world, did, SELECT)
    note = await agent_sends(client, world, did, {**SELECT, "private": True})
    text = await agent_sends(client, world, did, {"content": "plain"})
    pick = {"message": {"submitted_values": [{"title": "Sales", "value": "sales"}]}}

    other = await started(client, world.inbox["website_token"])  # another visitor, same inbox
    assert (await answer(other, sent["id"], pick))[0] == 404
    elsewhere = await started(client, world.other_inbox["website_token"])  # another inbox
    assert (await answer(elsewhere, sent["id"], pick))[0] == 404
    assert (await answer(visitor, note["id"], pick))[0] == 404  # a private note
    assert (await answer(visitor, 99_999_999, pick))[0] == 404
    assert (await answer(visitor, "abc", pick))[0] == 404
    status, body = await answer(visitor, text["id"], pick)
    assert status == 422 and "takes no submitted values" in body["error"]
    mine = await visitor.get("messages")
    first = (await mine.json())["payload"][0]  # the visitor's own message
    assert (await answer(visitor, first["id"], pick))[0] == 422
    token = world.inbox["website_token"]
    resp = await client.patch(
        f"{API}/widget/messages/{sent['id']}?website_token={token}", json=pick
    )
    assert resp.status == 404  # no visitor token
    assert "submitted_values" not in (await visitor_sees(visitor, sent["id"]))["content_attributes"]


async def enable_csat(client: TestClient, world: World) -> None:
    db = client.app[SERVICES].db
    # Before any widget call: the web process caches inboxes by website_token.
    await db.write(accounts_store.set_csat_survey, world.inbox["id"], True)


async def resolve(client: TestClient, world: World, did: int, status: str = "resolved") -> None:
    url = f"{API}/accounts/{world.account['id']}/conversations/{did}/toggle_status"
    got, body = await call(client, "POST", url, world.agent, {"status": status})
    assert got == 200, body


async def test_resolving_sends_the_csat_survey_and_agents_list_the_answers(
    client: TestClient, world: World
) -> None:
    await enable_csat(client, world)
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    resp = await client.post(f"{API}/widget/config?website_token={world.inbox['website_token']}")
    assert (await resp.json())["website_channel_config"]["csat_survey_enabled"] is True
    await relayed(client)
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)
    await resolve(client, world, did)
    survey = await vcable.wait_event("message.created", lambda d: d["content_type"] == "input_csat")
    assert survey["message_type"] == 3 and survey["conversation_id"] == did
    await vcable.wait_event("conversation.status_changed")

    for bad, code in (
        ({"message": {"submitted_values": {"csat_survey_response": {"rating": 6}}}}, 422),
        ({"message": {"submitted_values": {"csat_survey_response": {"rating": "x"}}}}, 422),
        ({"message": {"submitted_values": {"rating": 5}}}, 422),
        ({"message": {}}, 422),
    ):
        status, body = await answer(visitor, survey["id"], bad)
        assert status == code, body
    response = {"csat_survey_response": {"rating": 4, "feedback_message": "Quick, thanks"}}
    status, body = await answer(visitor, survey["id"], {"message": {"submitted_values": response}})
    assert status == 200, body
    for cable in (vcable, acable):
        updated = await cable.wait_event("message.updated", lambda d: d["id"] == survey["id"])
        assert updated["content_attributes"]["submitted_values"] == response

    url = f"{API}/accounts/{world.account['id']}/csat_survey_responses"
    status, listed = await call(client, "GET", url, world.agent)
    assert status == 200, listed
    assert len(listed) == 1
    row = listed[0]
    assert row["rating"] == 4 and row["feedback_message"] == "Quick, thanks"
    assert row["conversation_id"] == did and row["message_id"] == survey["id"]
    assert row["contact"]["id"] == visitor.contact_id
    assert row["account_id"] == world.account["id"] and row["assigned_agent"] is None

    # Answering again replaces the answer (one row), as Chatwoot's response builder.
    again = {"csat_survey_response": {"rating": 5, "feedback_message": ""}}
    status, _ = await answer(visitor, survey["id"], {"message": {"submitted_values": again}})
    assert status == 200
    _, listed = await call(client, "GET", url, world.agent)
    assert [(r["rating"], r["feedback_message"]) for r in listed] == [(5, "")]
    assert (await call(client, "GET", url + "?page=2", world.agent))[1] == []
    assert (await call(client, "GET", url + "?page=0", world.agent))[0] == 400
    assert (await call(client, "GET", url + "?page=x", world.agent))[0] == 400
    assert (await client.get(url)).status == 401

    # Reopened and resolved again: the conversation has its survey already.
    await resolve(client, world, did, "open")
    await resolve(client, world, did)
    _, msgs = await call(client, "GET", messages_url(world, did), world.agent)
    assert [m["content_type"] for m in msgs["payload"]].count("input_csat") == 1
    await vcable.close()
    await acable.close()


async def test_csat_answers_are_listed_only_to_agents_who_see_the_inbox(
    client: TestClient, world: World
) -> None:
    db = client.app[SERVICES].db
    await db.write(accounts_store.set_csat_survey, world.other_inbox["id"], True)
    elsewhere = await started(client, world.other_inbox["website_token"])
    did = elsewhere.display_id  # type: ignore[attr-defined]
    url = f"{API}/accounts/{world.account['id']}/conversations/{did}/toggle_status"
    status, body = await call(client, "POST", url, world.admin, {"status": "resolved"})
    assert status == 200, body
    resp = await elsewhere.get("messages")
    survey = next(m for m in (await resp.json())["payload"] if m["content_type"] == "input_csat")
    response = {"csat_survey_response": {"rating": 2}}
    status, _ = await answer(elsewhere, survey["id"], {"message": {"submitted_values": response}})
    assert status == 200
    listing = f"{API}/accounts/{world.account['id']}/csat_survey_responses"
    assert (await call(client, "GET", listing, world.agent))[1] == []  # not a member
    _, seen = await call(client, "GET", listing, world.admin)
    assert [r["rating"] for r in seen] == [2]


async def test_without_the_setting_resolving_sends_no_survey(
    client: TestClient, world: World
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    await resolve(client, world, did)
    _, msgs = await call(client, "GET", messages_url(world, did), world.agent)
    assert "input_csat" not in [m["content_type"] for m in msgs["payload"]]


async def test_a_visitors_answers_and_label_changes_are_rate_limited(
    db_url: str, tmp_path: Any, aiohttp_client: Any
) -> None:
    limits = RateLimits(widget_updates_per_contact=Rate(2, 60))
    client = await aiohttp_client(create_app(make_settings(db_url, tmp_path, rate_limits=limits)))
    world = await build_world(client.app[SERVICES].db)
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    sent = await agent_sends(client, world, did, SELECT)
    assert (await visitor.post("labels", {"label": "x"})).status == 204
    assert (await visitor.request("DELETE", "labels/x")).status == 204
    pick = {"message": {"submitted_values": [{"title": "Sales", "value": "sales"}]}}
    resp = await visitor.patch(f"messages/{sent['id']}", pick)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["limit"] == "widget_updates_per_contact"
    assert "submitted_values" not in (await visitor_sees(visitor, sent["id"]))["content_attributes"]
    other = await started(client, world.inbox["website_token"])  # another contact's budget
    assert (await other.post("labels", {"label": "x"})).status == 204
