"""Read flow files: YAML text → ``Flow``, with every error pointing at its line.

``parse_flow`` reads and validates the models and returns the findings (it is what ``lint`` runs on);
``load_flow`` and ``load_flow_text`` are what a running phone line uses: they also lint, and refuse a flow with
any error by raising ``FlowInvalid`` carrying the findings, so the caller keeps the flow it had.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ivr_flows.errors import FlowInvalid
from ivr_flows.schema import NODE_TYPES, Flow
from ivr_flows.source import Finding, SourceMap, YamlError, data_path, describe, errors, read_yaml


@dataclass(slots=True)
class ParsedFlow:
    """A flow file as read: the flow (None when its models do not validate), where everything is, and what
    is wrong with it so far (YAML and model errors; ``lint`` adds the rest)."""

    source: str
    flow: Flow | None
    lines: SourceMap
    findings: list[Finding] = field(default_factory=list)


def parse_flow(text: str, *, source: str = "<flow>") -> ParsedFlow:
    """Read and validate a flow's text, without the linter's checks."""
    try:
        data, lines, findings = read_yaml(text)
    except YamlError as exc:
        return ParsedFlow(source, None, SourceMap(), [exc.finding])
    if not isinstance(data, dict):
        return ParsedFlow(source, None, lines, [*findings, Finding("error", "schema", "a flow is a mapping", 1)])
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        return ParsedFlow(source, None, lines, [*findings, *_schema_findings(exc, data, lines)])
    return ParsedFlow(source, flow, lines, findings)


def load_flow_text(text: str, *, source: str = "<flow>", known_queues: Iterable[str] | None = None) -> Flow:
    """A flow from its text, linted; raises ``FlowInvalid`` with the findings when it has any error."""
    from ivr_flows.lint import lint

    parsed = parse_flow(text, source=source)
    findings = lint(parsed, known_queues=known_queues)
    if errors(findings) or parsed.flow is None:
        raise FlowInvalid(source, findings)
    return parsed.flow


def load_flow(path: str | Path, *, known_queues: Iterable[str] | None = None) -> Flow:
    """A flow from its file, linted; raises ``FlowInvalid`` with the findings when it has any error (or
    cannot be read)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowInvalid(str(path), [Finding("error", "file", f"cannot read the flow: {exc}")]) from None
    return load_flow_text(text, source=str(path), known_queues=known_queues)


def _schema_findings(exc: ValidationError, data: dict[str, Any], lines: SourceMap) -> list[Finding]:
    out: list[Finding] = []
    seen: set[tuple[int | None, str]] = set()
    for err in exc.errors():
        path = data_path(err["loc"], data)
        node = str(path[1]) if len(path) >= 2 and path[0] == "nodes" else None
        message = _message(err, describe(path[2:] if node else path))
        line = lines.line(*path)
        if (line, message) in seen:  # a union reports one mistake once per alternative
            continue
        seen.add((line, message))
        out.append(Finding("error", "schema", message, line, node))
    return out


def _message(err: Any, where: str) -> str:
    kind = err["type"]
    if kind == "missing":
        msg = "missing"
    elif kind == "extra_forbidden":
        msg = "unknown field"
    elif kind == "union_tag_invalid":
        msg = f"unknown node type {err['input'].get('type')!r}; use one of {', '.join(NODE_TYPES)}"
    elif kind == "union_tag_not_found":
        msg = f"the node's type is missing (one of {', '.join(NODE_TYPES)})"
    elif kind == "string_pattern_mismatch":
        msg = f"{err['input']!r} does not have the form {err['ctx']['pattern']}"
    else:
        msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg
