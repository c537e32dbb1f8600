"""The engine, fed inputs directly: no HTTP, no database, no clock but the one it is given."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hub.hours import BusinessHours
from ivr_flows.actions import (
    Action,
    Callback,
    Dial,
    Enqueue,
    Gather,
    Hangup,
    Hold,
    Lookup,
    Play,
    Record,
    Say,
    Voicemail,
)
from ivr_flows.engine import MAX_HOPS, Context, luhn_valid, new_call, render, step
from ivr_flows.inputs import (
    CallStarted,
    DialDone,
    Digits,
    HangUp,
    Input,
    LookupResult,
    NoInput,
    Queued,
    RecordingDone,
    Speech,
    TicketSummary,
)
from ivr_flows.loader import parse_flow
from ivr_flows.schema import Flow
from ivr_flows.state import MAX_PATH, CallState
from tests.ivr_flows.helpers import BASE, CONTEXT, flow, more_nodes, yaml


class Phone:
    """Steps one call through a flow and keeps its state."""

    def __init__(self, f: Flow, context: Context = CONTEXT) -> None:
        self.flow = f
        self.context = context
        self.state = new_call(f)

    def __call__(self, event: Input) -> list[Action]:
        self.state, actions = step(self.flow, self.state, event, self.context)
        return actions

    def start(self) -> list[Action]:
        return self(CallStarted(caller="+14155550123", called="+14155550100"))


def spoken(actions: list[Action]) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, Say):
            out.append(a.text)
        elif isinstance(a, Gather):
            out.extend(p.text for p in a.prompts if isinstance(p, Say))
    return out


MENU = flow(BASE)


def test_a_call_starts_at_the_start_node_with_a_gather() -> None:
    """The first step asks the menu's question inside a gather that listens for keys and the choices' words."""
    phone = Phone(MENU)
    actions = phone.start()
    assert len(actions) == 1 and isinstance(actions[0], Gather)
    gather = actions[0]
    assert spoken(actions) == ["Press 1 for sales, 2 for support."]
    assert gather.input == ["dtmf", "speech"] and gather.num_digits == 1 and gather.timeout == 5
    assert gather.finish_on_key == ""
    assert gather.language == "en-US" and gather.hints == ["sales", "support"]
    assert phone.state.node == "menu" and phone.state.phase == "ask"
    assert phone.state.vars["caller.number"] == "+14155550123"


def test_a_key_chooses_and_the_transfer_hands_off_to_routing() -> None:
    """Pressing 1 enqueues the call in sales with the IVR path and choice as metadata; the wait estimate it
    is told answers a hold for an agent, which ends the engine's part."""
    phone = Phone(MENU)
    phone.start()
    actions = phone(Digits(digits="1"))
    assert actions == [
        Enqueue(
            queue="sales",
            skills={},
            priority=None,
            metadata={
                "flow": "base",
                "language": "en",
                "ivr_path": ["menu:1", "to_sales"],
                "ivr_choice": "1",
                "vars": {},
            },
        )
    ]
    actions = phone(Queued(estimated_wait_seconds=20, position=2))
    assert actions == [Hold(queue="sales")]
    assert phone.state.ended and phone.state.outcome == "hold" and phone.state.queued == "sales"
    assert phone.state.vars["queue.position"] == "2" and phone.state.vars["queue.wait_minutes"] == "1"


def test_wrong_keys_and_silence_are_retried_then_the_call_ends() -> None:
    """Invalid input says the invalid message, silence the no-input message, each before asking again; after
    the last retry a menu without on_fail says goodbye and hangs up."""
    f = flow(
        BASE
        + yaml(
            """
            messages:
              invalid: Not an option.
              no_input: I did not hear you.
              goodbye: Bye.
            """
        )
    )
    phone = Phone(f)
    phone.start()
    assert spoken(phone(Digits(digits="7"))) == ["Not an option.", "Press 1 for sales, 2 for support."]
    assert spoken(phone(NoInput())) == ["I did not hear you.", "Press 1 for sales, 2 for support."]
    assert phone.state.tries == 2
    actions = phone(Digits(digits=""))  # Twilio's empty Digits is silence too
    assert spoken(actions) == ["Bye."] and isinstance(actions[-1], Hangup)
    assert phone.state.ended and phone.state.outcome == "hangup"


