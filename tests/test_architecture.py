"""The architecture holds: dependencies point one way (DESIGN.md, as import-linter contracts in
pyproject.toml), no module imports another's private names, and every channel fact the core reads comes from
the one table of channel names (``hub.channels.SPECS``) that the registered channels implement."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from hub.app import CHANNEL_PACKAGES, build_channels
from hub.channels import CHANNELS, IDENTITY_OF_CHANNEL, NORMALIZATION, SPECS, IdentityKind
from hub.config import Settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "channels", "ticketing", "knowledge_base", "ivr_flows", "agent_ui")


def test_each_package_imports_only_what_the_design_allows() -> None:
    """The import-linter contracts hold (scripts/test runs them too); a broken one is printed with the import
    chain at fault."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _is_module(dotted: str) -> bool:
    path = ROOT / dotted.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def private_imports(path: Path) -> list[str]:
    """``from x import _y``, and ``x._y`` of a module ``x`` imported whole, for modules of this project other
    than the file's own."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    modules: set[str] = set()  # local names bound to one of the project's modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in (*PACKAGES, "tests", "bench"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}")
                elif _is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name.split(".")[0] in (*PACKAGES, "tests", "bench"):
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    """A name starting with an underscore is its module's own: nothing imports it, the tests and benchmarks
    included (what they need is made public, with a name that says what it is)."""
    files = [p for d in (*PACKAGES, "tests", "bench") for p in sorted((ROOT / d).rglob("*.py"))]
    assert [hit for path in files for hit in private_imports(path)] == []


def test_the_registered_channels_bring_declared_names_each_once() -> None:
    """Every registered channel package builds a Channel whose names are rows of ``SPECS``, no name twice
    (``build_channels`` refuses otherwise, at start)."""
    channels = build_channels(Settings(_env_file=None))  # type: ignore[call-arg]
    assert len(channels) == len(CHANNEL_PACKAGES)
    brought = [spec.name for channel in channels for spec in channel.specs]
    assert sorted(brought) == sorted(set(brought))
    assert {"webchat", "email"} <= set(brought) <= set(CHANNELS)
    assert all(SPECS[spec.name] == spec for channel in channels for spec in channel.specs)


def test_the_core_reads_its_channel_facts_from_the_one_table() -> None:
    """Routing's capacities and blocking, ingest's identity kinds and the queue rules' channel names all come
    from ``SPECS``: a name declared there is known to each, with its class's capacity."""
    from ticketing import routing
    from ticketing.queue_rules import Match

    assert set(routing.DEFAULT_CAPACITY) == set(SPECS) == set(IDENTITY_OF_CHANNEL)
    for name, spec in SPECS.items():
        assert routing.DEFAULT_CAPACITY[name] == routing.CLASS_CAPACITY[spec.capacity_class]
        assert IDENTITY_OF_CHANNEL[name] is spec.identity_kind
        assert Match(channel=[name]).channel == [name]
    assert set(NORMALIZATION) == set(IdentityKind)
    # A call in hand blocks every chat and messaging channel, not email; they are the ones that wrap up.
    messaging = {"webchat", "sms", "whatsapp", "messenger", "instagram", "telegram", "comments"}
    assert routing.BLOCKS == {"voice": frozenset(messaging)}
    assert routing.WRAP_UP_CHANNELS == routing.BLOCKS["voice"] | {"voice"}


@pytest.mark.parametrize("package", CHANNEL_PACKAGES)
def test_a_registered_channel_is_one_package_under_channels(package: str) -> None:
    """The registry names packages under channels/, each with the factory the recipe in CONTRIBUTING.md asks."""
    assert package.startswith("channels.") and (ROOT / package.replace(".", "/") / "__init__.py").exists()
    assert (
        "def create_channel(settings: Settings) -> Channel:"
        in (ROOT / package.replace(".", "/") / "__init__.py").read_text()
    )
