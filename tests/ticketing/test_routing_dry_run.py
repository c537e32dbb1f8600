"""The routing dry run: where a message would go and why, under the rules in force or a draft, through the same
queue choice as ingest; a draft that does not hold is refused with each field at fault located."""

from __future__ import annotations

from typing import Any

import pytest

from hub.runtime import Runtime
from tests.conftest import make_queue
from ticketing import queues
from ticketing.exceptions import InvalidRoutingConfig
from ticketing.queue_rules import DryRunAnswer, DryRunMessage, DryRunRequest, parse_rules

RULES = {
    "rules": [
        {"name": "vip", "when": {"contact": {"vip": True}}, "queue": "vip", "priority": "urgent"},
        {"name": "money", "when": {"channel": "email", "keywords": ["refund"]}, "queue": "billing"},
        {"name": "sales line", "when": {"recipient": "+14155550100", "ivr_choice": "2"}, "queue": "sales"},
    ],
    "default_queue": "support",
}


async def dry(rt: Runtime, rules: dict[str, object] | None = RULES, **message: object) -> DryRunAnswer:
    return await queues.dry_run(rt, data=DryRunRequest(message=DryRunMessage.model_validate(message), rules=rules))


async def test_each_way_a_queue_is_chosen_is_explained(rt: Runtime) -> None:
    for name, channels in (("support", ["webchat"]), ("billing", ["email"]), ("sales", ["voice"])):
        await make_queue(rt, name, channels)
    # A rule: the conditions that held, and why each earlier rule did not take it.
    a = await dry(rt, channel="email", subject="Refund please", text="", contact={"vip": False})
    assert (a.queue, a.rule, a.priority) == ("billing", "money", None)
    assert a.reason == "rule 'money' matched: the channel is email and the words refund are in the subject or text"
    assert [(s.rule, s.matched, s.reason) for s in a.steps] == [
        ("vip", False, "its queue 'vip' does not exist"),
        ("money", True, "the channel is email and the words refund are in the subject or text"),
    ]
    a = await dry(rt, channel="voice", recipient="+14155550100", ivr_choice="2")
    assert a.queue == "sales" and a.steps[1].reason == "the channel is voice, not email"
    # No rule: the adapter's queue, then the default queue.
    a = await dry(rt, channel="email", text="hello", queue="sales")
    assert a.queue == "sales" and a.rule is None and "came with the queue sales" in a.reason
    assert a.steps[1].reason == "none of the words refund is in the subject or text"
    assert a.steps[2].reason == "it came in on no address, not +14155550100"
    a = await dry(rt, channel="sms", text="hi")
    assert (a.queue, a.reason) == ("support", "no rule matched: the rules' default queue")
    # Without a default queue: the first queue that takes the channel, else the first queue.
    a = await dry(rt, rules={"rules": []}, channel="email")
    assert a.queue == "billing" and a.steps == [] and "the first queue that takes email" in a.reason
    a = await dry(rt, rules={"rules": []}, channel="telegram")
    assert a.queue == "support" and "no queue takes telegram: the first queue" in a.reason


async def test_the_rules_in_force_are_used_without_a_draft(rt: Runtime) -> None:
    await make_queue(rt, "support")
    await make_queue(rt, "billing")
    await queues.set_routing_rules(rt, rules=parse_rules({"rules": [{"name": "all", "queue": "billing"}]}))
    a = await dry(rt, rules=None, channel="webchat")
    assert (a.queue, a.rule, a.reason) == ("billing", "all", "rule 'all' matched: it has no conditions")


async def test_a_draft_that_does_not_hold_names_each_field(rt: Runtime) -> None:
    await make_queue(rt, "support")
    bad = {"rules": [{"name": "x", "queue": "support", "when": {"channel": "fax"}}, {"name": "y"}]}
    with pytest.raises(InvalidRoutingConfig) as caught:
        await dry(rt, rules=bad, channel="email")
    detail: Any = caught.value.answer()["detail"]
    assert [(d["loc"], d["msg"]) for d in detail] == [
        (["body", "rules", "rules", 0, "when", "channel"], detail[0]["msg"]),
        (["body", "rules", "rules", 1, "queue"], "Field required"),
    ]
    assert "unknown channel 'fax'" in detail[0]["msg"]
    # Saving names a queue that does not exist where it is named.
    with pytest.raises(InvalidRoutingConfig) as caught:
        await queues.set_routing_rules(
            rt, rules=parse_rules({"rules": [{"name": "a", "queue": "nowhere"}], "default_queue": "gone"})
        )
    assert [d["loc"] for d in caught.value.answer()["detail"]] == [
        ["body", "rules", 0, "queue"],
        ["body", "default_queue"],
    ]
