"""Event names, who hears them (bus channels), and their payloads (Chatwoot push shapes).

Every rule of "who receives what" lives here, and the store calls it from each write that
emits an event, so the rule is applied the same way on every path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
CONVERSATION_CREATED = "conversation.created"
CONVERSATION_UPDATED = "conversation.updated"
CONVERSATION_STATUS_CHANGED = "conversation.status_changed"
CONVERSATION_READ = "conversation.read"
TYPING_ON = "conversation.typing_on"
TYPING_OFF = "conversation.typing_off"
PRESENCE_UPDATE = "presence.update"
CONTACT_UPDATED = "contact.updated"

INCOMING, OUTGOING, ACTIVITY, TEMPLATE = 0, 1, 2, 3


# -- channels ---------------------------------------------------------------------------


def inbox_channel(inbox_id: int) -> str:
    return f"inbox:{inbox_id}"


def contact_channel(pubsub_token: str) -> str:
    return f"contact:{pubsub_token}"


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


def account_channel(account_id: int) -> str:
    return f"account:{account_id}"


def conversation_channels(conv: dict[str, Any], contact_token: str) -> list[str]:
    """agents(conv) + contact(conv): conversation events, typing."""
    return [inbox_channel(conv["inbox_id"]), contact_channel(contact_token)]


def message_channels(conv: dict[str, Any], contact_token: str, msg: dict[str, Any]) -> list[str]:
    """agents + contact_for_message: private notes and activity never reach the visitor."""
    if msg["private"] or msg["message_type"] == ACTIVITY:
        return [inbox_channel(conv["inbox_id"])]
    return conversation_channels(conv, contact_token)


def agent_channels(conv: dict[str, Any]) -> list[str]:
    """agents(conv) alone: conversation.read."""
    return [inbox_channel(conv["inbox_id"])]


# -- small push shapes (contract §5.4) ---------------------------------------------------


def epoch(ts: float | None) -> int:
    return int(ts) if ts else 0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def contact_push(contact: dict[str, Any]) -> dict[str, Any]:
    return {
        "additional_attributes": contact["additional_attributes"],
        "custom_attributes": contact["custom_attributes"],
        "email": contact["email"],
        "id": contact["id"],
        "identifier": contact["identifier"],
        "name": contact["name"],
        "phone_number": contact["phone_number"],
        "thumbnail": contact["avatar_url"] or "",
        "blocked": bool(contact["blocked"]),
        "type": "contact",
    }


def user_push(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "name": user["name"],
        "available_name": user["name"],
        "avatar_url": user["avatar_url"] or "",
        "type": "user",
        "availability_status": user["availability"],
        "thumbnail": user["avatar_url"] or "",
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


# -- messages (contract §5.2) ------------------------------------------------------------


def message_push(
    msg: dict[str, Any],
    conv: dict[str, Any],
    source_id: str,
    sender: dict[str, Any] | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": msg["id"],
        "content": msg["content"],
        "account_id": msg["account_id"],
        "inbox_id": msg["inbox_id"],
        "conversation_id": conv["display_id"],
        "message_type": msg["message_type"],
        "created_at": epoch(msg["created_at"]),
        "updated_at": iso(msg["updated_at"]),
        "private": bool(msg["private"]),
        "status": msg["status"],
        "source_id": msg["source_id"],
        "content_type": msg["content_type"],
        "content_attributes": msg["content_attributes"],
        "sender_type": msg["sender_type"],
        "sender_id": msg["sender_id"],
        "external_source_ids": {},
        "additional_attributes": msg["additional_attributes"],
        "processed_message_content": msg["content"],
        "sentiment": {},
        "conversation": {
            "assignee_id": conv["assignee_id"],
            "unread_count": conv["unread_count"],
            "last_activity_at": epoch(conv["last_activity_at"]),
            "contact_inbox": {"source_id": source_id},
        },
    }
    if msg["echo_id"]:
        data["echo_id"] = msg["echo_id"]
    if sender is not None:
        data["sender"] = sender
    return data


def widget_message(
    msg: dict[str, Any], display_id: int, sender: dict[str, Any] | None
) -> dict[str, Any]:
    """A message as GET /api/v1/widget/messages lists it (contract §2.3)."""
    data: dict[str, Any] = {
        "id": msg["id"],
        "content": msg["content"],
        "message_type": msg["message_type"],
        "content_type": msg["content_type"],
        "content_attributes": msg["content_attributes"],
        "created_at": epoch(msg["created_at"]),
        "conversation_id": display_id,
        "status": msg["status"],
    }
    if sender is not None:
        data["sender"] = sender
    return data


def message_record(
    msg: dict[str, Any], display_id: int, sender: dict[str, Any] | None
) -> dict[str, Any]:
    """POST /api/v1/widget/messages and the agent message views (contract §2.4, §6)."""
    data: dict[str, Any] = {
        "id": msg["id"],
        "content": msg["content"],
        "inbox_id": msg["inbox_id"],
        "conversation_id": display_id,
        "message_type": msg["message_type"],
        "content_type": msg["content_type"],
        "status": msg["status"],
        "created_at": epoch(msg["created_at"]),
        "private": bool(msg["private"]),
        "source_id": msg["source_id"],
        "content_attributes": msg["content_attributes"],
    }
    if msg["echo_id"]:
        data["echo_id"] = msg["echo_id"]
    if sender is not None:
        data["sender"] = sender
    return data


# -- conversations (contract §5.3) -------------------------------------------------------


def contact_inbox_record(ci: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ci["id"],
        "contact_id": ci["contact_id"],
        "inbox_id": ci["inbox_id"],
        "source_id": ci["source_id"],
        "created_at": iso(ci["created_at"]),
        "updated_at": iso(ci["updated_at"]),
        "hmac_verified": bool(ci["hmac_verified"]),
        "pubsub_token": ci["pubsub_token"],
    }


def conversation_push(
    conv: dict[str, Any],
    *,
    contact: dict[str, Any],
    contact_inbox: dict[str, Any],
    assignee: dict[str, Any] | None,
    last_message: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "additional_attributes": conv["additional_attributes"],
        "can_reply": True,
        "channel": "Channel::WebWidget",
        "contact_inbox": contact_inbox_record(contact_inbox),
        "id": conv["display_id"],
        "inbox_id": conv["inbox_id"],
        "messages": [last_message] if last_message else [],
        "labels": [],
        "meta": {
            "sender": contact_push(contact),
            "assignee": user_push(assignee) if assignee else None,
            "assignee_type": "User" if assignee else None,
            "team": None,
            "hmac_verified": bool(contact_inbox["hmac_verified"]),
        },
        "status": conv["status"],
        "custom_attributes": conv["custom_attributes"],
        "snoozed_until": None,
        "unread_count": conv["unread_count"],
        "first_reply_created_at": None,
        "priority": None,
        "waiting_since": epoch(conv["created_at"]),
        "agent_last_seen_at": epoch(conv["agent_last_seen_at"]),
        "contact_last_seen_at": epoch(conv["contact_last_seen_at"]),
        "last_activity_at": epoch(conv["last_activity_at"]),
        "timestamp": epoch(conv["last_activity_at"]),
        "created_at": epoch(conv["created_at"]),
        "updated_at": conv["updated_at"],
        "account_id": conv["account_id"],
    }


def widget_conversation(conv: dict[str, Any]) -> dict[str, Any]:
    """GET /api/v1/widget/conversations (contract §2.1)."""
    return {
        "id": conv["display_id"],
        "inbox_id": conv["inbox_id"],
        "contact_last_seen_at": epoch(conv["contact_last_seen_at"]),
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
        "contact_last_seen_at": epoch(conv["contact_last_seen_at"]),
        "agent_last_seen_at": epoch(conv["agent_last_seen_at"]),
        "last_activity_at": epoch(conv["last_activity_at"]),
        "created_at": iso(conv["created_at"]),
        "updated_at": iso(conv["updated_at"]),
    }


def typing_payload(
    conv_push: dict[str, Any], user: dict[str, Any], *, is_private: bool
) -> dict[str, Any]:
    return {
        "conversation": conv_push,
        "user": user,
        "is_private": is_private,
        "account_id": conv_push["account_id"],
    }
