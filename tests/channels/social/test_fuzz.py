"""The social endpoints fuzzed from the OpenAPI schema (schemathesis) with the accounts configured (the suite's
fuzzer, tests/test_api_fuzz.py, runs without them, where the webhooks answer 404 before reading a body): no 5xx,
answers as the schema says, and unsigned fuzz stores nothing."""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import random
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
import schemathesis.generation.dictionaries  # noqa: F401 - imported here, not first in the fuzzing thread, where

# pytest's assertion rewriting of it (schemathesis is a pytest plugin) failed with "AST constructor recursion depth
# mismatch"
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from hub.config import Settings
from hub.runtime import Runtime
from tests.channels.social.conftest import NUMBER
from tests.conftest import LiveServer, make_agent, make_queue
from ticketing.tables import messages as M

EXAMPLES = int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("SWITCHBOARD_FUZZ_SEED") or random.randrange(2**32))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _import_all(package: Any) -> None:
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        with contextlib.suppress(Exception):
            importlib.import_module(module.name)


# schemathesis and Hypothesis import modules lazily, while drawing; imported that deep in the stack, under pytest's
# assertion rewriting (schemathesis is a pytest plugin), their compile failed with "AST constructor recursion depth
# mismatch" (Python 3.11). Imported here first, they are not compiled there.
_import_all(schemathesis)
_import_all(hypothesis)
INTERPRETER_FAULTS: list[str] = []  # operations whose generation hit the interpreter's compile fault
OURS = ("/webhooks/meta", "/webhooks/telegram/", "/api/social/", "/api/tickets/{ticket_id}/window")


def fuzz_social(url: str, token: str) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(OURS) and operation.path != "/api/tickets/{ticket_id}/reply":
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            found = _fuzz_one(operation, mode, url, headers)
            failures.extend(f"{operation.label} ({mode.value}): {f}" for f in found[:1])
    return failures


def _fuzz_one(operation: Any, mode: GenerationMode, url: str, headers: dict[str, str]) -> list[str]:
    """One operation in one generation mode; the failures found."""
    found: list[str] = []

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=url, headers=headers, timeout=30)
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            found.append(f"{str(exc)[:1500]}\n{case.as_curl_command()}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        pass  # nothing in the operation to make invalid
    except (hypothesis.errors.FlakyFailure, SystemError) as exc:
        if "AST constructor recursion depth mismatch" not in repr(exc) + repr(getattr(exc, "exceptions", "")):
            raise
        INTERPRETER_FAULTS.append(operation.label)  # Python 3.11 compiling a lazy import deep in the stack
    return found


@pytest.mark.fuzz
@pytest.mark.timeout(600)
@pytest.mark.filterwarnings("ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning")
async def test_social_endpoints_answer_no_5xx_and_as_the_schema_says(rt: Runtime, social_settings: Settings) -> None:
    await make_queue(rt, "social", channels=["whatsapp"])
    await make_agent(rt, "ada", role="admin")
    live = LiveServer(social_settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
            r = await client.post("/api/auth/login", json={"username": "ada", "password": "password-123"})
            token = r.json()["token"]
        # In this thread, blocking the test's loop (the server has its own): importing what Hypothesis imports
        # lazily failed in a worker thread ("AST constructor recursion depth mismatch", pytest's rewriting).
        failures = fuzz_social(live.url, token)
    finally:
        live.stop()
    assert failures == [], f"seed {SEED} (replay with SWITCHBOARD_FUZZ_SEED={SEED}):\n" + "\n\n".join(failures)
    if INTERPRETER_FAULTS:
        pytest.skip(f"Python's compile fault while generating for {', '.join(INTERPRETER_FAULTS)}: not fuzzed")
    async with rt.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(M))).scalar_one() == 0, NUMBER
