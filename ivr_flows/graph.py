"""A flow as a Mermaid flowchart (``switchboard ivr graph FILE``; the admin page renders the same text).

Node ids are generated (``n_main_menu``), so a node named like a Mermaid keyword (``end``, ``graph``) cannot
break the chart; every label is quoted, with the characters Mermaid would read as syntax written as entity
codes (``#34;`` for a double quote). Shapes say what a node does: hexagons ask the caller, diamonds decide,
rounded boxes end the flow's part of the call (a queue, voicemail, a callback, an outside number, hanging up).
"""

from __future__ import annotations

import re

from ivr_flows.schema import (
    Audio,
    BranchNode,
    CallbackNode,
    CollectNode,
    DialNode,
    Flow,
    HangupNode,
    HoldNode,
    HoursNode,
    LanguageNode,
    LookupNode,
    MenuNode,
    Node,
    Prompt,
    SayNode,
    SetNode,
    TransferNode,
    VoicemailNode,
)

_UNSAFE = re.compile(r'["#<>&|`\\\[\]{}()]')
EXCERPT = 60
_STYLES = {
    "ask": "fill:#e8f0fe,stroke:#3b5b92",
    "decide": "fill:#fff4d6,stroke:#9a7400",
    "act": "fill:#f4f4f4,stroke:#666",
    "end": "fill:#e6f4ea,stroke:#2e7d32",
}


def mermaid(flow: Flow) -> str:
    """The flow as Mermaid flowchart text (top to bottom), starting from a ``call`` circle."""
    ids = _ids(flow)
    lines = ["flowchart TD"]
    if flow.start in ids:
        lines.append(f'    n__call(("call")) --> {ids[flow.start]}')
    groups: dict[str, list[str]] = {k: [] for k in _STYLES}
    for nid, node in flow.nodes.items():
        label = escape(nid) + "<br/>" + escape(_summary(flow, node))
        open_, close = _shape(node)
        lines.append(f'    {ids[nid]}{open_}"{label}"{close}')
        groups[_group(node)].append(ids[nid])
    for nid, node in flow.nodes.items():
        for edge in node.edges():
            if edge.target not in ids:
                continue  # lint reports it; the chart leaves it out
            arrow = f'-->|"{escape(edge.label)}"|' if edge.label else "-->"
            lines.append(f"    {ids[nid]} {arrow} {ids[edge.target]}")
    for group, style in _STYLES.items():
        # Class names are prefixed: a bare "end" is a Mermaid keyword.
        lines.append(f"    classDef ivr_{group} {style}")
        if groups[group]:
            lines.append(f"    class {','.join(groups[group])} ivr_{group}")
    return "\n".join(lines) + "\n"


def escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label: one line, syntax characters as ``#NN;`` entity codes."""
    flat = " ".join(text.split())
    return _UNSAFE.sub(lambda m: f"#{ord(m.group(0))};", flat)


def _ids(flow: Flow) -> dict[str, str]:
    out: dict[str, str] = {}
    taken: set[str] = set()
    for nid in flow.nodes:
        base = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", nid)
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        taken.add(candidate)
        out[nid] = candidate
    return out


def _shape(node: Node) -> tuple[str, str]:
    group = _group(node)
    return {"ask": ("{{", "}}"), "decide": ("{", "}"), "end": ("([", "])")}.get(group, ("[", "]"))


def _group(node: Node) -> str:
    if isinstance(node, MenuNode | LanguageNode | CollectNode | VoicemailNode):
        return "end" if isinstance(node, VoicemailNode) else "ask"
    if isinstance(node, BranchNode | HoursNode):
        return "decide"
    if isinstance(node, TransferNode | HoldNode | CallbackNode | DialNode | HangupNode):
        return "end"
    return "act"


def _summary(flow: Flow, node: Node) -> str:
    if isinstance(node, SayNode):
        return "say: " + _excerpt(flow, node.prompt)
    if isinstance(node, MenuNode):
        return "menu: " + _excerpt(flow, node.prompt)
    if isinstance(node, LanguageNode):
        return "language: " + ", ".join(c.language for c in node.choices)
    if isinstance(node, CollectNode):
        return f"collect {node.var} ({_length(node)} digits{', Luhn' if node.check == 'luhn' else ''})"
    if isinstance(node, HoursNode):
        return "open now? " + (node.queue or ("hours given" if node.hours else "the call's queue"))
    if isinstance(node, BranchNode):
        return "branch"
    if isinstance(node, SetNode):
        parts = []
        if node.queue:
            parts.append(f"queue {node.queue}")
        if node.skills:
            parts.append("skills " + ", ".join(node.skills))
        if node.priority:
            parts.append(f"priority {node.priority}")
        if node.language:
            parts.append(f"language {node.language}")
        if node.vars:
            parts.append(", ".join(node.vars))
        return "set " + "; ".join(parts) if parts else "set"
    if isinstance(node, LookupNode):
        return "look up the caller"
    if isinstance(node, TransferNode):
        return "transfer to " + (f"queue {node.queue}" if node.queue else "the call's queue")
    if isinstance(node, HoldNode):
        return "hold for an agent"
    if isinstance(node, VoicemailNode):
        return "record a message for " + (f"queue {node.queue}" if node.queue else "the call's queue")
    if isinstance(node, CallbackNode):
        return "call back from " + (f"queue {node.queue}" if node.queue else "the call's queue")
    if isinstance(node, DialNode):
        return f"dial {node.number or node.number_name}"
    return "hang up"


def _length(node: CollectNode) -> str:
    return str(node.min_length) if node.min_length == node.max_length else f"{node.min_length}-{node.max_length}"


def _excerpt(flow: Flow, prompt: Prompt | None) -> str:
    if prompt is None:
        return "(no prompt)"
    parts = prompt.parts
    part = parts.get(flow.default_language) or parts.get("") or next(iter(parts.values()))
    text = f"audio {part.play}" if isinstance(part, Audio) else " ".join(part.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1].rstrip() + "…"