def test_star_and_pound_can_be_menu_keys() -> None:
    """A one-key gather sets no finish key, so pressing # or * reaches the engine as that key (Twilio's default
    finish key # would end the gather with no digits)."""
    f = flow(BASE.replace("{key: 1,", '{key: "#",').replace("{key: 2,", '{key: "*",'))
    phone = Phone(f)
    gather = phone.start()[-1]
    assert isinstance(gather, Gather) and gather.finish_on_key == "" and gather.num_digits == 1
    actions = phone(Digits(digits="*"))
    assert isinstance(actions[-1], Enqueue) and actions[-1].queue == "support"


def test_after_the_last_retry_a_menu_goes_to_on_fail() -> None:
    f = flow(BASE.replace("    type: menu\n", "    type: menu\n    retries: 0\n    on_fail: to_support\n"))
    phone = Phone(f)
    phone.start()
    actions = phone(NoInput())
    assert isinstance(actions[-1], Enqueue) and actions[-1].queue == "support"
    assert phone.state.path == ["menu:failed", "to_support"]


@pytest.mark.parametrize(
    ("said", "confidence", "queue"),
    [
        ("sales", 0.9, "sales"),
        ("I'd like to talk to SALES please", 0.8, "sales"),
        ("sails", 0.7, "sales"),  # a misrecognition close enough
        ("sells", 0.9, None),  # not close enough at the default threshold (80)
        ("a sandwich", 0.9, None),
        ("support", 0.1, None),  # under the confidence threshold
        ("sales or support", 0.9, None),  # ambiguous: asked again
        ("two", 0.9, None),
        ("2", 0.9, "support"),  # a key said as a digit
        ("", 0.9, None),
    ],
)
def test_speech_matching_is_tolerant_but_not_reckless(said: str, confidence: float, queue: str | None) -> None:
    phone = Phone(MENU)
    phone.start()
    actions = phone(Speech(text=said, confidence=confidence))
    if queue is None:
        assert isinstance(actions[-1], Gather) and phone.state.tries == 1
    else:
        assert isinstance(actions[-1], Enqueue) and actions[-1].queue == queue


def test_speech_words_per_language_and_accents() -> None:
    """Words are matched in the call's language (and those given for all), accents and case aside."""
    f = flow(
        """
        name: lang
        start: pick
        queue: support
        languages: {en: {locale: en-GB, voice: Polly.Amy}, es: {locale: es-ES}}
        nodes:
          pick:
            type: language
            prompt: {en: For English press 1., es: Para español oprima 2.}
            choices:
              - {key: 1, language: en, words: [English]}
              - {key: 2, language: es, words: [español]}
            next: menu
          menu:
            type: menu
            prompt: {en: Say billing., es: Diga facturación.}
            choices:
              - {key: 1, words: {en: [billing], es: [facturación]}, next: done}
          done:
            type: transfer
        """
    )
    phone = Phone(f)
    first = phone.start()
    assert isinstance(first[0], Gather)
    assert [(p.text, p.language, p.voice) for p in first[0].prompts if isinstance(p, Say)] == [
        ("For English press 1.", "en-GB", "Polly.Amy"),
        ("Para español oprima 2.", "es-ES", None),
    ], "a language menu speaks each language in its own voice"
    actions = phone(Speech(text="ESPANOL", confidence=0.9))
    assert phone.state.language == "es" and isinstance(actions[0], Gather)
    assert actions[0].language == "es-ES" and actions[0].hints == ["facturación"]
    assert spoken(phone(Speech(text="billing", confidence=0.9)))[-1] == "Diga facturación."
    assert isinstance(phone(Speech(text="facturacion", confidence=0.9))[-1], Enqueue)


