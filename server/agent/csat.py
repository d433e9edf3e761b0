"""GET /api/v1/accounts/{id}/csat_survey_responses: the visitors' answers to the CSAT survey,
newest first, in the inboxes the agent sees, a page at a time (Chatwoot's 25)."""

from __future__ import annotations

from aiohttp import web

from server import views
from server.agent import auth
from server.errors import bad_request, json_response
from server.params import opt_int
from server.services import services
from server.store import csat as csat_store

PER_PAGE = 25
MAX_PAGE = 100_000


async def index(request: web.Request) -> web.Response:
    svc = services(request)
    who = await auth.agent(request)
    page = opt_int(request.query.get("page"), "page")
    page = 1 if page is None else page
    if not 1 <= page <= MAX_PAGE:
        raise bad_request(f"page must be between 1 and {MAX_PAGE}")
    rows = await svc.db.read(
        csat_store.responses, who.account_id, who.inbox_ids, page=page, per_page=PER_PAGE
    )
    return json_response([views.csat_response_record(row) for row in rows])
