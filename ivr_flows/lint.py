"""The linter: what a flow's models cannot see alone, each finding with its node and line.

| code | severity | finding |
|---|---|---|
| ``yaml``, ``schema``, ``duplicate-key`` | error | unreadable YAML, a wrong field, a key given twice |
| ``unknown-target`` | error | ``start``, a ``next``, a choice, ``on_fail``... names no node |
| ``unreachable`` | warning | no way leads from ``start`` to the node |
| ``menu-no-way-out`` | error | every choice of a menu leads back to the menu |
| ``missing-prompt`` | error | a node that must say something has no prompt, or a prompt lacks a declared language |
| ``unknown-language`` | error | a prompt, words, a choice or ``set`` names a language the flow lacks |
| ``loop-no-exit`` | error | nodes that lead only to each other, none of which can end or hand off the call |
| ``loop-without-input`` | warning | a cycle that never waits for the caller (the engine stops it: ``runaway``) |
| ``unknown-queue`` | error | a queue that is not among the known queues (checked only when they are given) |
| ``no-queue`` | error | a transfer, voicemail, callback or hours node can be reached with no queue set |
| ``hold-without-transfer`` | error | a ``hold`` node can be reached before the call joined a queue |
| ``unknown-variable`` | error | a prompt, ``set`` or condition uses a variable nothing sets |
| ``duplicate-choice`` | error | two choices of one menu share a key or a word |

Errors stop a flow from loading (``loader.load_flow``); warnings are reported only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ivr_flows import speech
from ivr_flows.loader import ParsedFlow, parse_flow
from ivr_flows.schema import (
    BUILTIN_VARS,
    Audio,
    BranchNode,
    CollectNode,
    Flow,
    HoldNode,
    LanguageNode,
    MenuNode,
    Prompt,
    SetNode,
    TransferNode,
    template_vars,
)
from ivr_flows.source import Finding, SourceMap, describe
from ivr_flows.source import Path as DataPath


@dataclass(slots=True)
class _Flow:
    """The flow under lint, with its graph (edges to existing nodes only) and where things are."""

    flow: Flow
    lines: SourceMap
    known_queues: frozenset[str] | None
    graph: dict[str, list[str]]

    def at(self, node: str, *path: str | int) -> int | None:
        return self.lines.line("nodes", node, *path)

    def error(self, code: str, message: str, node: str | None, *path: str | int) -> Finding:
        return Finding("error", code, message, self.at(node, *path) if node else self.lines.line(*path), node)

    def warning(self, code: str, message: str, node: str | None, *path: str | int) -> Finding:
        return Finding("warning", code, message, self.at(node, *path) if node else self.lines.line(*path), node)


Rule = Callable[[_Flow], Iterable[Finding]]


def lint(parsed: ParsedFlow, *, known_queues: Iterable[str] | None = None) -> list[Finding]:
    """Every finding about a parsed flow, in line order: its YAML and model errors, then the rules'."""
    findings = list(parsed.findings)
    if parsed.flow is not None:
        flow = parsed.flow
        graph = {nid: [e.target for e in node.edges() if e.target in flow.nodes] for nid, node in flow.nodes.items()}
        known = None if known_queues is None else frozenset(known_queues)
        ctx = _Flow(flow, parsed.lines, known, graph)
        for rule in RULES:
            findings.extend(rule(ctx))
    return sorted(findings, key=lambda f: (f.line or 0, f.severity != "error", f.code))


def lint_text(text: str, *, source: str = "<flow>", known_queues: Iterable[str] | None = None) -> list[Finding]:
    return lint(parse_flow(text, source=source), known_queues=known_queues)


def lint_file(path: str | Path, *, known_queues: Iterable[str] | None = None) -> list[Finding]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Finding("error", "file", f"cannot read the flow: {exc}")]
    return lint_text(text, source=str(path), known_queues=known_queues)


# -- rules ---------------------------------------------------------------------------------------------------


def unknown_targets(ctx: _Flow) -> Iterator[Finding]:
    nodes = ctx.flow.nodes
    if ctx.flow.start not in nodes:
        yield ctx.error("unknown-target", f"start names {ctx.flow.start!r}, which is not a node", None, "start")
    for nid, node in nodes.items():
        for edge in node.edges():
            if edge.target not in nodes:
                msg = f"{describe(edge.path)} goes to {edge.target!r}, which is not a node"
                yield ctx.error("unknown-target", msg, nid, *edge.path)


def unreachable(ctx: _Flow) -> Iterator[Finding]:
    if ctx.flow.start not in ctx.flow.nodes:
        return
    seen = _reachable(ctx.graph, ctx.flow.start)
    for nid in ctx.flow.nodes:
        if nid not in seen:
            yield ctx.warning("unreachable", f"no way leads from {ctx.flow.start!r} to this node", nid)


