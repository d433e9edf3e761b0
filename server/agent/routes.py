"""Routes of the agent API (contract §6): the profile, and an account's conversations."""

from __future__ import annotations

from aiohttp import web

from server.agent import (
    assignments,
    contacts,
    conversations,
    csat,
    labels,
    messages,
    profile,
    widget_events,
)

API = "/api/v1"


def add_routes(app: web.Application) -> None:
    """Registers the agent endpoints on `app`. Ids are matched as any path segment and
    parsed by the handlers, so a malformed id gets the same JSON 404 as an unknown one."""
    r = app.router
    r.add_get(f"{API}/profile", profile.show)
    account = f"{API}/accounts/{{account_id}}"
    r.add_get(f"{account}/labels", labels.index)
    r.add_post(f"{account}/labels", labels.create)
    r.add_get(f"{account}/csat_survey_responses", csat.index)
    convs = f"{API}/accounts/{{account_id}}/conversations"
    one = f"{convs}/{{display_id}}"
    r.add_get(convs, conversations.index)
    # Before {display_id}, which would take "search" for an id (and answer 404).
    r.add_get(f"{convs}/search", conversations.search)
    r.add_get(one, conversations.show)
    r.add_get(f"{one}/messages", messages.index)
    r.add_post(f"{one}/messages", messages.create)
    r.add_get(f"{one}/labels", labels.of_conversation)
    r.add_post(f"{one}/labels", labels.set_for_conversation)
    r.add_post(f"{one}/toggle_status", conversations.toggle_status)
    r.add_post(f"{one}/toggle_typing_status", conversations.toggle_typing_status)
    r.add_post(f"{one}/update_last_seen", conversations.update_last_seen)
    r.add_post(f"{one}/assignments", assignments.create)
    r.add_get(f"{account}/inbox_members/{{inbox_id}}", assignments.inbox_members)
    contact = f"{account}/contacts/{{contact_id}}"
    r.add_get(contact, contacts.show)
    r.add_put(contact, contacts.update)
    r.add_patch(contact, contacts.update)
    r.add_get(f"{contact}/conversations", contacts.conversations_of)
    r.add_get(
        f"{API}/accounts/{{account_id}}/contacts/{{contact_id}}/widget_events",
        widget_events.index,
    )
