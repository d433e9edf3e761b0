"""schemathesis against a live `python -m server`, on SQLite and on PostgreSQL: requests
generated from docs/openapi.json, valid ones and broken ones, each answer checked for a 5xx
and against the document (status documented, content type, schema, headers).

Bounded: a few examples per operation and mode, derandomized (the same cases every run), and
a time budget per engine after which no new operation is started."""

from __future__ import annotations

import asyncio
import json
import time
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
EXAMPLES = 15  # per operation and generation mode
BUDGET = 60.0  # seconds per engine


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
    deadline = time.monotonic() + BUDGET
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for result in schema.get_all_operations():
            if time.monotonic() > deadline:
                return failures, ran
            operation = result.ok()

            @settings(
                max_examples=EXAMPLES,
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
    operations = sum(m in ("get", "post", "patch") for item in DOC["paths"].values() for m in item)
    assert ran >= operations, f"only {ran} operation runs within {BUDGET:g} s"
    assert "Traceback" not in server.output(), server.output()[-3000:]