COLLECT = flow(
    BASE.replace("next: to_sales}", "next: account}")
    + more_nodes(
        """
        account:
          type: collect
          var: account
          prompt: Enter your account number.
          invalid: Not valid.
          min_length: 8
          max_length: 8
          pattern: "^[1-9][0-9]*$"
          check: luhn
          confirm: You entered {account:digits}. Press 1 if right, 2 to retry.
          next: to_sales
        """
    )
)


def test_collect_validates_length_pattern_and_checksum_then_reads_back() -> None:
    phone = Phone(COLLECT)
    phone.start()
    gather = phone(Digits(digits="1"))[-1]
    assert isinstance(gather, Gather) and gather.num_digits == 8 and gather.finish_on_key == "#"
    assert gather.input == ["dtmf"]
    for wrong in ("1234567", "12345675", "02345674"):  # too short, fails Luhn, fails the pattern
        assert spoken(phone(Digits(digits=wrong)))[0] == "Not valid."
        phone.state.tries = 0  # keep retrying within this test
    actions = phone(Digits(digits="12345674#"))
    assert spoken(actions) == ["You entered 1 2 3 4 5 6 7 4. Press 1 if right, 2 to retry."]
    assert phone.state.phase == "confirm" and phone.state.vars["account"] == "12345674"
    assert spoken(phone(Speech(text="no", confidence=0.9))) == ["Enter your account number."]
    assert phone.state.phase == "ask"
    phone(Speech(text="1234 5674", confidence=0.9))  # digits read out
    actions = phone(Speech(text="yes that's right", confidence=0.9))
    assert isinstance(actions[-1], Enqueue) and actions[-1].metadata["vars"] == {"account": "12345674"}


def test_collect_of_variable_length_waits_for_the_finish_key() -> None:
    f = flow(
        BASE.replace("next: to_sales}", "next: pin}")
        + more_nodes(
            """
            pin:
              type: collect
              var: pin
              prompt: Your PIN, then pound.
              min_length: 4
              max_length: 6
              next: to_sales
            """
        )
    )
    phone = Phone(f)
    phone.start()
    gather = phone(Digits(digits="1"))[-1]
    assert isinstance(gather, Gather) and gather.num_digits is None and gather.finish_on_key == "#"
    assert isinstance(phone(Digits(digits="12345"))[-1], Enqueue)


def test_luhn() -> None:
    assert luhn_valid("79927398713") and luhn_valid("12345674") and luhn_valid("0")
    assert not luhn_valid("79927398710") and not luhn_valid("12345675")


HOURS = flow(
    BASE.replace("next: to_sales}", "next: open_now}").replace("next: to_support}", "next: inline}")
    + more_nodes(
        """
        open_now:
          type: hours
          queue: sales
          open: to_sales
          closed: closed
        inline:
          type: hours
          hours: {timezone: Europe/Madrid, weekly: {mon: ["09:00-18:00"]}}
          open: to_sales
          closed: closed
        closed:
          type: hangup
          prompt: We are closed.
        """
    )
)
SALES_HOURS = BusinessHours.parse({"timezone": "America/New_York", "weekly": {"wed": ["09:00-17:00"]}})


