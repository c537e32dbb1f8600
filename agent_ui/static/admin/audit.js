// The audit log: GET /api/audit (filters, newest first, a page at a time) and its CSV export, /api/audit.csv.
import { $, api, h, showErrors, clearErrors, saved, ready } from "./admin.js";

const form = $("filters");
const PAGE = 100;
let offset = 0;

function query() {
  const q = new URLSearchParams();
  for (const k of ["action", "actor", "target"]) if (form[k].value.trim()) q.set(k, form[k].value.trim());
  // datetime-local is the browser's local time: sent with its offset, as the API asks.
  for (const k of ["since", "until"]) if (form[k].value) q.set(k, new Date(form[k].value).toISOString());
  return q;
}

function detailText(detail) {
  return Object.entries(detail || {}).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n");
}

async function show(more) {
  clearErrors(form);
  const q = query();
  $("export").href = `/api/audit.csv?${q}`;
  offset = more ? offset + PAGE : 0;
  q.set("offset", offset);
  q.set("limit", PAGE);
  try {
    const rows = await api("GET", `/api/audit?${q}`);
    const trs = rows.map((e) => h("tr", {},
      h("td", { text: new Date(e.at).toLocaleString() }), h("td", { text: e.actor }), h("td", { text: e.action }),
      h("td", { text: e.target }), h("td", {}, h("pre", { class: "small", text: detailText(e.detail) }))));
    if (more) $("entries").append(...trs);
    else $("entries").replaceChildren(...trs);
    $("more").hidden = rows.length < PAGE;
    saved(`${$("entries").children.length} entries`);
  } catch (err) {
    showErrors(form, err);
  }
}

form.addEventListener("submit", (e) => { e.preventDefault(); show(false); });
$("more").addEventListener("click", () => show(true));
show(false).then(ready);
