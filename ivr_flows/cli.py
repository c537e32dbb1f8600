"""``switchboard ivr``: lint, simulate, test and draw phone-menu flows. None of these needs a database.

Only typer is imported here at start (``switchboard --help`` stays fast); each command imports what it uses.
Exit codes: 0 fine, 1 the flow (or a conversation) has errors, 2 wrong usage.

Queues: ``lint --queue NAME`` (repeatable) names the queues a flow may use; without it the queue check is
skipped and lint says so. The running phone line checks a flow against the hub's queues itself when it loads
it (``load_flow(path, known_queues=...)``), so a CI job lints with ``--queue`` and production refuses unknown
queues at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ivr_flows.conversations import WorldSpec
    from ivr_flows.inputs import Input
    from ivr_flows.schema import Flow
    from ivr_flows.simulator import Call, Entry

app = typer.Typer(help="Phone menus (IVR): lint, simulate, test and draw flow files.", no_args_is_help=True)

FlowArg = Annotated[Path, typer.Argument(help="The flow file (YAML).", show_default=False)]


@app.command()
def lint(
    file: FlowArg,
    queue: Annotated[list[str] | None, typer.Option(help="A queue the flow may name (repeatable).")] = None,
    strict: Annotated[bool, typer.Option(help="Warnings fail too.")] = False,
) -> None:
    """Check a flow: targets, reachability, menus, prompts and translations, loops, queues, variables."""
    from ivr_flows.lint import lint_file
    from ivr_flows.source import errors

    findings = lint_file(file, known_queues=queue)
    for f in findings:
        typer.echo(f.format(str(file)))
    n_errors = len(errors(findings))
    n_warnings = len(findings) - n_errors
    if queue is None:
        typer.echo("note: queues not checked; give --queue NAME for each queue the flow may use")
    typer.echo(f"{file}: {n_errors} error(s), {n_warnings} warning(s)")
    if n_errors or (strict and n_warnings):
        raise typer.Exit(1)


@app.command()
def simulate(
    file: FlowArg,
    world: Annotated[
        Path | None,
        typer.Option(help="A YAML world (as in a conversations file: its world: section, or the file itself)."),
    ] = None,
    caller: Annotated[str | None, typer.Option(help="The caller's number.")] = None,
    contact: Annotated[str | None, typer.Option(help="The caller's name a lookup finds.")] = None,
    open_ticket: Annotated[
        list[str] | None, typer.Option(help="Subject of an open request a lookup finds (repeatable).")
    ] = None,
    ticket_status: Annotated[str, typer.Option(help="Status of those requests.")] = "open",
    wait: Annotated[int | None, typer.Option(help="Estimated wait in the queue, seconds [default: 30].")] = None,
    position: Annotated[int | None, typer.Option(help="Place in line in the queue [default: 1].")] = None,
    closed: Annotated[list[str] | None, typer.Option(help="A queue that is closed now (repeatable).")] = None,
    now: Annotated[str | None, typer.Option(help="Time of the call, ISO 8601 with offset [default: now].")] = None,
    dial_status: Annotated[str | None, typer.Option(help="How outside calls end: completed, busy...")] = None,
    actions: Annotated[bool, typer.Option(help="Also print each action as JSON (as the adapter gets it).")] = False,
) -> None:
    """Call a flow in the terminal: type keys (1, 42#) or words, an empty line for silence, /hangup,
    /record SECONDS, /speech CONFIDENCE WORDS, /state, /help. Reads stdin, so it can be scripted."""
    from pydantic import ValidationError

    from ivr_flows.conversations import WorldSpec
    from ivr_flows.simulator import Call, World

    flow = _load_or_exit(file)
    pretend = World()
    if world is not None:
        _pretendfile(world).apply(pretend)
    given = {
        "caller": caller,
        "contact_name": contact,
        "open_tickets": None
        if open_ticket is None
        else [{"id": i + 1, "subject": s, "status": ticket_status} for i, s in enumerate(open_ticket)],
        "wait_seconds": wait,
        "position": position,
        "closed": closed,
        "now": now,
        "dial_status": dial_status,
    }
    try:
        WorldSpec.model_validate({k: v for k, v in given.items() if v is not None}).apply(pretend)
    except ValidationError as exc:
        options = {"contact_name": "contact", "open_tickets": "open-ticket", "wait_seconds": "wait"}
        for err in exc.errors():
            field = str(err["loc"][0])
            typer.echo(f"error: --{options.get(field, field.replace('_', '-'))}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    call = Call(flow, pretend)
    stdin = typer.get_text_stream("stdin")
    interactive = stdin.isatty()
    typer.echo(f"Calling {flow.name} ({file}) from {pretend.caller}. Keys or words; empty line: silence; /help.")
    _show(call, call.start(), actions)
    while not call.ended:
        if interactive:
            typer.echo("> ", nl=False)
        line = stdin.readline()
        if not line:
            typer.echo(f"(end of input: the call is still waiting at {call.state.node})")
            return
        text = line.strip()
        if not interactive:
            typer.echo(f"> {text}")
        event = _parse_input(text, call)
        if event is not None:
            _show(call, call.feed(event), actions)
    typer.echo(f"Call ended: {call.outcome.describe()}")


HELP = """  1 or 1234#           press keys
  any words            say them (confidence 0.9)
  (empty line) or .    silence until the timeout
  /speech 0.4 words    say words with that recognition confidence
  /record 20           leave a 20-second message (0: nothing recorded)
  /hangup              hang up
  /state               show the call's state (as the phone adapter stores it)"""


def _parse_input(text: str, call: Call) -> Input | None:
    """The caller's input from a typed line, or None for a command that is not an input."""
    import re

    from ivr_flows.inputs import Digits, HangUp, NoInput, RecordingDone, Speech

    if text in ("", ".", "/silence"):
        return NoInput()
    if re.fullmatch(r"[0-9*#]{1,64}", text):
        return Digits(digits=text)
    if text.startswith("/"):
        command, _, rest = text.partition(" ")
        rest = rest.strip()
        if command == "/hangup":
            return HangUp()
        if command == "/record" and rest.isdigit():
            seconds = int(rest)
            url = "https://recordings.invalid/simulated.wav" if seconds else None
            return RecordingDone(url=url, duration_seconds=seconds, recording_id="RE-simulated")
        if command == "/speech":
            confidence, _, words = rest.partition(" ")
            try:
                value = float(confidence)
            except ValueError:
                value = -1.0
            if 0 <= value <= 1 and words.strip():
                return Speech(text=words.strip()[:1000], confidence=value)
        if command == "/state":
            typer.echo(call.state.model_dump_json(indent=2))
            return None
        typer.echo(HELP)
        return None
    if text in ("?", "help"):
        typer.echo(HELP)
        return None
    return Speech(text=text[:1000], confidence=0.9)


def _show(call: Call, entries: list[Entry], with_actions: bool) -> None:
    from ivr_flows.simulator import describe

    for entry in entries:
        if entry.who == "caller" and entry.item.kind != "start":
            continue
        for line in describe(entry):
            typer.echo(line)
        if with_actions and entry.who == "engine":
            typer.echo("    " + entry.item.model_dump_json())


@app.command("test")
def test_(
    file: Annotated[Path, typer.Argument(help="The flow file (its conversations are FLOW.tests.yaml beside it).")],
    tests: Annotated[Path | None, typer.Option(help="The conversations file, if not beside the flow.")] = None,
    k: Annotated[str | None, typer.Option("-k", help="Only conversations whose name contains this.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show each failed call's transcript.")] = False,
) -> None:
    """Run a flow's scripted conversations: the caller's steps, what they must hear, how the call ends."""
    from ivr_flows.conversations import load_suite

    suite = load_suite(tests, flow_path=file) if tests is not None else load_suite(file)
    if suite.errors:
        for line in suite.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1)
    results = suite.run(only=k)
    for r in results:
        typer.echo(f"{'PASS' if r.passed else 'FAIL'}  {r.name}")
        if not r.passed:
            typer.echo(f"      {suite.path}:{r.line}")
            for line in r.failures:
                typer.echo(f"      {line}")
            if verbose:
                typer.echo("      the call:")
                for line in r.transcript:
                    typer.echo(f"        {line}")
    failed = sum(not r.passed for r in results)
    typer.echo(f"{suite.path}: {len(results) - failed} conversation(s) passed, {failed} failed")
    if failed or not results:
        raise typer.Exit(1)


