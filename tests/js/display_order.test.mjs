// The display order of server/static/dom.js (inDisplayOrder), run by tests/test_display_order.py
// with Node's own test runner: the rule the server's pages follow (server/store/rules.py
// in_display_order), in the browser.
import assert from "node:assert/strict";
import { test } from "node:test";

import { inDisplayOrder } from "../../server/static/dom.js";

const message = (id, createdAt) => ({ id, created_at: createdAt, content_attributes: {} });
const addedTurn = (id, createdAt, turn) => ({
  id,
  created_at: createdAt,
  content_attributes: { voice_transcript: true, role: "ai", turn },
});
const ids = (list) => inDisplayOrder(list).map((m) => m.id);

test("messages are shown by id whatever their dates", () => {
  assert.deepEqual(ids([message(3, 10), message(1, 30), message(2, 20)]), [1, 2, 3]);
  assert.deepEqual(ids([message(2, 5), message(1, 9)]), [1, 2]); // commit order wins
});

test("turns added from the transcript go where they were said", () => {
  const list = [message(1, 10), message(2, 20), message(3, 30), addedTurn(4, 5, 0), addedTurn(5, 15, 2), message(6, 40)];
  assert.deepEqual(ids(list), [4, 1, 5, 2, 3, 6]);
});

test("an added turn dated after everything stays last; a message not yet sent stays last", () => {
  const pending = { id: "echo-1", created_at: 0, content_attributes: {} };
  assert.deepEqual(ids([addedTurn(9, 50, 7), message(1, 10), pending]), [1, 9, "echo-1"]);
  assert.deepEqual(ids([message(1, 10), pending, addedTurn(9, 5, 0)]), [9, 1, "echo-1"]);
});

test("a browser's own voice turns (no position yet) stay in id order", () => {
  const posted = (id, createdAt) => ({ id, created_at: createdAt, content_attributes: { voice_transcript: true, role: "user" } });
  assert.deepEqual(ids([posted(2, 10), posted(1, 20)]), [1, 2]);
});