def menus_without_way_out(ctx: _Flow) -> Iterator[Finding]:
    for nid, node in ctx.flow.nodes.items():
        if isinstance(node, MenuNode) and all(c.next == nid for c in node.choices):
            yield ctx.error("menu-no-way-out", "every choice leads back to this menu", nid, "choices")


def missing_prompts(ctx: _Flow) -> Iterator[Finding]:
    flow = ctx.flow
    languages = list(flow.languages)
    for nid, node in flow.nodes.items():
        if node.needs_prompt and getattr(node, "prompt", None) is None:
            yield ctx.error("missing-prompt", f"a {node.type} node needs a prompt", nid)
        for path, prompt in node.prompts():
            for lang in _missing_languages(prompt, languages):
                yield ctx.error("missing-prompt", f"{path[0]} has no {lang!r} text", nid, *path)
    for name in ("invalid", "no_input", "goodbye"):
        prompt = getattr(flow.messages, name)
        if prompt is not None:
            for lang in _missing_languages(prompt, languages):
                yield ctx.error("missing-prompt", f"messages.{name} has no {lang!r} text", None, "messages", name)


def _missing_languages(prompt: Prompt, languages: list[str]) -> list[str]:
    parts = prompt.parts
    if isinstance(parts.get(""), Audio):
        return []  # audio for everyone
    default = languages[0]
    return [lang for lang in languages if lang not in parts and not (lang == default and "" in parts)]


def unknown_languages(ctx: _Flow) -> Iterator[Finding]:
    flow = ctx.flow
    declared = set(flow.languages)
    hint = f"(the flow declares {', '.join(flow.languages)})"
    for nid, node in flow.nodes.items():
        for path, prompt in node.prompts():
            for lang in prompt.parts:
                if lang and lang not in declared:
                    yield ctx.error("unknown-language", f"{path[0]} has text for {lang!r} {hint}", nid, *path, lang)
        if isinstance(node, MenuNode | LanguageNode):
            for i, choice in enumerate(node.choices):
                for lang in choice.words.by_language if choice.words else {}:
                    if lang and lang not in declared:
                        yield ctx.error(
                            "unknown-language", f"choice {i + 1} has words for {lang!r} {hint}", nid, "choices", i
                        )
                if isinstance(node, LanguageNode):
                    language = node.choices[i].language
                    if language not in declared:
                        yield ctx.error(
                            "unknown-language", f"choice {i + 1} picks {language!r} {hint}", nid, "choices", i
                        )
        if isinstance(node, SetNode) and node.language is not None and node.language not in declared:
            yield ctx.error("unknown-language", f"sets the language {node.language!r} {hint}", nid, "language")
    for name in ("invalid", "no_input", "goodbye"):
        prompt = getattr(flow.messages, name)
        for lang in prompt.parts if prompt else {}:
            if lang and lang not in declared:
                yield ctx.error("unknown-language", f"messages.{name} has text for {lang!r} {hint}", None, "messages")


def loops(ctx: _Flow) -> Iterator[Finding]:
    nodes = ctx.flow.nodes
    for component in _cycles(ctx.graph):
        members = set(component)
        first = min(component, key=lambda n: ctx.at(n) or 0)
        shown = " → ".join(component[:6]) + (" …" if len(component) > 6 else "")
        leaves = any(t not in members for n in component for t in ctx.graph[n])
        if not leaves and not any(nodes[n].can_end for n in component):
            yield ctx.error("loop-no-exit", f"the call can never leave these nodes: {shown}", first)
        elif not any(nodes[n].waits_for_caller for n in component):
            yield ctx.warning(
                "loop-without-input",
                f"these nodes can loop without the caller doing anything: {shown}",
                first,
            )


def unknown_queues(ctx: _Flow) -> Iterator[Finding]:
    known = ctx.known_queues
    if known is None:
        return
    listed = ", ".join(sorted(known)) or "none"
    if ctx.flow.queue is not None and ctx.flow.queue not in known:
        yield ctx.error("unknown-queue", f"queue {ctx.flow.queue!r} is not known (known: {listed})", None, "queue")
    for nid, node in ctx.flow.nodes.items():
        for path, queue in node.queue_refs():
            if queue not in known:
                yield ctx.error("unknown-queue", f"queue {queue!r} is not known (known: {listed})", nid, *path)


