"""POST /api/v1/widget/events (recorded, 204; listed for agents at
/api/v1/accounts/{id}/contacts/{id}/widget_events) and GET /api/v1/widget/campaigns ([])
over real HTTP on both databases."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from server.app import create_app
from server.ratelimit import Rate, RateLimits
from server.services import SERVICES
from server.store import contacts as contacts_store
from server.store import widget_events as widget_events_store
from server.store.inputs import Visitor as StoreVisitor
from server.store.inputs import WidgetEvent
from tests.conftest import Visitor, World, build_world, make_settings

API = "/api/v1"
TRIGGERED = {
    "name": "webwidget.triggered",
    "event_info": {"initiated_at": {"timestamp": "Mon Dec 07 2026"}, "referer": "https://a.b/c"},
}


async def listed(client: TestClient, world: World, user: dict, contact_id: int) -> list[dict]:
    resp = await client.get(
        f"{API}/accounts/{world.account['id']}/contacts/{contact_id}/widget_events",
        headers={"api_access_token": user["access_token"]},
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["payload"]


async def test_an_event_is_recorded_for_agents(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    resp = await visitor.client.post(
        f"/api/v1/widget/events?website_token={visitor.website_token}&locale=fr",
        json=TRIGGERED,
        headers={"X-Auth-Token": visitor.auth_token or "", "Accept-Language": "de-DE,de;q=0.9"},
    )
    assert resp.status == 204, await resp.text()
    assert await resp.read() == b""
    resp = await visitor.post("events", {"name": "campaign.triggered", "event_info": {}})
    assert resp.status == 204
    events = await listed(client, world, world.agent, visitor.contact_id)
    assert [e["name"] for e in events] == ["campaign.triggered", "webwidget.triggered"]
    first = events[1]
    assert first["event_info"]["referer"] == "https://a.b/c"
    assert first["event_info"]["initiated_at"] == {"timestamp": "Mon Dec 07 2026"}
    assert first["event_info"]["widget_language"] == "fr"
    assert first["event_info"]["browser_language"] == "de-DE"
    assert first["inbox_id"] == world.inbox["id"]
    assert first["contact_id"] == visitor.contact_id
    assert isinstance(first["created_at"], int)
    # The admin sees every inbox; nobody sees another contact's events under this one.
    assert len(await listed(client, world, world.admin, visitor.contact_id)) == 2
    other = await Visitor(client, world.inbox["website_token"]).start()
    assert await listed(client, world, world.agent, other.contact_id) == []


async def test_events_are_scoped_to_the_agents_inboxes_and_account(
    client: TestClient, world: World
) -> None:
    # A visitor of the inbox the agent is not a member of.
    visitor = await Visitor(client, world.other_inbox["website_token"]).start()
    assert (await visitor.post("events", TRIGGERED)).status == 204
    assert await listed(client, world, world.agent, visitor.contact_id) == []
    assert len(await listed(client, world, world.admin, visitor.contact_id)) == 1
    # Another account's admin, naming this contact under their own account: nothing.
    other = await build_world(client.app[SERVICES].db)
    assert await listed(client, other, other.admin, visitor.contact_id) == []
    # ... and under this account: not a member.
    resp = await client.get(
        f"{API}/accounts/{world.account['id']}/contacts/{visitor.contact_id}/widget_events",
        headers={"api_access_token": other.admin["access_token"]},
    )
    assert resp.status == 401
    resp = await client.get(
        f"{API}/accounts/{world.account['id']}/contacts/{visitor.contact_id}/widget_events"
    )
    assert resp.status == 401
    resp = await client.get(
        f"{API}/accounts/{world.account['id']}/contacts/x/widget_events",
        headers={"api_access_token": world.admin["access_token"]},
    )
    assert resp.status == 404


async def test_bad_events_are_refused_and_nothing_is_written(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    bad = [
        {},
        {"name": ""},
        {"name": 5},
        {"name": "x" * 101},
        {"name": "bad name"},
        {"name": "ok", "event_info": "nope"},
        {"name": "ok", "event_info": {"big": "x" * 5000}},
    ]
    for body in bad:
        resp = await visitor.post("events", body)
        assert resp.status == 400, body
        assert "error" in await resp.json()
    assert await listed(client, world, world.admin, visitor.contact_id) == []
    resp = await client.post(
        f"/api/v1/widget/events?website_token={world.inbox['website_token']}", json=TRIGGERED
    )
    assert resp.status == 404  # no visitor token


async def test_events_are_rate_limited_per_contact(db_url: str, tmp_path, aiohttp_client) -> None:
    settings = make_settings(
        db_url, tmp_path, rate_limits=RateLimits(widget_events_per_contact=Rate(2, 3600))
    )
    client = await aiohttp_client(create_app(settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    for _ in range(2):
        assert (await visitor.post("events", TRIGGERED)).status == 204
    resp = await visitor.post("events", TRIGGERED)
    assert resp.status == 429
    assert (await resp.json())["limit"] == "widget_events_per_contact"
    assert int(resp.headers["Retry-After"]) >= 1
    other = await Visitor(client, world.inbox["website_token"]).start()
    assert (await other.post("events", TRIGGERED)).status == 204
    assert len(await listed(client, world, world.admin, visitor.contact_id)) == 2


async def test_only_the_newest_events_of_a_visitor_are_kept(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    db = client.app[SERVICES].db
    box = await client.app[SERVICES].inboxes.get(world.inbox["website_token"])
    found = await db.read(
        contacts_store.find_identity,
        world.inbox["id"],
        (await db.read(_source_id, visitor.contact_id)),
    )
    assert box is not None and found is not None
    who = StoreVisitor(inbox=box, contact=found[0], contact_inbox=found[1])
    other = await Visitor(client, world.inbox["website_token"]).start()
    assert (await other.post("events", TRIGGERED)).status == 204
    for i in range(5):
        await db.write(widget_events_store.record, WidgetEvent(who, f"e{i}", {}, keep=3))
    events = await listed(client, world, world.admin, visitor.contact_id)
    assert [e["name"] for e in events] == ["e4", "e3", "e2"]
    assert len(await listed(client, world, world.admin, other.contact_id)) == 1


async def _source_id(conn, contact_id: int) -> str:
    from sqlalchemy import select

    from server.store.tables import contact_inboxes

    return (
        await conn.execute(
            select(contact_inboxes.c.source_id).where(contact_inboxes.c.contact_id == contact_id)
        )
    ).scalar_one()


async def test_campaigns_are_an_empty_list(client: TestClient, world: World) -> None:
    token = world.inbox["website_token"]
    resp = await client.get(f"/api/v1/widget/campaigns?website_token={token}")
    assert resp.status == 200
    assert await resp.json() == []
    resp = await client.get("/api/v1/widget/campaigns?website_token=unknown")
    assert resp.status == 404
    assert await resp.json() == {"error": "Resource could not be found"}
    resp = await client.get("/api/v1/widget/campaigns")
    assert resp.status == 404


async def test_campaigns_of_a_suspended_account(client: TestClient, world: World) -> None:
    from sqlalchemy import update

    from server.store.tables import accounts

    async def suspend(conn) -> None:
        await conn.execute(
            update(accounts).where(accounts.c.id == world.account["id"]).values(status="x")
        )

    await client.app[SERVICES].db.write(suspend)
    client.app[SERVICES].inboxes._entries.clear()
    resp = await client.get(
        f"/api/v1/widget/campaigns?website_token={world.inbox['website_token']}"
    )
    assert resp.status == 401
    assert await resp.json() == {"error": "Account is suspended"}
