"""The pure routing policy, SLA clocks and queue-selection rules: fed inputs, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketing import routing, sla
from ticketing.queue_rules import RulesInvalid, facts, first_match, load_rules_file, parse_rules
from ticketing.routing import AgentSlot, OverflowStep, QueuePolicy, WorkItem

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def agent(agent_id: int, **kw: object) -> AgentSlot:
    kw.setdefault("queue_ids", frozenset({1}))
    return AgentSlot(agent_id=agent_id, **kw)  # type: ignore[arg-type]


def item(ticket_id: int = 1, **kw: object) -> WorkItem:
    kw.setdefault("queue_id", 1)
    kw.setdefault("channel", "webchat")
    return WorkItem(ticket_id=ticket_id, **kw)  # type: ignore[arg-type]


# --- eligibility and choice ---------------------------------------------------------------------------------


def test_each_eligibility_rule_is_reported_as_the_reason() -> None:
    """An agent is refused for the first failing rule: status, queue, skill, blocking channel, capacity, pass."""
    work = item(required_skills={"language:es": 1, "billing": 3})
    skilled = {"language:es": 1, "billing": 3}
    assert routing.ineligibility(agent(1, available=False, status="away"), work) == "status away"
    assert routing.ineligibility(agent(1, queue_ids=frozenset({2})), work) == "not in the queue"
    assert routing.ineligibility(agent(1, skills={"billing": 3}), work) == "lacks skill language:es"
    assert routing.ineligibility(agent(1, skills={"language:es": 1, "billing": 2}), work) == (
        "lacks skill billing at level 3"
    )
    assert routing.ineligibility(agent(1, skills=skilled, load={"voice": 1}), work) == "busy on voice"
    assert routing.ineligibility(agent(1, skills=skilled, load={"webchat": 3}), work) == "at capacity on webchat"
    assert (
        routing.ineligibility(agent(1, skills=skilled), item(required_skills=skilled, excluded=frozenset({1})))
        == "passed on this item"
    )
    assert routing.ineligibility(agent(1, skills=skilled), work) is None


def test_capacity_is_per_channel_with_defaults_and_overrides() -> None:
    """Capacity counts per channel: defaults voice 1, chat 3, email 5, overridable per agent."""
    a = agent(1, capacity={"email": 2}, load={"email": 2, "webchat": 2})
    assert a.free("email") == 0 and a.free("webchat") == 1 and a.free("voice") == 1
    assert routing.decide(item(channel="email"), [a]).agent_id is None
    assert routing.decide(item(channel="webchat"), [a]).agent_id == 1


def test_a_call_in_hand_blocks_chats_but_not_email_and_can_be_turned_off() -> None:
    """With a call in hand no chat is offered; email still is; without the blocking rule chats are too."""
    on_call = agent(1, load={"voice": 1})
    assert routing.decide(item(channel="webchat"), [on_call]).agent_id is None
    assert routing.decide(item(channel="email"), [on_call]).agent_id == 1
    assert routing.decide(item(channel="webchat"), [agent(1, load={"voice": 1}, blocks={})]).agent_id == 1


def test_previous_agent_of_the_contact_comes_first() -> None:
    """The agent who last served the contact is preferred over an idler one, and the reason says so."""
    idle = agent(1)
    previous = agent(2, last_assigned_at=NOW)
    d = routing.decide(item(previous_agent_id=2), [idle, previous])
    assert (d.agent_id, d.reason) == (2, "served this contact before")


def test_longest_idle_then_fewest_open_items_then_lowest_id() -> None:
    """Among eligible agents: least recently assigned, then fewest items in hand, then lowest id."""
    early, late = NOW - timedelta(minutes=10), NOW
    d = routing.decide(item(), [agent(1, last_assigned_at=late), agent(2, last_assigned_at=early)])
    assert (d.agent_id, d.reason) == (2, "longest idle of 2 eligible agents")
    d = routing.decide(item(), [agent(1, load={"email": 2}), agent(2, load={"email": 1})])
    assert (d.agent_id, d.reason) == (2, "fewest open items of 2 equally idle eligible agents")
    d = routing.decide(item(), [agent(3), agent(2)])
    assert d.agent_id == 2
    assert routing.decide(item(), [agent(1)]).reason == "the only eligible agent"


def test_waiting_reason_counts_why_each_queue_member_was_refused() -> None:
    """A waiting decision explains itself by counting the reasons over the queue's agents."""
    agents = [agent(1, available=False, status="offline"), agent(2, load={"webchat": 3}), agent(3, load={"webchat": 3})]
    d = routing.decide(item(), agents)
    assert d.agent_id is None
    assert d.reason == "no eligible agent: 2 at capacity on webchat, 1 status offline"
    assert routing.decide(item(), []).reason == "no agent is a member of the queue"


