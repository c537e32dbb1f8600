"""Reading flow files: YAML as text with lines, refused flows, and hostile files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_flows.errors import FlowInvalid
from ivr_flows.loader import load_flow, load_flow_text, parse_flow
from ivr_flows.schema import CollectNode, MenuNode
from ivr_flows.source import SourceMap, read_yaml
from tests.ivr_flows.helpers import BASE, DEMO, flow, more_nodes, yaml


def test_scalars_stay_as_written() -> None:
    """YAML 1.1 would read ``no`` as false, ``0123`` as 83 and ``on`` as true; flows keep them as text, and
    the models still convert numbers and booleans where a field wants them."""
    f = flow(
        BASE.replace("words: [sales]", "words: [no, on, 0123]").replace(
            "    type: menu\n", "    type: menu\n    retries: 3\n    speech: true\n"
        )
    )
    menu = f.nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert menu.choices[0].words is not None and menu.choices[0].words.all() == ["no", "on", "0123"]
    assert menu.retries == 3 and menu.speech is True
    assert menu.choices[0].key == "1"


def test_every_key_and_item_has_its_line() -> None:
    data, lines, found = read_yaml("a:\n  b: [x, y]\n  c:\n    - d: 1\n")
    assert data == {"a": {"b": ["x", "y"], "c": [{"d": "1"}]}} and found == []
    assert lines.line("a") == 1 and lines.line("a", "b") == 2 and lines.line("a", "c", 0, "d") == 4
    assert lines.line("a", "c", 0, "missing") == 4, "a missing field points at the mapping lacking it"
    assert SourceMap().line("x") is None


def test_a_flow_with_errors_is_refused_with_the_lint_messages() -> None:
    """``load_flow_text`` raises ``FlowInvalid`` listing each error as file:line; warnings alone load."""
    with pytest.raises(FlowInvalid) as info:
        load_flow_text(yaml(BASE).replace("next: to_sales}", "next: nowhere}"), source="menu.yaml")
    err = info.value
    assert err.status == 422 and err.code == "flow_invalid"
    assert "menu.yaml:9: error: choices[1].next goes to 'nowhere'" in err.message
    assert [f.code for f in err.findings] == ["unknown-target", "unreachable"]
    assert load_flow_text(yaml(BASE) + "  orphan:\n    type: hangup\n").name == "base"


def test_unknown_queues_are_refused_at_load_when_the_queues_are_known() -> None:
    """The phone line passes the hub's queue names: a flow naming another queue does not load."""
    with pytest.raises(FlowInvalid, match="queue 'sales' is not known"):
        load_flow_text(yaml(BASE), known_queues=["support"])
    assert load_flow_text(yaml(BASE), known_queues=["support", "sales"]).start == "menu"


def test_a_missing_or_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FlowInvalid, match="cannot read the flow"):
        load_flow(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(FlowInvalid, match="cannot read the flow"):
        load_flow(binary)


def test_hostile_yaml_is_refused_cheaply() -> None:
    """An alias bomb and a deep nest are refused as findings, not expanded or recursed into."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    parsed = parse_flow(bomb)
    assert parsed.flow is None and [f.code for f in parsed.findings] == ["yaml"]
    assert "too large" in parsed.findings[0].message
    deep = parse_flow("a: " + "[" * 200 + "]" * 200)
    assert deep.flow is None and "too deeply nested" in deep.findings[0].message
    assert parse_flow("x" * 1_000_001).findings[0].message.startswith("the file is larger")


def test_merge_keys_share_settings_between_nodes() -> None:
    """``<<: *base`` works, so several collects can share their limits."""
    f = flow(
        BASE.replace("next: to_sales}", "next: account}")
        + more_nodes(
            """
            account:
              <<: &digits {type: collect, min_length: 8, max_length: 8, check: luhn}
              var: account
              prompt: Your account number, please.
              next: to_sales
            """
        )
    )
    account = f.nodes["account"]
    assert isinstance(account, CollectNode) and account.check == "luhn" and account.min_length == 8


def test_the_demo_flow_loads() -> None:
    demo = load_flow(DEMO)
    assert demo.name == "demo" and list(demo.languages) == ["en", "es"] and demo.start == "choose_language"


def test_the_readme_examples_are_valid() -> None:
    """README's node examples validate as nodes, and its conversations file as a conversations file, so the
    documentation stays true to the models."""
    from pydantic import TypeAdapter

    from ivr_flows.conversations import ConversationsFile
    from ivr_flows.schema import Node

    readme = (DEMO.parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Phone menus (IVR)") :]
    blocks = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:]]
    nodes_block = next(b for b in blocks if "type: say" in b)
    nodes, _, found = read_yaml(nodes_block)
    assert found == [] and len(nodes) == 15
    adapter: TypeAdapter[Node] = TypeAdapter(Node)
    types = {adapter.validate_python(node).type for node in nodes.values()}
    assert types == {
        "say", "menu", "language", "collect", "hours", "branch", "set", "lookup",
        "transfer", "hold", "voicemail", "callback", "dial", "hangup",
    }  # fmt: skip
    conversations_block = next(b for b in blocks if b.startswith("world:"))
    data, _, found = read_yaml(conversations_block)
    assert found == [] and ConversationsFile.model_validate(data).tests[0].name == "Spanish billing by voice"
