"""Dependencies point one way (DESIGN.md): ticketing, knowledge_base and ivr_flows import hub only; channels
import hub (and ivr_flows for the phone channel); agent_ui talks to the rest over HTTP; only the composition
roots in hub (app.py, cli.py and the migration environment) import everything."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"hub", "channels", "ticketing", "knowledge_base", "ivr_flows", "agent_ui"}
ALLOWED = {
    "hub": {"hub"},
    "ticketing": {"hub", "ticketing"},
    "knowledge_base": {"hub", "knowledge_base"},
    "ivr_flows": {"hub", "ivr_flows"},
    "channels": {"hub", "channels", "ivr_flows"},
    "agent_ui": {"hub", "agent_ui"},
}
COMPOSITION_ROOTS = {"hub/app.py", "hub/cli.py", "hub/migrations/env.py"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & PACKAGES


def test_each_package_imports_only_what_the_design_allows() -> None:
    """No module reaches across the layering; a violation names the file and the forbidden package."""
    violations = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in COMPOSITION_ROOTS:
                continue
            bad = imported_packages(path) - allowed
            if bad:
                violations.append(f"{rel} imports {sorted(bad)}")
    assert violations == []