@pytest.mark.parametrize(
    ("now", "hours", "key", "open_"),
    [
        (datetime(2026, 3, 4, 15, 0, tzinfo=UTC), {"sales": SALES_HOURS}, "1", True),  # Wed 10:00 New York
        (datetime(2026, 3, 4, 23, 0, tzinfo=UTC), {"sales": SALES_HOURS}, "1", False),  # Wed 18:00
        (datetime(2026, 3, 5, 15, 0, tzinfo=UTC), {"sales": SALES_HOURS}, "1", False),  # Thursday
        (datetime(2026, 3, 5, 3, 0, tzinfo=UTC), {}, "1", True),  # no hours given: always open
        (datetime(2026, 3, 2, 9, 0, tzinfo=UTC), {}, "2", True),  # inline hours: Monday 10:00 Madrid
        (datetime(2026, 3, 2, 18, 0, tzinfo=UTC), {}, "2", False),  # Monday 19:00 Madrid
    ],
)
def test_the_hours_branch_uses_the_calendars_and_clock_it_is_given(
    now: datetime, hours: dict[str, BusinessHours | None], key: str, open_: bool
) -> None:
    phone = Phone(HOURS, Context(now=now, hours=hours))
    phone.start()
    actions = phone(Digits(digits=key))
    if open_:
        assert isinstance(actions[-1], Enqueue) and actions[-1].queue == "sales"
    else:
        assert spoken(actions) == ["We are closed."] and isinstance(actions[-1], Hangup)
    assert phone.state.path[1].endswith(":open" if open_ else ":closed")


BRANCHY = flow(
    BASE.replace("next: to_sales}", "next: find}")
    + more_nodes(
        """
        find:
          type: lookup
          next: check
        check:
          type: branch
          cases:
            - when: [{var: tickets.open, ge: 2}, {var: contact.name, is_set: true}]
              next: many
            - when: {var: ticket.status, in: [pending, new]}
              next: pending
            - when: {var: tickets.open, gt: 0}
              next: one
          else: none
        many:
          type: say
          prompt: "{contact.name}, you have {tickets.open} open requests; the latest is {{{ticket.subject}}}."
          next: mark
        pending:
          type: say
          prompt: Request {ticket.id} waits for you.
          next: mark
        one:
          type: say
          prompt: Request {ticket.id:digits} is open.
          next: mark
        none:
          type: say
          prompt: No request.
          next: mark
        mark:
          type: set
          priority: high
          skills: {"language:en": 2}
          vars: {about: "ticket {ticket.id}"}
          next: to_sales
        """
    )
)


@pytest.mark.parametrize(
    ("result", "said"),
    [
        (
            LookupResult(
                contact_name="Maria", open_tickets=[TicketSummary(id=42, subject="kettle"), TicketSummary(id=7)]
            ),
            "Maria, you have 2 open requests; the latest is {kettle}.",
        ),
        (LookupResult(open_tickets=[TicketSummary(id=42), TicketSummary(id=7)]), "Request 4 2 is open."),
        (LookupResult(open_tickets=[TicketSummary(id=42, status="pending")]), "Request 42 waits for you."),
        (LookupResult(), "No request."),
    ],
)
def test_lookup_results_feed_conditions_and_prompts(result: LookupResult, said: str) -> None:
    phone = Phone(BRANCHY)
    phone.start()
    assert phone(Digits(digits="1")) == [Lookup()]
    actions = phone(result)
    assert spoken(actions) == [said]
    enqueue = actions[-1]
    assert isinstance(enqueue, Enqueue) and enqueue.priority == "high" and enqueue.skills == {"language:en": 2}
    first = result.open_tickets[0].id if result.open_tickets else ""
    assert enqueue.metadata["vars"] == {"about": f"ticket {first}"}


WAITING = flow(
    BASE.replace("  to_sales:\n    type: transfer\n    queue: sales\n", "").replace(
        "next: to_support}", "next: call_me}"
    )
    + more_nodes(
        """
        to_sales:
          type: transfer
          queue: sales
          skills: {sales: 1}
          priority: urgent
          prompt: Connecting you.
          hold_prompt: You are number {queue.position}.
          long_wait: {over_seconds: 120, next: offer}
        offer:
          type: menu
          prompt: About {queue.wait_minutes} minutes. Press 1 for a callback, 2 to hold.
          choices:
            - {key: 1, next: call_me}
            - {key: 2, next: wait}
        call_me:
          type: callback
          prompt: We will call you back.
        wait:
          type: hold
          prompt: Please hold.
        """
    )
)


