"""Interactive messages (contract §2.5, §5.1): what an agent may offer in a message the widget
renders as a control (an email prompt, an option list, a form, cards, the CSAT survey), and
what a visitor may answer to it.

Both sides are checked here, once: an agent's `content_attributes` are rebuilt from the known
keys of each item (so nothing unbounded or deeply nested is stored), and a visitor's
`submitted_values` are checked against what the message offered (an option that was offered,
a field that exists, a rating from 1 to 5) and stored in Chatwoot's shape."""

from __future__ import annotations

from typing import Any

from server.errors import bad_request, unprocessable

# Content types whose content_attributes.items is rebuilt (and bounded) here.
WITH_ITEMS = ("input_select", "form", "cards")
# Content types a visitor answers with PATCH /api/v1/widget/messages/:id.
ANSWERABLE = ("input_email", "input_select", "form", "input_csat")

MAX_ITEMS = 20  # options of a list, fields of a form, cards of a message
MAX_FIELD_OPTIONS = 50  # options of a form's select field
MAX_ACTIONS = 5  # buttons of a card
SHORT = 255  # titles, labels, names, placeholders
LONG = 1024  # values, descriptions
URL = 2048
MAX_ANSWER = 10_000  # a form field's answer (a text area)
MAX_FEEDBACK = 10_000  # a CSAT comment
FORM_FIELD_TYPES = ("text", "text_area", "email", "select", "number")
CARD_ACTION_TYPES = ("link", "postback")
# Keys only the visitor's answer writes: an agent cannot send a message pre-answered.
ANSWER_KEYS = ("submitted_values", "submitted_email")
CSAT_CONTENT = "Please rate the conversation"