# --- priority and order --------------------------------------------------------------------------------------


def test_urgency_climbs_by_quarters_of_the_sla_window_and_caps_at_two_windows() -> None:
    """No deadline: 0; then +1 per quarter of the window used, capped at 8 (twice the window)."""
    q = NOW - timedelta(minutes=60)
    assert routing.urgency(q, None, NOW) == 0
    assert routing.urgency(q, q + timedelta(minutes=240), NOW) == 1
    assert routing.urgency(q, q + timedelta(minutes=60), NOW) == 4
    assert routing.urgency(q, q + timedelta(minutes=10), NOW) == 8


def test_route_takes_higher_priority_first_and_fifo_among_equals() -> None:
    """With room for two, the urgent item and then the older of two normal items are offered."""
    t0 = NOW - timedelta(minutes=5)
    items = [
        item(1, queued_at=t0 + timedelta(seconds=2)),
        item(2, queued_at=t0 + timedelta(seconds=1)),
        item(3, queued_at=t0 + timedelta(seconds=3), priority="urgent"),
    ]
    decisions = routing.route(items, [agent(1, capacity={"webchat": 2})], NOW)
    assert [(d.ticket_id, d.agent_id is not None) for d in decisions] == [(3, True), (2, True), (1, False)]


def test_work_near_its_deadline_overtakes_older_work() -> None:
    """Aging: a newer item at its SLA deadline goes before an older one with no deadline pressure."""
    old = item(1, queued_at=NOW - timedelta(minutes=30))
    due = item(2, queued_at=NOW - timedelta(minutes=10), due_at=NOW)
    decisions = routing.route([old, due], [agent(1, capacity={"webchat": 1})], NOW)
    assert decisions[0].ticket_id == 2 and decisions[0].agent_id == 1


def test_queue_priority_counts_in_effective_priority() -> None:
    """A queue with priority 5 puts its work before a priority-0 queue's older work."""
    a = item(1, queued_at=NOW - timedelta(minutes=9))
    b = item(2, queued_at=NOW, queue_priority=5)
    assert routing.effective_priority(b, NOW) > routing.effective_priority(a, NOW)
    assert routing.route([a, b], [agent(1, capacity={"webchat": 1})], NOW)[0].ticket_id == 2


# --- overflow ---------------------------------------------------------------------------------------------------


def test_overflow_steps_widen_queues_and_drop_skills_cumulatively() -> None:
    """Stage 1 widens to queue 2; stage 2 also drops language:es; stage counts follow the wait."""
    policy = QueuePolicy(
        queue_id=1,
        required_skills={"language:es": 1, "billing": 1},
        overflow=(
            OverflowStep(after_seconds=60, widen_to=frozenset({2})),
            OverflowStep(after_seconds=120, drop_skills=frozenset({"language:es"})),
        ),
        max_wait_seconds=600,
        overflow_queue_id=3,
    )
    assert [policy.stage_after(s) for s in (0, 59, 60, 119, 120, 10_000)] == [0, 0, 1, 1, 2, 2]
    assert routing.requirements(policy, None, 0) == (frozenset({1}), {"language:es": 1, "billing": 1})
    assert routing.requirements(policy, None, 1) == (frozenset({1, 2}), {"language:es": 1, "billing": 1})
    assert routing.requirements(policy, {"vip": 1}, 2) == (frozenset({1, 2}), {"billing": 1, "vip": 1})
    assert policy.past_max_wait(600) and not policy.past_max_wait(599)
    assert routing.overflow_summary(policy, 2, {2: "general"}) == "widened to general; dropped skill language:es"


