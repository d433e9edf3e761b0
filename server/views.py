"""What the HTTP API answers: the records of the widget's endpoints (contract §2) and of the
agents' (contract §6). What sockets receive is in server/events.py; the shapes shared with
it (a contact's, a user's push data) come from there."""

from __future__ import annotations

from typing import Any

from server.events import iso, unix_seconds

# -- messages ----------------------------------------------------------------------------------


def message_for_visitor(
    msg: dict[str, Any],
    display_id: int,
    sender: dict[str, Any] | None,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A message as the visitor's history lists it: GET /widget/messages, and the messages of
    POST /widget/conversations (contract §2.3)."""
    data: dict[str, Any] = {
        "id": msg["id"],
        "content": msg["content"],
        "message_type": msg["message_type"],
        "content_type": msg["content_type"],
        "content_attributes": msg["content_attributes"],
        "created_at": unix_seconds(msg["created_at"]),
        "conversation_id": display_id,
        "status": msg["status"],
    }
    if attachments:
        data["attachments"] = attachments
    if sender is not None:
        data["sender"] = sender
    return data


def message_for_agents(
    msg: dict[str, Any],
    display_id: int,
    sender: dict[str, Any] | None,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A message as the agents' API answers it: the conversation's messages, a new reply
    (contract §6)."""
    data: dict[str, Any] = {
        "id": msg["id"],
        "content": msg["content"],
        "inbox_id": msg["inbox_id"],
        "conversation_id": display_id,
        "message_type": msg["message_type"],
        "content_type": msg["content_type"],
        "status": msg["status"],
        "created_at": unix_seconds(msg["created_at"]),
        "private": bool(msg["private"]),
        "source_id": msg["source_id"],
        "content_attributes": msg["content_attributes"],
    }
    if msg["echo_id"]:
        data["echo_id"] = msg["echo_id"]
    if attachments:
        data["attachments"] = attachments
    if sender is not None:
        data["sender"] = sender
    return data


def message_for_visitor_post(
    msg: dict[str, Any],
    display_id: int,
    sender: dict[str, Any] | None,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The visitor's own new message, as POST /widget/messages answers it: the agents' record
    without content_type and status (contract §2.4)."""
    record = message_for_agents(msg, display_id, sender, attachments)
    del record["content_type"], record["status"]
    return record


# -- conversations and contacts ------------------------------------------------------------------


def conversation_for_visitor(conv: dict[str, Any]) -> dict[str, Any]:
    """The visitor's conversation: GET /widget/conversations (contract §2.1)."""
    return {
        "id": conv["display_id"],
        "inbox_id": conv["inbox_id"],
        "contact_last_seen_at": unix_seconds(conv["contact_last_seen_at"]),
        "status": conv["status"],
    }


def conversation_record(conv: dict[str, Any]) -> dict[str, Any]:
    """The plain Conversation record (destroy_custom_attributes)."""
    return {
        "id": conv["display_id"],
        "account_id": conv["account_id"],
        "inbox_id": conv["inbox_id"],
        "status": conv["status"],
        "assignee_id": conv["assignee_id"],
        "contact_id": conv["contact_id"],
        "additional_attributes": conv["additional_attributes"],
        "custom_attributes": conv["custom_attributes"],
        "contact_last_seen_at": unix_seconds(conv["contact_last_seen_at"]),
        "agent_last_seen_at": unix_seconds(conv["agent_last_seen_at"]),
        "last_activity_at": unix_seconds(conv["last_activity_at"]),
        "created_at": iso(conv["created_at"]),
        "updated_at": iso(conv["updated_at"]),
    }


def contact_record(contact: dict[str, Any]) -> dict[str, Any]:
    """The full Contact record (create conversation, destroy_custom_attributes responses)."""
    return {
        "id": contact["id"],
        "name": contact["name"],
        "email": contact["email"],
        "phone_number": contact["phone_number"],
        "identifier": contact["identifier"],
        "thumbnail": contact["avatar_url"] or "",
        "blocked": bool(contact["blocked"]),
        "additional_attributes": contact["additional_attributes"],
        "custom_attributes": contact["custom_attributes"],
        "account_id": contact["account_id"],
        "created_at": iso(contact["created_at"]),
        "updated_at": iso(contact["updated_at"]),
    }


# -- labels and CSAT ----------------------------------------------------------------------------


def label_record(label: dict[str, Any]) -> dict[str, Any]:
    """A label as Chatwoot's agent API answers it (api/v1/accounts/labels)."""
    return {
        "id": label["id"],
        "title": label["title"],
        "description": label["description"],
        "color": label["color"],
        "show_on_sidebar": bool(label["show_on_sidebar"]),
    }


def csat_response_record(row: dict[str, Any]) -> dict[str, Any]:
    """A CSAT survey response as Chatwoot lists it (csat_survey_responses/index)."""
    contact, agent = row["contact"], row["agent"]
    return {
        "id": row["id"],
        "rating": row["rating"],
        "feedback_message": row["feedback_message"],
        "account_id": row["account_id"],
        "message_id": row["message_id"],
        "contact": {
            "id": contact["id"],
            "name": contact["name"],
            "email": contact["email"],
            "phone_number": contact["phone_number"],
            "thumbnail": contact["avatar_url"] or "",
        },
        "conversation_id": row["conversation_display_id"],
        "assigned_agent": (
            {
                "id": agent["id"],
                "name": agent["name"],
                "email": agent["email"],
                "avatar_url": agent["avatar_url"] or "",
                "thumbnail": agent["avatar_url"] or "",
                "availability_status": agent["availability"],
            }
            if agent
            else None
        ),
        "created_at": unix_seconds(row["created_at"]),
    }
