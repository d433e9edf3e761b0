"""Label titles (Chatwoot's Label model): what a title may be, and how many labels an account
and a conversation may have. Titles are stored lower case, as Chatwoot stores them, so
"VIP" and "vip" are one label."""

from __future__ import annotations

from typing import Any

from server.errors import bad_request, unprocessable

MAX_TITLE = 255
MAX_DESCRIPTION = 1024
MAX_PER_ACCOUNT = 1000  # labels an account may define
MAX_PER_CONVERSATION = 50  # labels on one conversation


def title(value: Any, name: str = "title") -> str:
    """A title: letters, digits, `-` and `_` (Chatwoot's /\\A[\\p{L}\\p{N}_-]+\\z/), lower case;
    422 otherwise, as Chatwoot's validation answers."""
    if value is None or value == "":
        raise unprocessable(f"{name} can't be blank")
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string")
    if len(value) > MAX_TITLE:
        raise unprocessable(f"{name} is too long (at most {MAX_TITLE} characters)")
    text = value.strip().lower()
    if not text or not all(ch.isalnum() or ch in "-_" for ch in text):
        raise unprocessable(f"{name} may hold only letters, digits, '-' and '_'")
    return text


def titles(value: Any, name: str = "labels") -> tuple[str, ...]:
    """A set of titles (order kept, duplicates dropped), at most MAX_PER_CONVERSATION."""
    if not isinstance(value, list):
        raise bad_request(f"{name} must be a list of strings")
    if len(value) > MAX_PER_CONVERSATION:
        raise unprocessable(f"{name} has too many entries (at most {MAX_PER_CONVERSATION})")
    out: dict[str, None] = {}
    for i, item in enumerate(value):
        out[title(item, f"{name}[{i}]")] = None
    return tuple(out)


def color(value: Any) -> str:
    """#rgb or #rrggbb (the label's colour in the console)."""
    if value is None or value == "":
        return "#1f93ff"
    if not isinstance(value, str):
        raise bad_request("color must be a string")
    digits = value[1:]
    if (
        not value.startswith("#")
        or len(digits) not in (3, 6)
        or not all(c in "0123456789abcdefABCDEF" for c in digits)
    ):
        raise unprocessable("color must be a hex colour like #1f93ff")
    return value.lower()
