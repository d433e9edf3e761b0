"""The visitor's basic journey, on both databases."""

from tests.conftest import Visitor


async def test_first_message_opens_a_conversation(visitor: Visitor) -> None:
    resp = await visitor.get("conversations")
    assert await resp.json() == {}
    sent = await visitor.send("hello")
    resp = await visitor.get("conversations")
    conv = await resp.json()
    assert conv["id"] == sent["conversation_id"]
    assert conv["status"] == "open"
    resp = await visitor.get("messages")
    body = await resp.json()
    assert [m["content"] for m in body["payload"]] == ["hello"]
