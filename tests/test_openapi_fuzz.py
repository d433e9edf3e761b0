"""schemathesis against a live `python -m server`, on SQLite and on PostgreSQL: requests
generated from docs/openapi.json, valid ones and broken ones, each answer checked for a 5xx
and against the document (status documented, content type, schema, headers).

Bounded by count, not by time: a few examples per operation and mode, derandomized (the same
cases every run), every operation in both modes on every run (a time budget made how much
was checked depend on the machine's load)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.procs import base_env, tokens_from_log, web_process

DOC = json.loads((Path(__file__).resolve().parent.parent / "docs" / "openapi.json").read_text())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Examples per operation: valid requests, then broken ones (which mostly meet the same
# parameter checks, so fewer find anything new).
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 6}


def fuzz(base_url: str, website_token: str, access_token: str) -> tuple[list[str], int]:
    """(failures, operations run). Every case is sent with the demo inbox's website_token,
    a valid contact token and the demo agent's token, and account 1 (the demo account): the
    generated part is everything else, so the requests reach the handlers."""
    schema = schemathesis.openapi.from_dict(DOC)
    session = requests.Session()
    cfg = session.post(f"{base_url}/api/v1/widget/config", params={"website_token": website_token})
    headers = {
        "X-Auth-Token": cfg.json()["website_channel_config"]["auth_token"],
        "api_access_token": access_token,
    }
    failures: list[str] = []
    ran = 0
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(
                max_examples=EXAMPLES[mode],
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.query = {**(case.query or {}), "website_token": website_token}
                if "account_id" in (case.path_parameters or {}):
                    case.path_parameters["account_id"] = 1
                case.call_and_validate(
                    base_url=base_url, session=session, headers=headers, checks=CHECKS
                )

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to break (the negative mode of an operation without inputs)
            except Exception as exc:
                failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {exc}")
            ran += 1
    return failures, ran


async def test_schemathesis_finds_no_5xx_and_no_answer_off_the_document(
    db_url: str, tmp_path: Path
) -> None:
    env = base_env(db_url, tmp_path / "data", SEED_DEMO="1", LOG_LEVEL="WARNING")
    env["LOG_LEVEL"] = "INFO"  # the seed line carries the demo tokens
    set_hypothesis_home_dir(str(tmp_path / "hypothesis"))  # not the repository's
    server = web_process(env, tmp_path / "server.log").start()
    try:
        tokens = tokens_from_log(server.output())
        failures, ran = await asyncio.to_thread(
            fuzz, server.url, tokens["website_token"], tokens["access_token"]
        )
    finally:
        server.stop()
    assert not failures, "\n\n".join(failures)
    methods = ("get", "post", "put", "patch", "delete")
    operations = sum(m in methods for item in DOC["paths"].values() for m in item)
    assert ran == 2 * operations, f"{ran} operation runs, {operations} operations"
    assert "Traceback" not in server.output(), server.output()[-3000:]
