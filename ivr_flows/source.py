"""Where things are in a flow file: YAML read into plain data with the line of every key and value, and the
findings (errors and warnings) that point at those lines.

Every scalar is read as text (or ``None`` for an empty value, ``~`` or ``null``) and converted by the field it
lands in, so YAML 1.1's surprises cannot happen: ``no`` stays the word "no" in a list of speech words, ``0123``
stays an account number, ``on`` stays "on". Booleans and numbers are still written as usual (``true``, ``3``):
the flow's models convert them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import yaml

Severity = Literal["error", "warning"]
Path = tuple[str | int, ...]

# A flow is a few hundred nodes at most; these bounds keep a hostile file (an alias bomb, a deep nest) cheap.
MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 200_000
MAX_DEPTH = 64
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in a flow file: what, where (line and node), and whether it stops the flow from loading."""

    severity: Severity
    code: str
    message: str
    line: int | None = None
    node: str | None = None

    def format(self, source: str = "<flow>") -> str:
        where = f"{source}:{self.line}" if self.line else source
        node = f" (node {self.node})" if self.node else ""
        return f"{where}: {self.severity}: {self.message}{node} [{self.code}]"


def describe(path: Path) -> str:
    """A path for people: ``choices[2].next`` (items counted from 1, as a reader counts them)."""
    text = ""
    for step in path:
        text += f"[{step + 1}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def data_path(loc: tuple[int | str, ...], data: Any) -> tuple[str | int, ...]:
    """The error's location as a path through the file's data: pydantic adds steps the file does not have
    (the node type of a tagged union, a model's internal field), which are left out."""
    path: list[str | int] = []
    here = data
    for step in loc:
        if isinstance(here, dict) and step in here:
            path.append(step)
            here = here[step]
        elif isinstance(here, list) and isinstance(step, int) and 0 <= step < len(here):
            path.append(step)
            here = here[step]
        elif step == "else_" and isinstance(here, dict) and "else" in here:
            path.append("else")
            here = here["else"]
        elif step == "in_" and isinstance(here, dict) and "in" in here:
            path.append("in")
            here = here["in"]
        elif isinstance(here, dict) and step not in (here.get("type"), "parts", "by_language"):
            path.append(step)  # a missing field: keep its name for the message
            here = None
    return tuple(path)


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


class SourceMap:
    """The 1-based line of every mapping key, sequence item and value of a YAML document, by its path
    (``("nodes", "main_menu", "choices", 0, "next")``). A path the file does not have answers the line of its
    longest prefix that it does (a missing field points at the mapping that lacks it)."""

    __slots__ = ("_lines",)

    def __init__(self, lines: dict[Path, int] | None = None) -> None:
        self._lines = lines or {}

    def line(self, *path: str | int) -> int | None:
        for end in range(len(path), -1, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None


class YamlError(Exception):
    """The text is not a YAML document Switchboard can read; ``finding`` says where and why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def read_yaml(text: str) -> tuple[Any, SourceMap, list[Finding]]:
    """Read one YAML document as plain dicts, lists, strings and ``None``, with its source map and findings
    about the text itself (duplicate keys). Raises ``YamlError`` for text that is not readable YAML."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise YamlError(Finding("error", "yaml", f"the file is larger than {MAX_FILE_BYTES} bytes", 1))
    loader = yaml.SafeLoader(text)
    reader = _Reader(loader)
    try:
        root = loader.get_single_node()
        data = None if root is None else reader.value(root, (), 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        raise YamlError(Finding("error", "yaml", f"not valid YAML: {problem}", line)) from None
    except yaml.YAMLError as exc:
        raise YamlError(Finding("error", "yaml", f"not valid YAML: {exc}", 1)) from None
    finally:
        loader.dispose()
    return data, SourceMap(reader.lines), reader.findings


class _Reader:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.lines: dict[Path, int] = {}
        self.findings: list[Finding] = []
        self.count = 0

    def value(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES or depth > MAX_DEPTH:
            raise YamlError(Finding("error", "yaml", "the document is too large or too deeply nested", _line(node)))
        self.lines.setdefault(path, _line(node))
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.value in _NULLS:
                return None
            return str(node.value)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # merge keys (<<: *base)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise YamlError(Finding("error", "yaml", "a key must be plain text", _line(key_node)))
                key = str(key_node.value)
                if key in out:
                    where = self.lines.get((*path, key))
                    message = f"{key!r} is given twice (first on line {where})"
                    self.findings.append(Finding("error", "duplicate-key", message, _line(key_node)))
                self.lines[(*path, key)] = _line(key_node)
                out[key] = self.value(value_node, (*path, key), depth + 1)
            return out
        raise YamlError(Finding("error", "yaml", "unsupported YAML node", _line(node)))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1