@app.command()
def graph(
    file: FlowArg,
    markdown: Annotated[bool, typer.Option(help="Wrap the chart in a ```mermaid block.")] = False,
) -> None:
    """Print a flow as a Mermaid flowchart (lint errors are reported on stderr; the chart is drawn anyway)."""
    from ivr_flows.graph import mermaid
    from ivr_flows.lint import lint
    from ivr_flows.loader import parse_flow

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read {file}: {exc}", err=True)
        raise typer.Exit(1) from None
    parsed = parse_flow(text, source=str(file))
    for f in lint(parsed):
        if f.severity == "error":
            typer.echo(f.format(str(file)), err=True)
    if parsed.flow is None:
        raise typer.Exit(1)
    chart = mermaid(parsed.flow)
    typer.echo(f"```mermaid\n{chart}```" if markdown else chart.rstrip("\n"))


def _pretendfile(path: Path) -> WorldSpec:
    from pydantic import ValidationError

    from ivr_flows.conversations import WorldSpec
    from ivr_flows.source import YamlError, read_yaml

    try:
        data, _, _ = read_yaml(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "world" in data:
            data = data["world"]
        return WorldSpec.model_validate(data or {})
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read {path}: {exc}", err=True)
    except YamlError as exc:
        typer.echo(exc.finding.format(str(path)), err=True)
    except ValidationError as exc:
        for err in exc.errors():
            typer.echo(f"error: {path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}", err=True)
    raise typer.Exit(2)


def _load_or_exit(file: Path) -> Flow:
    from ivr_flows.errors import FlowInvalid
    from ivr_flows.loader import load_flow

    try:
        return load_flow(file)
    except FlowInvalid as exc:
        for f in exc.findings:
            if f.severity == "error":
                typer.echo(f.format(str(file)), err=True)
        raise typer.Exit(1) from None
