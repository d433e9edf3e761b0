"""Event names, who hears them (bus channels), and their payloads (Chatwoot push shapes):
what sockets receive. What the HTTP API answers is in server/views.py.

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
ASSIGNEE_CHANGED = "assignee.changed"

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


def visible_to_visitor(msg: dict[str, Any]) -> bool:
    """Private notes and activity messages never reach the visitor (in SQL:
    store/rules.visible_to_visitor)."""
    return not msg["private"] and msg["message_type"] != ACTIVITY


def message_channels(conv: dict[str, Any], contact_token: str, msg: dict[str, Any]) -> list[str]:
    """agents + contact_for_message (`visible_to_visitor`)."""
    if not visible_to_visitor(msg):
        return [inbox_channel(conv["inbox_id"])]
    return conversation_channels(conv, contact_token)


def agent_channels(conv: dict[str, Any]) -> list[str]:
    """agents(conv) alone: conversation.read."""
    return [inbox_channel(conv["inbox_id"])]


# -- small push shapes (contract §5.4) ---------------------------------------------------


def unix_seconds(ts: float | None) -> int:
    """A time as whole Unix seconds (Chatwoot's integer timestamps); 0 for none."""
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


# -- messages (contract §5.2) ------------------------------------------------------------


def message_for_sockets(
    msg: dict[str, Any],
    conv: dict[str, Any],
    source_id: str,
    sender: dict[str, Any] | None,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A message as sockets receive it (message.created, message.updated, a conversation's
    last message): the agents' and the visitor's (contract §5.2)."""
    data: dict[str, Any] = {
        "id": msg["id"],
        "content": msg["content"],
        "account_id": msg["account_id"],
        "inbox_id": msg["inbox_id"],
        "conversation_id": conv["display_id"],
        "message_type": msg["message_type"],
        "created_at": unix_seconds(msg["created_at"]),
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
            "last_activity_at": unix_seconds(conv["last_activity_at"]),
            "contact_inbox": {"source_id": source_id},
        },
    }
    if msg["echo_id"]:
        data["echo_id"] = msg["echo_id"]
    if attachments:
        data["attachments"] = attachments
    if sender is not None:
        data["sender"] = sender
    return data


def attachment_push(att: dict[str, Any], data_url: str, thumb_url: str) -> dict[str, Any]:
    """Chatwoot's attachment JSON (contract §5.4), with URLs signed by the caller."""
    name = att["file_name"]
    return {
        "id": att["id"],
        "message_id": att["message_id"],
        "file_type": att["file_type"],
        "account_id": att["account_id"],
        "extension": name.rsplit(".", 1)[1].lower() if "." in name.strip(".") else None,
        "data_url": data_url,
        "thumb_url": thumb_url,
        "file_size": att["byte_size"],
        "width": att["width"],
        "height": att["height"],
    }


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
    voice_call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "additional_attributes": conv["additional_attributes"],
        "can_reply": True,
        "channel": "Channel::WebWidget",
        "contact_inbox": contact_inbox_record(contact_inbox),
        "id": conv["display_id"],
        "inbox_id": conv["inbox_id"],
        "messages": [last_message] if last_message else [],
        "labels": list(conv["labels"]),
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
        "waiting_since": unix_seconds(conv["created_at"]),
        "agent_last_seen_at": unix_seconds(conv["agent_last_seen_at"]),
        "contact_last_seen_at": unix_seconds(conv["contact_last_seen_at"]),
        "last_activity_at": unix_seconds(conv["last_activity_at"]),
        "timestamp": unix_seconds(conv["last_activity_at"]),
        "created_at": unix_seconds(conv["created_at"]),
        "updated_at": conv["updated_at"],
        "account_id": conv["account_id"],
        "voice_call": voice_call_push(voice_call) if voice_call is not None else None,
    }


def voice_call_push(call: dict[str, Any]) -> dict[str, Any]:
    """A conversation's latest voice call as its payload shows it: `live` while it lasts
    (what the agent console shows as "on a voice call")."""
    ended = call["ended_at"]
    return {
        "id": call["id"],
        "live": ended is None,
        "elevenlabs_conversation_id": call["elevenlabs_conversation_id"],
        "started_at": unix_seconds(call["started_at"]),
        "last_heartbeat_at": unix_seconds(call["last_heartbeat_at"]),
        "ended_at": unix_seconds(ended) if ended is not None else None,
        "end_reason": call["end_reason"],
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