def test_widened_item_reaches_agents_of_the_other_queue() -> None:
    """After widening, an agent only in the overflow queue may be offered the item."""
    other = agent(7, queue_ids=frozenset({2}))
    assert routing.route([item(1)], [other], NOW)[0].agent_id is None
    assert routing.route([item(1, queue_ids=frozenset({1, 2}))], [other], NOW)[0].agent_id == 7


# --- invariants over random inputs --------------------------------------------------------------------------

CHANNELS = ["voice", "webchat", "email", "sms"]
SKILLS = ["billing", "language:es", "vip"]


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[AgentSlot], list[WorkItem]]:
    n_agents = draw(st.integers(0, 6))
    agents = [
        AgentSlot(
            agent_id=i,
            queue_ids=frozenset(draw(st.sets(st.integers(1, 3), max_size=3))),
            capacity=draw(st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 3), max_size=4)),
            load=draw(st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 2), max_size=4)),
            last_assigned_at=draw(st.none() | st.just(NOW - timedelta(minutes=i % 3))),
            available=draw(st.booleans()),
            skills=draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 3), max_size=3)),
        )
        for i in range(1, n_agents + 1)
    ]
    n_items = draw(st.integers(0, 15))
    items = [
        WorkItem(
            ticket_id=i,
            queue_id=draw(st.integers(1, 3)),
            channel=draw(st.sampled_from(CHANNELS)),
            previous_agent_id=draw(st.none() | st.integers(1, 6)),
            excluded=frozenset(draw(st.sets(st.integers(1, 6), max_size=2))),
            required_skills=draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 3), max_size=2)),
            priority=draw(st.sampled_from(["low", "normal", "high", "urgent"])),
            queued_at=NOW - timedelta(seconds=draw(st.integers(0, 3600))),
            due_at=draw(st.none() | st.just(NOW + timedelta(minutes=5))),
        )
        for i in range(1, n_items + 1)
    ]
    return agents, items


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_route_only_offers_to_eligible_agents_and_never_past_capacity(
    case: tuple[list[AgentSlot], list[WorkItem]],
) -> None:
    """Over random agents and work: every offer goes to an agent eligible at that moment (replayed in the
    order decided), no offer takes an agent past its capacity or onto a blocked channel, and an item waits
    only when no agent was eligible for it."""
    agents, items = case
    replay = {a.agent_id: AgentSlot(**{**_fields(a), "load": dict(a.load)}) for a in agents}
    decisions = routing.route(items, agents, NOW)
    assert sorted(d.ticket_id for d in decisions) == sorted(i.ticket_id for i in items)
    by_id = {i.ticket_id: i for i in items}
    for d in decisions:
        work = by_id[d.ticket_id]
        if d.agent_id is None:
            assert all(routing.ineligibility(a, work) is not None for a in replay.values())
            continue
        chosen = replay[d.agent_id]
        assert routing.ineligibility(chosen, work) is None
        before = chosen.load.get(work.channel, 0)
        chosen.take(work.channel, NOW)
        assert chosen.load[work.channel] == before + 1 <= chosen.limit(work.channel)
    # Order: offered items were considered in effective-priority order, FIFO among equals.
    keys = [routing.order_key(by_id[d.ticket_id], NOW) for d in decisions]
    assert keys == sorted(keys)


