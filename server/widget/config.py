"""POST /api/v1/widget/config, GET /api/v1/widget/inbox_members and the GET /widget page."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from server.errors import json_response
from server.images import LOGO_THUMBNAIL
from server.jsonutil import dumps
from server.security_headers import allow_framing
from server.services import services
from server.settings import Settings
from server.store import accounts as accounts_store
from server.widget import context
from server.widget.identity import identify, mint

GLOBAL_CONFIG = {
    "LOGO_THUMBNAIL": LOGO_THUMBNAIL,  # the widget's footer shows it (server/images.py)
    "BRAND_NAME": "Chat",
    "WIDGET_BRAND_URL": "",
    "DIRECT_UPLOADS_ENABLED": False,
    "MAXIMUM_FILE_UPLOAD_SIZE": 0,
    "INSTALLATION_NAME": "Chat",
}


def global_config(settings: Settings) -> dict[str, Any]:
    """GLOBAL_CONFIG with this server's upload limit (in MB, as Chatwoot's widget reads it)."""
    size = settings.attachment_max_bytes / (1024 * 1024)
    return {**GLOBAL_CONFIG, "MAXIMUM_FILE_UPLOAD_SIZE": round(size, 3)}


def enabled_features(inbox: dict[str, Any]) -> list[str]:
    features = ["attachments"] if inbox["attachments_enabled"] else []
    features.append("emoji_picker")
    if inbox["end_conversation"]:
        features.append("end_conversation")
    if inbox["elevenlabs_agent_id"]:
        features.append("voice_agent")
    return features


def channel_config(inbox: dict[str, Any], locale: str) -> dict[str, Any]:
    return {
        "allow_messages_after_resolved": True,
        "avatar_url": "",
        "csat_survey_enabled": bool(inbox["csat_survey_enabled"]),
        "disable_branding": False,
        "enabled_features": enabled_features(inbox),
        "enabled_languages": [{"name": "English", "iso_639_1_code": "en"}],
        "locale": locale,
        "out_of_office_message": "",
        "portal": None,
        "pre_chat_form_enabled": False,
        "pre_chat_form_options": {},
        "reply_time": "in_a_few_minutes",
        "timezone": "UTC",
        "utc_off_set": "+00:00",
        "website_name": inbox["name"],
        "website_token": inbox["website_token"],
        "welcome_tagline": inbox["welcome_tagline"],
        "welcome_title": inbox["welcome_title"],
        "widget_color": inbox["widget_color"],
        "working_hours": [],
        "working_hours_enabled": False,
    }


def _locale(request: web.Request) -> str:
    locale = request.query.get("locale", "en")
    return (
        locale if locale.replace("_", "").replace("-", "").isalnum() and len(locale) <= 10 else "en"
    )


async def config(request: web.Request) -> web.Response:
    """Reuse or create the visitor, and always mint a fresh token (contract §2.8)."""
    svc = services(request)
    inbox = await context.inbox(request)
    contact, ci, _, _ = await identify(svc, request, inbox, request.headers.get("X-Auth-Token"))
    token = mint(svc, inbox, ci)
    cfg = channel_config(inbox, _locale(request))
    cfg["auth_token"] = token
    cfg["api_host"] = f"{request.scheme}://{request.host}"
    return json_response(
        {
            "website_channel_config": cfg,
            "contact": {
                "id": contact["id"],
                "name": contact["name"],
                "email": contact["email"],
                "phone_number": contact["phone_number"],
                "identifier": contact["identifier"],
                "pubsub_token": ci["pubsub_token"],
            },
            "global_config": global_config(svc.settings),
        }
    )


async def inbox_members(request: web.Request) -> web.Response:
    svc = services(request)
    inbox = await context.inbox(request)
    agents = await svc.db.read(accounts_store.inbox_agents, inbox)
    payload = [
        {
            "id": a["id"],
            "name": a["name"],
            "avatar_url": a["avatar_url"],
            "availability_status": a["availability"],
        }
        for a in agents
        if a["is_member"]
    ]
    return json_response({"payload": payload})


def _script_json(value: Any) -> str:
    """JSON that is safe inside <script>: no way to close the tag or open a comment."""
    return (
        dumps(value)
        .decode()
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


async def page(request: web.Request) -> web.Response:
    """The widget iframe page (contract §1.2): the globals Chatwoot's widget reads, then our
    own widget script."""
    svc = services(request)
    token = request.query.get("website_token")
    inbox = await svc.inboxes.get(token) if context.plausible_token(token) else None
    if inbox is None:
        return json_response({"error": "web widget does not exist"}, 404)
    if inbox["account_status"] != "active":
        return json_response({"error": "Account is suspended"}, 401)
    _, ci, jwt, _ = await identify(svc, request, inbox, request.query.get("cw_conversation"))
    locale = _locale(request)
    web_channel = {
        "avatarUrl": "",
        "hasAConnectedAgentBot": "",
        "locale": locale,
        "websiteName": inbox["name"],
        "websiteToken": inbox["website_token"],
        "welcomeTagline": inbox["welcome_tagline"],
        "welcomeTitle": inbox["welcome_title"],
        "widgetColor": inbox["widget_color"],
        "portal": None,
        "enabledFeatures": enabled_features(inbox),
        "enabledLanguages": [{"name": "English", "iso_639_1_code": "en"}],
        "replyTime": "in_a_few_minutes",
        "preChatFormEnabled": False,
        "preChatFormOptions": {},
        "workingHoursEnabled": False,
        "csatSurveyEnabled": bool(inbox["csat_survey_enabled"]),
        "workingHours": [],
        "outOfOfficeMessage": "",
        "utcOffset": "+00:00",
        "timezone": "UTC",
        "allowMessagesAfterResolved": True,
        "disableBranding": False,
    }
    body = f"""<!doctype html>
<html lang="{html.escape(locale)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(inbox["name"])}</title>
<link rel="stylesheet" href="/static/widget.css">
<script>
window.chatwootWebChannel = {_script_json(web_channel)};
window.chatwootPubsubToken = {_script_json(ci["pubsub_token"])};
window.authToken = {_script_json(jwt)};
window.globalConfig = {_script_json(global_config(svc.settings))};
</script>
</head>
<body>
<div id="chat-widget"></div>
<script type="module" src="/static/widget-frame.js"></script>
</body>
</html>
"""
    response = web.Response(text=body, content_type="text/html")
    allow_framing(request, response, inbox["website_url"])  # it lives in the site's iframe
    return response