def _text(value: Any, name: str, max_len: int, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise bad_request(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise bad_request(f"{name} must be a string")
    text = str(value)
    if len(text) > max_len:
        raise bad_request(f"{name} is too long (at most {max_len} characters)")
    if "\x00" in text:
        raise bad_request(f"{name} must not contain NUL characters")
    return text


def _list(value: Any, name: str, max_count: int, *, required: bool = True) -> list[dict]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise bad_request(f"{name} must be a non-empty list")
    if len(value) > max_count:
        raise bad_request(f"{name} has too many entries (at most {max_count})")
    if not all(isinstance(item, dict) for item in value):
        raise bad_request(f"{name} must be a list of objects")
    return value


def _pick(item: dict[str, Any], name: str, spec: dict[str, tuple[int, bool]]) -> dict[str, Any]:
    """The item's keys of `spec` ({key: (max_len, required)}), as strings; others dropped."""
    out: dict[str, Any] = {}
    for key, (max_len, required) in spec.items():
        value = _text(item.get(key), f"{name}.{key}", max_len, required=required)
        if value is not None:
            out[key] = value
    return out


def _select_items(items: Any) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(_list(items, "content_attributes.items", MAX_ITEMS)):
        picked = _pick(item, f"items[{i}]", {"title": (SHORT, True), "value": (LONG, False)})
        picked.setdefault("value", picked["title"])
        out.append(picked)
    return out


def _form_items(items: Any) -> list[dict[str, Any]]:
    out, names = [], set()
    for i, item in enumerate(_list(items, "content_attributes.items", MAX_ITEMS)):
        name = f"items[{i}]"
        field = _pick(
            item,
            name,
            {
                "name": (SHORT, True),
                "label": (SHORT, False),
                "placeholder": (SHORT, False),
                "default": (LONG, False),
            },
        )
        kind = item.get("type") or "text"
        if kind not in FORM_FIELD_TYPES:
            raise bad_request(f"{name}.type must be one of {', '.join(FORM_FIELD_TYPES)}")
        field["type"] = kind
        if field["name"] in names:
            raise bad_request(f"{name}.name is used by another field")
        names.add(field["name"])
        required = item.get("required", False)
        if not isinstance(required, bool):
            raise bad_request(f"{name}.required must be true or false")
        field["required"] = required
        if kind == "select":
            options = _list(item.get("options"), f"{name}.options", MAX_FIELD_OPTIONS)
            field["options"] = [
                _pick(o, f"{name}.options[{j}]", {"label": (SHORT, True), "value": (LONG, True)})
                for j, o in enumerate(options)
            ]
        out.append(field)
    return out


def _card_items(items: Any) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(_list(items, "content_attributes.items", MAX_ITEMS)):
        name = f"items[{i}]"
        card = _pick(
            item,
            name,
            {"title": (SHORT, True), "description": (LONG, False), "media_url": (URL, False)},
        )
        actions = []
        for j, action in enumerate(
            _list(item.get("actions"), f"{name}.actions", MAX_ACTIONS, required=False)
        ):
            kind = action.get("type")
            if kind not in CARD_ACTION_TYPES:
                raise bad_request(f"{name}.actions[{j}].type must be link or postback")
            target = "uri" if kind == "link" else "payload"
            picked = _pick(
                action, f"{name}.actions[{j}]", {"text": (SHORT, True), target: (URL, True)}
            )
            actions.append({"type": kind, **picked})
        card["actions"] = actions
        out.append(card)
    return out


_ITEMS = {"input_select": _select_items, "form": _form_items, "cards": _card_items}


def offered(content_type: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """An agent's content_attributes for a message of `content_type`: `items` rebuilt for the
    types that have them; the answer keys refused (only the visitor writes them)."""
    for key in ANSWER_KEYS:
        if key in attributes:
            raise bad_request(f"content_attributes.{key} is written by the visitor's answer")
    if content_type not in _ITEMS:
        return attributes
    return {**attributes, "items": _ITEMS[content_type](attributes.get("items"))}


# -- the visitor's answer -------------------------------------------------------------------------


def email_address(value: Any, name: str = "contact.email") -> str:
    """A plausible email address, lower case (the contact endpoints' rule)."""
    if value is None or value == "":
        raise unprocessable(f"{name} can't be blank")
    email = (_text(value, name, 320) or "").strip().lower()
    local, _, domain = email.partition("@")
    if not local or not domain or " " in email or "@" in domain:
        raise unprocessable(f"{name} is not a valid email address")
    return email


def _answers(values: Any) -> list[dict[str, Any]]:
    if isinstance(values, dict):
        values = [values]
    return _list(values, "message.submitted_values", MAX_ITEMS)


def _select_answer(message: dict[str, Any], values: Any) -> list[dict[str, Any]]:
    answers = _answers(values)
    if len(answers) != 1:
        raise unprocessable("message.submitted_values must hold one chosen option")
    value = _text(answers[0].get("value"), "submitted_values[0].value", LONG)
    title = _text(answers[0].get("title"), "submitted_values[0].title", SHORT)
    for item in message["content_attributes"].get("items", []):
        if (value is not None and item.get("value") == value) or (
            value is None and title is not None and item.get("title") == title
        ):
            return [{"title": item.get("title"), "value": item.get("value")}]
    raise unprocessable("message.submitted_values is not one of the options offered")


def _form_answer(message: dict[str, Any], values: Any) -> list[dict[str, Any]]:
    fields = {f["name"]: f for f in message["content_attributes"].get("items", [])}
    given: dict[str, str] = {}
    for i, answer in enumerate(_answers(values)):
        name = _text(answer.get("name"), f"submitted_values[{i}].name", SHORT, required=True)
        assert name is not None
        field = fields.get(name)
        if field is None:
            raise unprocessable(f"the form has no field {name!r}")
        if name in given:
            raise unprocessable(f"the field {name!r} is answered twice")
        value = _text(answer.get("value"), f"submitted_values[{i}].value", MAX_ANSWER) or ""
        value = value.strip()
        if value and field.get("type") == "email":
            value = email_address(value, f"the field {name!r}")
        if value and field.get("type") == "number":
            try:
                float(value)
            except ValueError:
                raise unprocessable(f"the field {name!r} must be a number") from None
        offered_values = {o.get("value") for o in field.get("options", [])}
        if value and field.get("type") == "select" and value not in offered_values:
            raise unprocessable(f"the field {name!r} is not one of the options offered")
        given[name] = value
    missing = [n for n, f in fields.items() if f.get("required") and not given.get(n)]
    if missing:
        raise unprocessable(f"the field {missing[0]!r} is required")
    return [
        {"name": name, "title": fields[name].get("label") or name, "value": value}
        for name, value in given.items()
    ]


def _csat_answer(values: Any) -> dict[str, Any]:
    """{csat_survey_response: {rating, feedback_message}} (the widget sends the object; a
    list holding it is taken too)."""
    if isinstance(values, list) and len(values) == 1:
        values = values[0]
    response = values.get("csat_survey_response") if isinstance(values, dict) else None
    if not isinstance(response, dict):
        raise unprocessable("message.submitted_values.csat_survey_response is required")
    rating = response.get("rating")
    if isinstance(rating, str) and rating.strip().isdigit():
        rating = int(rating.strip())
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise unprocessable("csat_survey_response.rating must be an integer from 1 to 5")
    feedback = _text(
        response.get("feedback_message"), "csat_survey_response.feedback_message", MAX_FEEDBACK
    )
    return {"csat_survey_response": {"rating": rating, "feedback_message": feedback or ""}}


def answered(message: dict[str, Any], values: Any, email: str | None) -> dict[str, Any]:
    """The keys the visitor's answer sets in the message's content_attributes, checked
    against what it offered; 422 for a message that takes no answer."""
    kind = message["content_type"]
    if kind not in ANSWERABLE or message["private"] or message["message_type"] == 0:
        raise unprocessable(f"a message of content type {kind} takes no submitted values")
    if kind == "input_email":
        return {"submitted_email": email_address(email)}
    if values is None:
        raise unprocessable("message.submitted_values is required")
    if kind == "input_select":
        return {"submitted_values": _select_answer(message, values)}
    if kind == "form":
        return {"submitted_values": _form_answer(message, values)}
    return {"submitted_values": _csat_answer(values)}
