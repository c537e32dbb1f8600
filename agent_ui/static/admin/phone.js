// The phone admin page: the hub's numbers and the flow answering each (GET/PUT/DELETE /api/twilio/numbers),
// and every flow as a Mermaid diagram (GET /api/twilio/flows). Mermaid runs only when the hub serves its own
// copy (SWITCHBOARD_MERMAID_JS, at /admin/phone/mermaid.js; never a CDN); otherwise the diagram's source is
// shown, ready to paste into any Mermaid viewer. Text lands in the DOM as text.
import { api } from "../console/api.js";
import { h } from "../console/dom.js";

const $ = (id) => document.getElementById(id);
const mermaid = window.mermaid;

async function loadNumbers() {
  const numbers = await api("GET", "/api/twilio/numbers");
  $("numbers").replaceChildren(...numbers.map((n) => h("tr", {},
    h("td", { text: n.number }), h("td", { text: n.flow }), h("td", { text: n.label || "" }),
    h("td", { text: n.source === "api" ? "this page" : "settings" }),
    h("td", {}, n.source === "api" ? h("button", {
      class: "btn", type: "button", text: "Remove", "aria-label": `Remove ${n.number}`,
      onclick: async () => { await api("DELETE", `/api/twilio/numbers/${encodeURIComponent(n.number)}`); await loadNumbers(); },
    }) : ""))));
}

async function loadFlows() {
  const flows = await api("GET", "/api/twilio/flows");
  $("flow-choice").replaceChildren(...flows.filter((f) => f.valid).map((f) => h("option", { value: f.name, text: f.name })));
  $("diagram-note").textContent = mermaid
    ? "Each flow as the caller walks it."
    : "Diagrams are shown as Mermaid source: set SWITCHBOARD_MERMAID_JS to a copy of mermaid.min.js for pictures.";
  if (mermaid) mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
  const cards = [];
  for (const [i, f] of flows.entries()) {
    const diagram = h("div", { class: "diagram" });
    const card = h("article", { class: "flow", "data-flow": f.name },
      h("h3", { text: f.name }), h("p", { class: "hint", text: f.description || "" }), diagram);
    if (!f.valid) diagram.append(h("p", { class: "invalid", text: f.errors }));
    else if (mermaid) {
      try {
        const { svg } = await mermaid.render(`flow-${i}`, f.mermaid);
        diagram.innerHTML = svg; // Mermaid's own output, labels sanitized (securityLevel strict)
      } catch (e) {
        diagram.append(h("pre", { text: f.mermaid }));
      }
    } else diagram.append(h("pre", { class: "source", text: f.mermaid }));
    cards.push(card);
  }
  $("flows").replaceChildren(...cards);
}

$("add-number").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  $("error").textContent = "";
  try {
    await api("PUT", `/api/twilio/numbers/${encodeURIComponent(form.number.value.trim())}`,
      { flow: form.flow.value, label: form.label.value.trim() });
    form.reset();
    await loadNumbers();
  } catch (err) {
    $("error").textContent = err.message;
  }
});

await Promise.all([loadNumbers(), loadFlows()]);
document.body.dataset.ready = "true";