def nodes_without_queue(ctx: _Flow) -> Iterator[Finding]:
    flow = ctx.flow
    if flow.queue is not None or flow.start not in flow.nodes:
        return

    def sets_queue(nid: str) -> bool:
        node = flow.nodes[nid]
        return isinstance(node, SetNode | TransferNode) and node.queue is not None

    for nid in _reachable(ctx.graph, flow.start, barrier=sets_queue):
        node = flow.nodes[nid]
        if node.needs_queue and getattr(node, "queue", None) is None and not sets_queue(nid):
            yield ctx.error(
                "no-queue",
                f"this {node.type} node can be reached with no queue set: give it a queue, or the flow a default",
                nid,
            )


def holds_without_transfer(ctx: _Flow) -> Iterator[Finding]:
    flow = ctx.flow
    if flow.start not in flow.nodes:
        return
    before_transfer = _reachable(ctx.graph, flow.start, barrier=lambda n: isinstance(flow.nodes[n], TransferNode))
    for nid in before_transfer:
        if isinstance(flow.nodes[nid], HoldNode):
            yield ctx.error("hold-without-transfer", "a hold node can be reached before any transfer", nid)


def unknown_variables(ctx: _Flow) -> Iterator[Finding]:
    flow = ctx.flow
    defined = set(BUILTIN_VARS)
    for node in flow.nodes.values():
        if isinstance(node, CollectNode):
            defined.add(node.var)
        elif isinstance(node, SetNode):
            defined.update(node.vars or {})

    def check(text: str, where: str, node: str | None, path: DataPath) -> Iterator[Finding]:
        for name in template_vars(text):
            if name not in defined:
                yield ctx.error("unknown-variable", f"{where} uses {{{name}}}, which nothing sets", node, *path)

    for nid, node in flow.nodes.items():
        for path, prompt in node.prompts():
            for lang, part in prompt.parts.items():
                if isinstance(part, str):
                    yield from check(part, str(path[0]), nid, (*path, lang) if lang else path)
        if isinstance(node, SetNode):
            for name, value in (node.vars or {}).items():
                yield from check(value, f"vars.{name}", nid, ("vars", name))
        if isinstance(node, BranchNode):
            for i, case in enumerate(node.cases):
                for cond in case.when:
                    if cond.var not in defined:
                        msg = f"case {i + 1} tests {cond.var!r}, which nothing sets"
                        yield ctx.error("unknown-variable", msg, nid, "cases", i)
    for name in ("invalid", "no_input", "goodbye"):
        prompt = getattr(flow.messages, name)
        for part in prompt.parts.values() if prompt else ():
            if isinstance(part, str):
                yield from check(part, f"messages.{name}", None, ("messages", name))


def duplicate_choices(ctx: _Flow) -> Iterator[Finding]:
    for nid, node in ctx.flow.nodes.items():
        if not isinstance(node, MenuNode | LanguageNode):
            continue
        keys: dict[str, int] = {}
        words: dict[tuple[str, str], int] = {}
        for i, choice in enumerate(node.choices):
            if choice.key is not None:
                if choice.key in keys:
                    msg = f"choices {keys[choice.key] + 1} and {i + 1} both use key {choice.key}"
                    yield ctx.error("duplicate-choice", msg, nid, "choices", i)
                keys.setdefault(choice.key, i)
            for lang, ws in (choice.words.by_language if choice.words else {}).items():
                for w in ws:
                    norm = (lang, speech.normalize(w))
                    if norm in words and words[norm] != i:
                        msg = f"choices {words[norm] + 1} and {i + 1} both listen for {w!r}"
                        yield ctx.error("duplicate-choice", msg, nid, "choices", i)
                    words.setdefault(norm, i)


RULES: tuple[Rule, ...] = (
    unknown_targets,
    unreachable,
    menus_without_way_out,
    missing_prompts,
    unknown_languages,
    loops,
    unknown_queues,
    nodes_without_queue,
    holds_without_transfer,
    unknown_variables,
    duplicate_choices,
)


# -- graph helpers -----------------------------------------------------------------------------------------


def _reachable(graph: dict[str, list[str]], start: str, barrier: Callable[[str], bool] | None = None) -> set[str]:
    """Nodes reachable from ``start``; a barrier node is reached but not gone through."""
    seen = {start}
    todo = deque([start])
    while todo:
        nid = todo.popleft()
        if barrier is not None and barrier(nid):
            continue
        for target in graph[nid]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components that contain a cycle (Tarjan's algorithm, iteratively), each in
    the order its nodes were first met."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            nid, i = work.pop()
            if i == 0:
                index[nid] = low[nid] = counter
                counter += 1
                stack.append(nid)
                on_stack.add(nid)
            targets = graph[nid]
            if i < len(targets):
                work.append((nid, i + 1))
                target = targets[i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[nid] = min(low[nid], index[target])
                continue
            if low[nid] == index[nid]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == nid:
                        break
                if len(component) > 1 or nid in graph[nid]:
                    out.append(sorted(component, key=lambda n: index[n]))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[nid])
    return out