def test_a_short_wait_holds_and_a_long_wait_offers_a_callback_keeping_the_place_in_line() -> None:
    short = Phone(WAITING)
    short.start()
    actions = short(Digits(digits="1"))
    assert spoken(actions) == ["Connecting you."]
    enqueue = actions[-1]
    assert isinstance(enqueue, Enqueue) and enqueue.skills == {"sales": 1} and enqueue.priority == "urgent"
    assert short(Queued(estimated_wait_seconds=119, position=3)) == [
        Say(text="You are number 3.", language="en-US"),
        Hold(queue="sales"),
    ]

    long = Phone(WAITING)
    long.start()
    long(Digits(digits="1"))
    assert spoken(long(Queued(estimated_wait_seconds=130))) == ["About 3 minutes. Press 1 for a callback, 2 to hold."]
    actions = long(Digits(digits="1"))
    callback = actions[0]
    assert isinstance(callback, Callback) and callback.in_line and callback.queue == "sales"
    assert callback.skills == {"sales": 1} and callback.priority == "urgent"
    assert spoken(actions) == ["We will call you back."] and isinstance(actions[-1], Hangup)
    assert long.state.outcome == "callback"

    holding = Phone(WAITING)
    holding.start()
    holding(Digits(digits="1"))
    holding(Queued(estimated_wait_seconds=None))  # unknown wait: no offer
    assert holding.state.outcome == "hold"

    offered = Phone(WAITING)
    offered.start()
    offered(Digits(digits="1"))
    offered(Queued(estimated_wait_seconds=500))
    assert offered(Digits(digits="2")) == [Say(text="Please hold.", language="en-US"), Hold(queue="sales")]


def test_a_callback_before_any_transfer_joins_the_queue_anew() -> None:
    phone = Phone(WAITING)
    phone.start()
    callback = phone(Digits(digits="2"))[0]
    assert isinstance(callback, Callback) and not callback.in_line and callback.queue == "support"


VOICEMAIL = flow(
    BASE.replace("next: to_support}", "next: vm}")
    + more_nodes(
        """
        vm:
          type: voicemail
          prompt: Leave a message.
          thanks: Thanks.
          queue: support
          priority: high
          max_seconds: 60
          transcribe: true
        """
    )
    + "messages:\n  goodbye: Goodbye.\n"
)


def test_voicemail_records_and_hands_the_recording_over_as_a_ticket() -> None:
    phone = Phone(VOICEMAIL)
    phone.start()
    assert phone(Digits(digits="2")) == [
        Say(text="Leave a message.", language="en-US"),
        Record(max_seconds=60, finish_on_key="#", transcribe=True),
    ]
    actions = phone(RecordingDone(url="https://api.twilio.com/RE1", duration_seconds=14, recording_id="RE1"))
    vm = actions[0]
    assert isinstance(vm, Voicemail) and vm.queue == "support" and vm.priority == "high"
    assert (vm.recording_url, vm.recording_id, vm.duration_seconds) == ("https://api.twilio.com/RE1", "RE1", 14)
    assert vm.metadata["ivr_path"] == ["menu:2", "vm"]
    assert spoken(actions) == ["Thanks."] and isinstance(actions[-1], Hangup)
    assert phone.state.outcome == "voicemail"


@pytest.mark.parametrize(
    "event", [RecordingDone(url=None), RecordingDone(url="https://x/RE", duration_seconds=0), NoInput()]
)
def test_an_empty_voicemail_stores_nothing(event: Input) -> None:
    phone = Phone(VOICEMAIL)
    phone.start()
    phone(Digits(digits="2"))
    actions = phone(event)
    assert [type(a) for a in actions] == [Say, Hangup] and spoken(actions) == ["Goodbye."]
    assert phone.state.outcome == "hangup"


