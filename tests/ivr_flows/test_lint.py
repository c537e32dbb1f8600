"""The linter: one test per rule, each on a flow that is fine but for the one mistake, checking the finding's
code, node and line (so a message points where the author must look)."""

from __future__ import annotations

from ivr_flows.source import Finding
from tests.ivr_flows.helpers import BASE, codes, findings, more_nodes, yaml


def only(found: list[Finding], code: str) -> Finding:
    matching = [f for f in found if f.code == code]
    assert len(matching) == 1, found
    return matching[0]


def test_the_base_flow_is_clean() -> None:
    """The flow the rule tests start from has no finding at all, so each finding below is the rule's."""
    assert findings(BASE, known_queues=["support", "sales"]) == []


def test_unknown_target() -> None:
    """A choice naming a node that does not exist is an error at the choice's line."""
    found = findings(BASE.replace("next: to_sales}", "next: to_sale}"))
    f = only(found, "unknown-target")
    assert (f.severity, f.node, f.line) == ("error", "menu", 9)
    assert "'to_sale'" in f.message and "choices[1].next" in f.message


def test_unknown_start() -> None:
    """``start`` naming no node is an unknown target too, at the start line."""
    f = only(findings(BASE.replace("start: menu", "start: menus")), "unknown-target")
    assert (f.node, f.line) == (None, 2)


def test_unreachable_node_is_a_warning() -> None:
    """A node nothing leads to is reported as a warning (the flow still loads)."""
    text = BASE + "  orphan:\n    type: hangup\n"
    f = only(findings(text), "unreachable")
    assert (f.severity, f.node, f.line) == ("warning", "orphan", 16)


def test_menu_with_no_way_out() -> None:
    """A menu whose every choice leads back to itself traps the caller."""
    text = BASE.replace("next: to_sales}", "next: menu}").replace("next: to_support}", "next: menu}")
    f = only(findings(text), "menu-no-way-out")
    assert (f.severity, f.node, f.line) == ("error", "menu", 8)


def test_missing_prompt() -> None:
    """A menu without a prompt is an error at the node."""
    text = BASE.replace("    prompt: Press 1 for sales, 2 for support.\n", "")
    f = only(findings(text), "missing-prompt")
    assert (f.severity, f.node, f.line) == ("error", "menu", 5)


def test_missing_translation_of_a_declared_language() -> None:
    """A flow declaring English and Spanish needs both in every prompt: a plain text counts as English only."""
    text = BASE.replace("queue: support\n", "queue: support\nlanguages: {en: {}, es: {locale: es-MX}}\n", 1)
    f = only(findings(text), "missing-prompt")
    assert (f.node, f.line) == ("menu", 8) and "'es'" in f.message
    translated = text.replace(
        "prompt: Press 1 for sales, 2 for support.", "prompt: {en: Press 1 for sales., es: Oprima 1 para ventas.}"
    )
    assert findings(translated) == []
    audio = text.replace("prompt: Press 1 for sales, 2 for support.", "prompt: {play: https://example.com/menu.mp3}")
    assert findings(audio) == [], "audio given for every language needs no translation"


def test_missing_translation_of_a_shared_message() -> None:
    """The flow's own messages need every declared language too."""
    text = yaml(BASE) + "messages:\n  goodbye: {en: Goodbye.}\n"
    text = text.replace("queue: support\n", "queue: support\nlanguages: {en: {}, es: {}}\n", 1)
    text = text.replace("prompt: Press 1 for sales, 2 for support.", "prompt: {en: Press 1., es: Oprima 1.}")
    f = only(findings(text), "missing-prompt")
    assert f.node is None and "messages.goodbye" in f.message and f.line == 18


def test_unknown_language() -> None:
    """Text for a language the flow does not declare is an error (a typo or a forgotten declaration)."""
    text = BASE.replace("prompt: Press 1 for sales, 2 for support.", "prompt: {en: Press 1., fr: Appuyez sur 1.}")
    f = only(findings(text), "unknown-language")
    assert (f.node, f.line) == ("menu", 7) and "'fr'" in f.message


def test_loop_with_no_exit() -> None:
    """Nodes that only lead to each other, none able to end or hand off the call, trap the caller."""
    text = BASE + more_nodes(
        """
          a:
            type: menu
            prompt: Press 1 to go on.
            choices: [{key: 1, next: b}]
            on_fail: a
          b:
            type: say
            prompt: Still here.
            next: a
        """
    )
    text = text.replace("next: to_support}", "next: a}")
    found = findings(text)
    f = only(found, "loop-no-exit")
    assert (f.severity, f.node, f.line) == ("error", "a", 16)
    assert "a → b" in f.message


