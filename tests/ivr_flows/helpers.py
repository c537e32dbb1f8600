"""Small flows and helpers shared by the IVR tests."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from ivr_flows.engine import Context
from ivr_flows.lint import lint_text
from ivr_flows.loader import load_flow_text
from ivr_flows.schema import Flow
from ivr_flows.source import Finding

DEMO = Path(__file__).resolve().parents[2] / "ivr_flows" / "flows" / "demo.yaml"
NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # a Wednesday
CONTEXT = Context(now=NOW)

# A small flow that passes lint: a menu to two queues.
BASE = """
name: base
start: menu
queue: support
nodes:
  menu:
    type: menu
    prompt: Press 1 for sales, 2 for support.
    choices:
      - {key: 1, words: [sales], next: to_sales}
      - {key: 2, words: [support], next: to_support}
  to_sales:
    type: transfer
    queue: sales
  to_support:
    type: transfer
"""


def yaml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def more_nodes(text: str) -> str:
    """Nodes to append to a flow's ``nodes`` mapping, written at the left margin."""
    return textwrap.indent(yaml(text), "  ")


def flow(text: str) -> Flow:
    """A flow from YAML text; the test fails with the lint's messages if it does not load."""
    return load_flow_text(yaml(text))


def findings(text: str, known_queues: Iterable[str] | None = None) -> list[Finding]:
    return lint_text(yaml(text), known_queues=known_queues)


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]
