"""`switchboard ivr lint|simulate|test|graph`, through the hub's CLI (so the registration is tested too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hub.cli import app
from tests.ivr_flows.helpers import BASE, DEMO, yaml

runner = CliRunner()
QUEUES = ["--queue", "support", "--queue", "billing", "--queue", "sales"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(yaml(text), encoding="utf-8")
    return path


def test_ivr_is_listed_by_switchboard_help(tmp_path: Path) -> None:
    """`python -m hub --help` lists the ivr commands, and `ivr --help` lists its four commands."""
    env = {**os.environ}
    top = subprocess.run([sys.executable, "-m", "hub", "--help"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert top.returncode == 0 and "ivr" in top.stdout
    sub = subprocess.run(
        [sys.executable, "-m", "hub", "ivr", "--help"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    for command in ("lint", "simulate", "test", "graph"):
        assert command in sub.stdout


def test_lint_passes_the_demo_and_says_when_queues_are_not_checked() -> None:
    result = runner.invoke(app, ["ivr", "lint", str(DEMO), *QUEUES])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("0 error(s), 0 warning(s)") and "not checked" not in result.output
    unchecked = runner.invoke(app, ["ivr", "lint", str(DEMO)])
    assert unchecked.exit_code == 0 and "note: queues not checked" in unchecked.output


def test_lint_fails_with_each_error_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BASE.replace("next: to_sales}", "next: nowhere}"))
    result = runner.invoke(app, ["ivr", "lint", str(path), "--queue", "support"])
    assert result.exit_code == 1
    assert f"{path}:9: error: choices[1].next goes to 'nowhere', which is not a node (node menu) [unknown-target]" in (
        result.output
    )
    assert f"{path}:11: warning: no way leads from 'menu' to this node (node to_sales) [unreachable]" in result.output
    assert f"{path}:13: error: queue 'sales' is not known (known: support) (node to_sales)" in result.output
    assert "2 error(s), 1 warning(s)" in result.output


def test_lint_strict_fails_on_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, "warn.yaml", BASE + "  orphan:\n    type: hangup\n")
    assert runner.invoke(app, ["ivr", "lint", str(path)]).exit_code == 0
    assert runner.invoke(app, ["ivr", "lint", str(path), "--strict"]).exit_code == 1


def test_lint_of_a_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ivr", "lint", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "cannot read the flow" in result.output


def test_simulate_walks_the_demo_from_a_script_on_stdin() -> None:
    """Keys, words and silence typed (or piped) one a line; the caller hears each prompt; the call ends in
    the billing queue."""
    script = "2\nquiero pagar una factura\n\n12345674\nsí\n"
    result = runner.invoke(app, ["ivr", "simulate", str(DEMO), "--caller", "+14155550123"], input=script)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Calling demo" in out and "call from +14155550123" in out
    assert "  says (en-US): Thank you for calling Example Shop. For English, press 1 or say English." in out
    assert "> 2\n  says (es-MX): Para facturación" in out
    assert "> \n  says (es-MX): Lo siento, no escuché nada." in out
    assert "Usted ingresó 1 2 3 4 5 6 7 4." in out
    assert "  [hands the call to queue billing]" in out and "  [in line: estimated wait 30 s, position 1]" in out
    assert out.strip().endswith("Call ended: queued to billing")


def test_simulate_closed_queue_voicemail_and_actions() -> None:
    script = "1\n3\n/record 12\n"
    result = runner.invoke(app, ["ivr", "simulate", str(DEMO), "--closed", "sales", "--actions"], input=script)
    assert result.exit_code == 0, result.output
    assert "We are closed right now" in result.output
    assert '{"kind":"record","max_seconds":120,"finish_on_key":"#","beep":true,"transcribe":false}' in result.output
    assert "[voicemail: a ticket in sales with the 12 s recording]" in result.output
    assert result.output.strip().endswith("Call ended: voicemail in sales")


def test_simulate_lookup_long_wait_callback_state_and_end_of_input() -> None:
    args = ["--contact", "Maria", "--open-ticket", "the kettle", "--ticket-status", "pending", "--wait", "600"]
    script = "1\n4\n/state\n1\n/speech 0.95 call me back\n"
    result = runner.invoke(app, ["ivr", "simulate", str(DEMO), *args], input=script)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "[lookup: Maria, 1 open request(s)]" in out
    assert "Your request number 1, about the kettle, is waiting for your reply." in out
    assert '"node": "request_menu"' in out, "/state prints the stored state"
    assert "The wait is about 10 minutes." in out
    assert out.strip().endswith("Call ended: callback in support (kept its place in line; priority high)")
    unfinished = runner.invoke(app, ["ivr", "simulate", str(DEMO)], input="1\n/nonsense\n")
    assert "/record 20" in unfinished.output, "an unknown command shows the help"
    assert unfinished.output.strip().endswith("(end of input: the call is still waiting at main_menu)")


def test_simulate_takes_a_world_file_and_options_override_it() -> None:
    """--world reads a conversations file's world (its clock and business hours); --now overrides its clock:
    on a Saturday sales is closed."""
    tests_file = str(DEMO.with_name("demo.tests.yaml"))
    weekday = runner.invoke(app, ["ivr", "simulate", str(DEMO), "--world", tests_file], input="1\n3\n")
    assert weekday.output.strip().endswith("Call ended: queued to sales"), weekday.output
    assert "from +14155550123" in weekday.output
    saturday = ["--world", tests_file, "--now", "2026-03-07T10:00:00-05:00"]
    closed = runner.invoke(app, ["ivr", "simulate", str(DEMO), *saturday], input="1\n3\n")
    assert "We are closed right now" in closed.output


def test_simulate_rejects_bad_options() -> None:
    result = runner.invoke(app, ["ivr", "simulate", str(DEMO), "--now", "2026-03-07T10:00:00", "--wait", "-1"])
    assert result.exit_code == 2
    assert "--now: Input should have timezone info" in result.output
    assert "--wait: Input should be greater than or equal to 0" in result.output


def test_simulate_refuses_a_flow_with_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BASE.replace("start: menu", "start: nothing"))
    result = runner.invoke(app, ["ivr", "simulate", str(path)], input="")
    assert result.exit_code == 1 and "start names 'nothing'" in result.output


def test_test_runs_the_demo_conversations() -> None:
    result = runner.invoke(app, ["ivr", "test", str(DEMO)])
    assert result.exit_code == 0, result.output
    assert "PASS  billing in English with a valid account number" in result.output
    assert result.output.strip().endswith("conversation(s) passed, 0 failed")
    only = runner.invoke(app, ["ivr", "test", str(DEMO), "-k", "SATURDAY"])
    assert only.exit_code == 0 and only.output.count("PASS") == 1


def test_test_failures_show_what_differs_and_where(tmp_path: Path) -> None:
    flow = write(tmp_path, "menu.yaml", BASE)
    write(
        tmp_path,
        "menu.tests.yaml",
        """
        tests:
          - name: sales by key
            steps:
              - expect: Press 1 for sales
              - press: 1
            outcome: {queued: sales}
          - name: wrong expectation
            steps:
              - press: 2
                expect: Welcome to support
          - name: wrong outcome
            steps:
              - say: sales
            outcome: {queued: support, priority: high}
        """,
    )
    result = runner.invoke(app, ["ivr", "test", str(flow), "-v"])
    assert result.exit_code == 1
    out = result.output
    assert "PASS  sales by key" in out and "FAIL  wrong expectation" in out and "FAIL  wrong outcome" in out
    assert f"{tmp_path / 'menu.tests.yaml'}:7" in out
    assert 'step 1 (press 2), line 9: expected to hear "Welcome to support"' in out
    assert "  heard: nothing" in out
    assert "outcome, line 14:" in out
    assert "  - expected: queued to support (priority high)" in out and "  + actual:   queued to sales" in out
    assert "priority: expected high, got None" in out
    assert "caller presses 2" in out, "-v shows the failed call's transcript"
    assert out.strip().endswith("1 conversation(s) passed, 2 failed")


def test_test_reports_a_broken_tests_file_at_its_line(tmp_path: Path) -> None:
    flow = write(tmp_path, "menu.yaml", BASE)
    tests = write(tmp_path, "other.yaml", "tests:\n  - name: x\n    steps:\n      - press: 1\n        say: sales\n")
    result = runner.invoke(app, ["ivr", "test", str(flow), "--tests", str(tests)])
    assert result.exit_code == 1
    assert f"{tests}:4: error: tests[1].steps[1]: a step does one of press, say, silence, record, hangup" in (
        result.output
    )
    missing = runner.invoke(app, ["ivr", "test", str(tmp_path / "menu2.yaml")])
    assert missing.exit_code == 1 and "cannot read" in missing.output


def test_graph_prints_mermaid() -> None:
    result = runner.invoke(app, ["ivr", "graph", str(DEMO)])
    assert result.exit_code == 0 and result.output.startswith("flowchart TD\n")
    fenced = runner.invoke(app, ["ivr", "graph", str(DEMO), "--markdown"])
    assert fenced.output.startswith("```mermaid\nflowchart TD\n") and fenced.output.endswith("```\n")