def test_loop_without_input_is_a_warning() -> None:
    """A cycle that never waits for the caller is a warning: it may exit by a condition, or spin."""
    text = BASE.replace("next: to_support}", "next: check}") + more_nodes(
        """
          check:
            type: branch
            cases: [{when: {var: tries, equals: "1"}, next: to_support}]
            else: mark
          mark:
            type: set
            vars: {tries: "1"}
            next: check
        """
    )
    found = findings(text)
    f = only(found, "loop-without-input")
    assert (f.severity, f.node) == ("warning", "check")
    assert "loop-no-exit" not in codes(found)


def test_unknown_queue_when_the_queues_are_known() -> None:
    """A queue not among the known queues is an error at its line; without a list there is no check."""
    f = only(findings(BASE, known_queues=["support"]), "unknown-queue")
    assert (f.node, f.line) == ("to_sales", 13) and "'sales'" in f.message
    flow_default = only(findings(BASE, known_queues=["sales"]), "unknown-queue")
    assert (flow_default.node, flow_default.line) == (None, 3)
    assert "unknown-queue" not in codes(findings(BASE))


def test_no_queue() -> None:
    """With no default queue, a transfer that can be reached before any queue is set has nowhere to go."""
    text = BASE.replace("queue: support\n", "", 1)
    f = only(findings(text), "no-queue")
    assert (f.node, f.line) == ("to_support", 13)
    set_first = text.replace("next: to_support}", "next: pick}") + more_nodes(
        """
          pick:
            type: set
            queue: support
            next: to_support
        """
    )
    assert "no-queue" not in codes(findings(set_first))


def test_hold_without_transfer() -> None:
    """``hold`` keeps waiting in the queue the call joined, so it must come after a transfer."""
    text = BASE.replace("next: to_support}", "next: wait}") + "  wait:\n    type: hold\n"
    f = only(findings(text), "hold-without-transfer")
    assert (f.node, f.line) == ("wait", 16)
    after = BASE.replace("  to_support:\n    type: transfer\n", "") + more_nodes(
        """
          to_support:
            type: transfer
            long_wait: {over_seconds: 60, next: wait}
          wait:
            type: hold
        """
    )
    assert "hold-without-transfer" not in codes(findings(after))


def test_unknown_variable() -> None:
    """A prompt using a variable nothing sets would say nothing there; lookup and collect variables count."""
    text = BASE.replace("Press 1 for sales, 2 for support.", "Hello {contact.name}, your order {order:digits}.")
    f = only(findings(text), "unknown-variable")
    assert (f.node, f.line) == ("menu", 7) and "{order}" in f.message
    braces = BASE.replace("Press 1 for sales, 2 for support.", "Press {{1}}.")
    assert findings(braces) == []


def test_unknown_variable_in_a_condition() -> None:
    text = BASE.replace("next: to_support}", "next: check}") + more_nodes(
        """
          check:
            type: branch
            cases: [{when: {var: vip, equals: "yes"}, next: to_sales}]
            else: to_support
        """
    )
    f = only(findings(text), "unknown-variable")
    assert (f.node, f.line) == ("check", 18) and "'vip'" in f.message


def test_duplicate_choice_key_and_word() -> None:
    """Two choices on one key, or listening for the same word (accents and case aside), are ambiguous."""
    same_key = BASE.replace("{key: 2, words: [support]", "{key: 1, words: [support]")
    f = only(findings(same_key), "duplicate-choice")
    assert (f.node, f.line) == ("menu", 10) and "key 1" in f.message
    same_word = BASE.replace("words: [support]", "words: [Sales]")
    assert only(findings(same_word), "duplicate-choice").line == 10


def test_schema_errors_point_at_their_lines() -> None:
    """Model errors (unknown field, wrong value, unknown node type) are findings with lines, not tracebacks."""
    text = BASE.replace("    type: menu\n", "    type: menu\n    timout: 5\n").replace(
        "  to_support:\n    type: transfer", "  to_support:\n    type: transfr"
    )
    found = findings(text)
    assert {(f.code, f.line, f.node) for f in found} == {("schema", 7, "menu"), ("schema", 15, "to_support")}
    assert any("timout: unknown field" in f.message for f in found)
    assert any("unknown node type 'transfr'" in f.message for f in found)


def test_yaml_errors_and_duplicate_keys() -> None:
    """Unreadable YAML and a key given twice are findings with lines too."""
    broken = findings("name: x\nnodes: [\n")
    assert codes(broken) == ["yaml"] and broken[0].line is not None
    twice = findings(BASE + "  menu:\n    type: hangup\n")
    f = only(twice, "duplicate-key")
    assert f.line == 16 and "first on line 5" in f.message