DIAL = flow(
    BASE.replace("next: to_support}", "next: partner}")
    + more_nodes(
        """
        partner:
          type: dial
          number_name: shipping_partner
          prompt: {play: https://example.com/connecting.mp3}
          timeout: 20
          on_fail: to_support
        """
    )
)


def test_dial_an_outside_number_and_fall_back_when_it_is_busy() -> None:
    phone = Phone(DIAL)
    phone.start()
    assert phone(Digits(digits="2")) == [
        Play(url="https://example.com/connecting.mp3"),
        Dial(number_name="shipping_partner", timeout=20),
    ]
    assert phone(DialDone(status="completed")) == [Hangup()]
    assert phone.state.outcome == "dialed"

    busy = Phone(DIAL)
    busy.start()
    busy(Digits(digits="2"))
    actions = busy(DialDone(status="busy"))
    assert isinstance(actions[-1], Enqueue) and actions[-1].queue == "support"
    assert busy.state.path[-2] == "partner:busy"


def test_the_caller_hanging_up_ends_the_call_with_no_actions() -> None:
    phone = Phone(MENU)
    phone.start()
    assert phone(HangUp()) == []
    assert phone.state.ended and phone.state.outcome == "caller_hung_up"
    assert phone(Digits(digits="1")) == [], "an ended call answers nothing"


def test_a_stray_input_repeats_the_waiting_action_and_changes_nothing() -> None:
    """A webhook replayed or out of place (a recording at a menu, a second call start) asks again."""
    phone = Phone(WAITING)
    first = phone.start()
    before = phone.state.model_copy(deep=True)
    assert phone(RecordingDone(url="https://x/RE", duration_seconds=3)) == first
    assert phone(CallStarted()) == first
    assert phone.state == before
    phone(Digits(digits="1"))
    again = phone(Digits(digits="1"))  # a key while the adapter should answer the Enqueue
    assert isinstance(again[-1], Enqueue) and again[-1].queue == "sales"


def test_step_never_changes_the_state_it_is_given_and_the_state_is_json() -> None:
    phone = Phone(BRANCHY)
    state = new_call(BRANCHY)
    frozen = state.model_dump_json()
    after, _ = step(BRANCHY, state, CallStarted(caller="+1"), CONTEXT)
    assert state.model_dump_json() == frozen and after != state
    phone.state = after
    phone(Digits(digits="1"))
    text = phone.state.model_dump_json()
    assert CallState.model_validate_json(text) == phone.state
    assert len(text) < 600, "small enough to keep per call in a database row"
    assert json.loads(text)["phase"] == "lookup"


def test_a_loop_that_never_waits_ends_the_call_as_runaway() -> None:
    """Lint warns of such loops; the engine never spins on them."""
    parsed = parse_flow(
        yaml(
            """
            name: spin
            start: a
            nodes:
              a: {type: set, vars: {x: "1"}, next: b}
              b: {type: branch, cases: [{when: {var: x, equals: "2"}, next: c}], else: a}
              c: {type: hangup}
            """
        )
    )
    assert parsed.flow is not None
    state, actions = step(parsed.flow, new_call(parsed.flow), CallStarted(), CONTEXT)
    assert actions == [Hangup()] and state.outcome == "runaway" and state.ended
    assert len(state.path) <= MAX_HOPS


def test_the_ivr_path_keeps_its_start_and_latest_steps() -> None:
    f = flow(
        BASE.replace("next: to_support}", "next: again}")
        + more_nodes(
            """
            again:
              type: say
              prompt: Again.
              next: menu
            """
        )
    )
    phone = Phone(f)
    phone.start()
    for _ in range(MAX_PATH):
        phone(Digits(digits="2"))
    assert len(phone.state.path) == MAX_PATH and phone.state.path[0] == "menu:2"


def test_templates() -> None:
    values = {"a": "12", "b": "x"}
    assert render("{a} {a:digits} {{b}} {b}{missing}.", values) == "12 1 2 {b} x."
    assert render("no braces", values) == "no braces"