def _fields(a: AgentSlot) -> dict[str, object]:
    return {name: getattr(a, name) for name in AgentSlot.__slots__}  # type: ignore[attr-defined]


# --- business hours and SLA clocks ------------------------------------------------------------------------------

WEEKDAYS = {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def test_sla_deadline_counts_only_business_hours_across_a_weekend() -> None:
    """One hour of first-response time from Friday 17:30 (Madrid) falls due Monday 09:30 local."""
    hours = sla.BusinessHours.parse({"timezone": "Europe/Madrid", "weekly": WEEKDAYS})
    friday = datetime(2026, 11, 20, 17, 30, tzinfo=hours.zone)  # type: ignore[union-attr]
    due = sla.due_at(hours, friday.astimezone(UTC), 3600)
    assert due is not None
    assert due.astimezone(hours.zone) == datetime(2026, 11, 23, 9, 30, tzinfo=hours.zone)  # type: ignore[union-attr]


def test_holidays_are_closed_and_no_hours_means_always_open() -> None:
    """A holiday is skipped; without hours the deadline is plain elapsed time and the queue is always open."""
    hours = sla.BusinessHours.parse({"timezone": "UTC", "weekly": WEEKDAYS, "holidays": [date(2026, 12, 25)]})
    thursday = datetime(2026, 12, 24, 17, 0, tzinfo=UTC)
    assert sla.due_at(hours, thursday, 2 * 3600) == datetime(2026, 12, 28, 10, 0, tzinfo=UTC)
    assert not sla.is_open(hours, datetime(2026, 12, 25, 12, 0, tzinfo=UTC))
    assert sla.is_open(hours, datetime(2026, 12, 24, 12, 0, tzinfo=UTC))
    assert sla.is_open(None, thursday)
    assert sla.due_at(None, thursday, 60) == thursday + timedelta(seconds=60)
    assert sla.due_at(hours, thursday, None) is None


def test_business_hours_follow_daylight_saving_time() -> None:
    """09:00 local is 08:00 UTC in winter and 07:00 UTC in summer in Madrid."""
    hours = sla.BusinessHours.parse({"timezone": "Europe/Madrid", "weekly": {"mon": ["09:00-10:00"]}})
    assert hours is not None
    assert hours.is_open(datetime(2026, 11, 23, 8, 30, tzinfo=UTC))
    assert hours.is_open(datetime(2026, 6, 1, 7, 30, tzinfo=UTC))
    assert not hours.is_open(datetime(2026, 6, 1, 8, 30, tzinfo=UTC))


def test_whole_day_interval_and_hours_that_never_open() -> None:
    """00:00-24:00 is the whole day; hours with no open day give no deadline rather than looping."""
    always = sla.BusinessHours.parse({"weekly": {d: ["00:00-24:00"] for d in sla.DAYS}})
    assert sla.due_at(always, NOW, 86_400 * 3) == NOW + timedelta(days=3)
    never = sla.BusinessHours.parse({"weekly": {"mon": []}})
    assert sla.due_at(never, NOW, 60) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"weekly": {"monday": ["09:00-17:00"]}}, "unknown day"),
        ({"weekly": {"mon": ["17:00-09:00"]}}, "ends before it starts"),
        ({"weekly": {"mon": ["9-17"]}}, "not a time"),
        ({"weekly": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "overlap"),
    ],
)
def test_bad_business_hours_are_refused_with_the_reason(spec: dict[str, object], message: str) -> None:
    """Hours are checked when loaded: zone, day names, interval format and order, overlaps."""
    with pytest.raises(ValueError, match=message):
        sla.HoursSpec.model_validate(spec)


# --- queue-selection rules -------------------------------------------------------------------------------------

