"""The demo flow: each scripted conversation of demo.tests.yaml is a test case, and the flow names only
queues that `switchboard demo` seeds (checked against a seeded database, SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from hub.runtime import Runtime
from ivr_flows.conversations import Conversation, load_suite, run_conversation
from ivr_flows.lint import lint_file
from ivr_flows.loader import load_flow
from ivr_flows.simulator import Call, World
from tests.ivr_flows.helpers import DEMO
from ticketing.demo import seed
from ticketing.queues import list_queues

SUITE = load_suite(DEMO)
assert SUITE.errors == [], SUITE.errors
assert SUITE.spec is not None and SUITE.flow is not None


@pytest.mark.parametrize("index", range(len(SUITE.spec.tests)), ids=[c.name for c in SUITE.spec.tests])
def test_demo_conversation(index: int) -> None:
    """One scripted call through the demo flow hears what it should and ends where it should."""
    assert SUITE.spec is not None and SUITE.flow is not None
    conversation: Conversation = SUITE.spec.tests[index]
    result = run_conversation(SUITE.flow, conversation, SUITE.spec.world, SUITE.lines, ("tests", index))
    assert result.passed, "\n".join([*result.failures, "the call:", *result.transcript])


def test_the_conversations_cover_every_node_of_the_demo_flow() -> None:
    """Every node of the demo flow is visited by at least one scripted conversation."""
    assert SUITE.spec is not None and SUITE.flow is not None
    visited: set[str] = set()
    for conv in SUITE.spec.tests:
        world = World()
        for spec in (SUITE.spec.world, conv.world):
            if spec is not None:
                spec.apply(world)
        call = Call(SUITE.flow, world)
        call.start()
        visited.update(e.split(":")[0] for e in call.state.path)
        for step in conv.steps:
            event = step.input()
            if event is not None and not call.ended:
                call.feed(event)
                visited.update(e.split(":")[0] for e in call.state.path)
    assert set(SUITE.flow.nodes) - visited == set()


async def test_the_demo_flow_names_only_the_demo_queues(rt: Runtime) -> None:
    """Seeded like `switchboard demo`, the hub has every queue the demo flow names: it loads with the hub's
    queues as the known ones, and lint finds nothing."""
    assert await seed(rt)
    names = [q.name for q in await list_queues(rt)]
    assert load_flow(DEMO, known_queues=names).name == "demo"
    assert lint_file(DEMO, known_queues=names) == []
