"""The Mermaid diagram: every node and way drawn, labels escaped, and the text accepted by Mermaid itself
(its parser and renderer, run in Debian's Chromium)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from ivr_flows.graph import escape, mermaid
from ivr_flows.loader import load_flow, parse_flow
from tests.agent_ui.conftest import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM
from tests.ivr_flows.helpers import DEMO, yaml

ROOT = Path(__file__).resolve().parents[2]
# Nodes named like Mermaid keywords, and every character Mermaid reads as syntax, in labels.
NASTY = yaml(
    """
    name: nasty
    start: end
    nodes:
      end:
        type: menu
        prompt: 'Say "yes" | press #1 <b>bold</b> & [x] {{y}} (z) `tick` \\ back; semi --> arrow %% comment'
        choices:
          - {key: "#", label: 'a "quoted" | pipe <i> & ;', next: graph}
          - {key: "*", words: ['x --> y'], next: subgraph}
      graph:
        type: say
        prompt: "click callback call fn() style classDef end"
        next: subgraph
      subgraph:
        type: branch
        cases:
          - when: {var: caller.number, in: ['a"b', 'c|d']}
            next: graph-2
        else: end
      graph-2:
        type: hangup
        prompt: "ünïcødé — ☎ 日本語"
      graph_2:
        type: hangup
    """
)


def mermaid_js() -> Path | None:
    configured = os.environ.get("SWITCHBOARD_TEST_MERMAID_JS")
    if configured:
        return Path(configured)
    found = sorted(ROOT.glob(".cache/mermaid-*/mermaid.min.js"))
    return found[-1] if found else None


def test_every_node_and_way_is_drawn() -> None:
    flow = load_flow(DEMO)
    chart = mermaid(flow)
    lines = chart.splitlines()
    assert lines[0] == "flowchart TD" and '    n__call(("call")) --> n_choose_language' in lines
    for nid in flow.nodes:
        assert any(line.startswith(f"    n_{nid}") and f'"{nid}<br/>' in line for line in lines), nid
    edges = [line for line in lines if "-->" in line and "n__call" not in line]
    assert len(edges) == sum(len(n.edges()) for n in flow.nodes.values())
    assert '    n_main_menu -->|"1 billing"| n_billing' in lines
    assert '    n_to_agent -->|"wait ≥ 180 s"| n_offer_callback' in lines
    assert re.search(r"n_opening_hours\{\"opening_hours<br/>open now\? the call's queue\"\}", chart)


def test_labels_are_escaped_and_ids_cannot_clash() -> None:
    assert escape('a "b" #c <d> | `e`\n[f]') == "a #34;b#34; #35;c #60;d#62; #124; #96;e#96; #91;f#93;"
    parsed = parse_flow(NASTY)
    assert parsed.flow is not None
    chart = mermaid(parsed.flow)
    assert "n_end{{" in chart and "n_graph_2([" in chart and "n_graph_2_2([" in chart
    assert '"end<br/>menu: Say #34;yes#34; #124; press #35;1 #60;b#62;bold#60;/b#62; #38; #91;x#93;' in chart
    assert '-->|"#35; a #34;quoted#34; #124; pipe #60;i#62; #38; ;"| n_graph' in chart
    for line in chart.splitlines()[1:]:
        # outside the quoted labels a line holds only ids, shapes and arrows
        assert re.fullmatch(r'[^"]*("[^"]*"[^"]*)*', line) and line.count('"') % 2 == 0, line


@pytest.mark.browser
@pytest.mark.skipif(not HAVE_CHROMIUM, reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
async def test_mermaid_itself_parses_and_renders_the_charts() -> None:
    """Mermaid (fetched by scripts/test) parses and renders the demo's chart and one full of syntax
    characters and keywords, and the rendered labels read as the flow wrote them."""
    script = mermaid_js()
    if script is None or not script.exists():
        pytest.skip("no mermaid.min.js: scripts/test fetches it with npm (or set SWITCHBOARD_TEST_MERMAID_JS)")
    nasty = parse_flow(NASTY).flow
    assert nasty is not None
    charts = [mermaid(load_flow(DEMO)), mermaid(nasty)]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.set_content("<html><body><div id=out></div></body></html>")
            await page.add_script_tag(path=str(script))
            texts = []
            for i, chart in enumerate(charts):
                result = await page.evaluate(
                    """async ([chart, id]) => {
                        mermaid.initialize({startOnLoad: false});
                        try {
                            await mermaid.parse(chart);
                            const {svg} = await mermaid.render(id, chart);
                            document.getElementById('out').innerHTML = svg;
                            return {ok: true, text: document.getElementById('out').innerText};
                        } catch (e) { return {ok: false, text: String(e.message || e)}; }
                    }""",
                    [chart, f"chart{i}"],
                )
                assert result["ok"], result["text"]
                texts.append(result["text"])
        finally:
            await browser.close()
    assert "choose_language" in texts[0] and "1 billing" in texts[0]
    assert 'Say "yes" | press #1 <b>bold</b> & [x] {{y}} (z) `tick` \\ b…' in texts[1]
    assert 'a "quoted" | pipe <i> & ;' in texts[1] and "ünïcødé" not in texts[1]  # hangup shows no prompt
    assert 'caller.number in a"b, c|d' in texts[1]