QUEUES = {"vip": 1, "soporte": 2, "billing": 3, "sales": 4, "support": 5}
RULES = parse_rules(
    {
        "rules": [
            {"name": "vip", "when": {"contact": {"vip": True}}, "queue": "vip", "priority": "high"},
            {"name": "spanish", "when": {"language": "es"}, "queue": "soporte", "skills": {"language:es": 1}},
            {"name": "billing", "when": {"keywords": ["invoice", "refund"]}, "queue": "billing"},
            {"name": "sales line", "when": {"recipient": "+14155550100", "ivr_choice": 2}, "queue": "sales"},
            {"name": "email", "when": {"channel": "email"}, "queue": "support"},
        ],
        "default_queue": "support",
    }
)


def pick(channel: str = "sms", *, attrs: dict[str, object] | None = None, **kw: object) -> str | None:
    f = facts(
        channel=channel,
        recipient=kw.get("recipient"),  # type: ignore[arg-type]
        metadata=kw.get("metadata", {}),  # type: ignore[arg-type]
        subject=kw.get("subject"),  # type: ignore[arg-type]
        text=kw.get("text", ""),  # type: ignore[arg-type]
        contact_attributes=attrs,
    )
    rule = first_match(RULES, f, QUEUES)
    return rule.name if rule else None


def test_each_rule_condition_selects_its_queue_and_first_match_wins() -> None:
    """Contact attribute, language (attribute or metadata), keywords, number plus IVR choice, channel; a VIP
    writing about an invoice goes to the VIP rule, the first that matches."""
    assert pick(attrs={"vip": True}, text="invoice please") == "vip"
    assert pick(attrs={"language": "es"}) == "spanish"
    assert pick(metadata={"language": "ES"}) == "spanish"
    assert pick(text="Where is my Refund?") == "billing"
    assert pick(text="refunded") is None  # whole words only
    assert pick("voice", recipient="+14155550100", metadata={"ivr_choice": "2"}) == "sales line"
    assert pick("voice", recipient="+14155550100", metadata={"ivr_choice": "1"}) is None
    assert pick("email") == "email"
    assert pick("sms") is None


def test_rule_naming_a_missing_queue_is_skipped() -> None:
    """A rule whose queue no longer exists does not match; the next rule gets its chance."""
    f = facts(channel="email", recipient=None, metadata={}, subject=None, text="", contact_attributes={"vip": True})
    rule = first_match(RULES, f, {"support": 5})
    assert rule is not None and rule.name == "email"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": [{"name": "x", "queue": "q", "when": {"chanel": "email"}}]}, "rules.0.when.chanel: Extra inputs"),
        ({"rules": [{"name": "x", "queue": "q", "when": {"channel": "fax"}}]}, "unknown channel 'fax'"),
        ({"rules": [{"name": "x", "queue": "q", "priority": "asap"}]}, "rules.0.priority"),
        ({"rules": [{"name": "x", "queue": "q", "skills": {"es": 0}}]}, "needs a level of 1"),
        ({"rules": [{"name": "x", "queue": "q"}, {"name": "x", "queue": "r"}]}, "two rules are named 'x'"),
        ({"rules": [{"name": "x"}]}, "rules.0.queue: Field required"),
    ],
)
def test_invalid_rules_are_refused_naming_the_field(data: object, message: str) -> None:
    """Validation on load says which field is wrong and why."""
    with pytest.raises(RulesInvalid, match=message.replace("(", r"\(")):
        parse_rules(data)


def test_yaml_rules_file_loads_and_bad_yaml_is_reported(tmp_path: Path) -> None:
    """A YAML file validates into rules; broken YAML or a missing file is a clear error with the path."""
    good = tmp_path / "rules.yaml"
    good.write_text("rules:\n  - name: mail\n    when: {channel: email}\n    queue: support\ndefault_queue: support\n")
    assert load_rules_file(good).rules[0].queue == "support"
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(RulesInvalid, match="not valid YAML"):
        load_rules_file(bad)
    with pytest.raises(RulesInvalid, match="cannot read"):
        load_rules_file(tmp_path / "missing.yaml")
