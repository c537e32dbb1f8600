// The supervisor's page: the live wallboard (a snapshot from /api/supervisor/wallboard, then the rows that
// change as "wallboard.update" frames on /ws/agent, which reconnects and resumes by itself), supervisor
// actions, reports and the staffing forecast. Times that grow by themselves (longest wait, time in status)
// are computed here every second from the timestamps the server sends.
import { api } from "../console/api.js";
import { h } from "../console/dom.js";
import { EventStream } from "../console/stream.js";

const queues = new Map();
const agents = new Map();
let alerts = [];
let channelAlerts = [];
let occupancy = null;
let skew = 0; // server clock minus ours, in ms
let connectedOnce = false;

const $ = (id) => document.getElementById(id);
const now = () => Date.now() + skew;

function dur(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(v * 100)} %`);
const since = (iso) => (iso ? (now() - new Date(iso).getTime()) / 1000 : null);

function apply(data) {
  if (data.at) skew = new Date(data.at).getTime() - Date.now();
  for (const q of data.queues || []) queues.set(q.id, q);
  for (const id of data.removed_queues || []) queues.delete(id);
  for (const a of data.agents || []) agents.set(a.id, a);
  for (const id of data.removed_agents || []) agents.delete(id);
  if (data.alerts) alerts = data.alerts;
  if (data.channel_alerts) channelAlerts = data.channel_alerts;
  if ("occupancy" in data) occupancy = data.occupancy;
  render();
}

async function load() {
  const snap = await api("GET", "/api/supervisor/wallboard");
  queues.clear();
  agents.clear();
  $("tz").textContent = snap.timezone;
  apply(snap);
  fillSelects();
}

function queueCells(f, q, isChannel) {
  const longest = f.oldest_queued_at ? since(f.oldest_queued_at) : 0;
  const average = f.mean_queued_at ? since(f.mean_queued_at) : 0;
  const target = q.service_level_target / 100;
  const slClass = (v) => (v === null || v === undefined ? "" : v < target ? "bad" : "good");
  return [
    h("td", { class: "waiting", text: f.waiting }),
    h("td", { class: `longest ${longest > q.wait_alert_seconds ? "bad" : ""}`, text: dur(longest) }),
    h("td", { text: dur(average) }),
    h("td", { class: `sl30 ${slClass(f.service_level_30m)}`, text: pct(f.service_level_30m) }),
    h("td", { class: `sltoday ${slClass(f.service_level_today)}`, text: pct(f.service_level_today) }),
    h("td", { class: "answered", text: f.answered_today }),
    h("td", { class: "abandoned", text: f.abandoned_today }),
    h("td", { text: pct(f.abandonment_today) }),
    h("td", { text: dur(f.asa_today) }),
    ...(isChannel
      ? [h("td"), h("td"), h("td"), h("td")]
      : ["available", "busy", "away", "wrap_up"].map((k) => h("td", { class: `ag-${k}`, text: q.agents[k] }))),
  ];
}

function render() {
  const qbody = $("queues").querySelector("tbody");
  const rows = [];
  let waiting = 0, longest = 0, abandoned = 0, within = 0, counted = 0;
  for (const q of [...queues.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    rows.push(h("tr", { class: "queue", dataset: { queue: q.name } },
      h("td", { title: `service level: answered within ${q.service_level_seconds} s, target ${q.service_level_target} %`, text: q.name }),
      ...queueCells(q, q, false)));
    for (const [channel, f] of Object.entries(q.channels)) {
      rows.push(h("tr", { class: "channel", dataset: { queue: q.name, channel } }, h("td", { text: channel }), ...queueCells(f, q, true)));
    }
    waiting += q.waiting;
    abandoned += q.abandoned_today;
    if (q.oldest_queued_at) longest = Math.max(longest, since(q.oldest_queued_at));
    if (q.service_level_30m !== null) { within += q.service_level_30m * (q.answered_30m + q.abandoned_30m); counted += q.answered_30m + q.abandoned_30m; }
  }
  qbody.replaceChildren(...rows);
  $("t-waiting").textContent = waiting;
  $("t-longest").textContent = dur(longest);
  $("t-sl30").textContent = counted ? pct(within / counted) : "–";
  $("t-abandoned").textContent = abandoned;
  $("t-occupancy").textContent = pct(occupancy);

  const abody = $("agents").querySelector("tbody");
  abody.replaceChildren(...[...agents.values()].sort((a, b) => a.name.localeCompare(b.name)).map((a) => {
    const load = Object.entries(a.capacity).map(([c, cap]) => `${c} ${a.load[c] || 0}/${cap}`).join(" · ");
    const select = h("select", { "aria-label": `Status of ${a.name}`, dataset: { agent: a.id } },
      ...["available", "away", "wrap_up", "offline"].map((s) => h("option", { value: s, selected: s === a.status, text: s.replace("_", "-") })));
    select.addEventListener("change", () => act(() => api("PUT", `/api/supervisor/agents/${a.id}/status`, { status: select.value }), `${a.name} is ${select.value}`));
    return h("tr", { dataset: { agent: a.name } },
      h("td", { text: a.name }),
      h("td", { class: `status status-${a.status}${a.busy ? " busy" : ""}`, text: a.status.replace("_", "-") + (a.busy && a.status === "available" ? " (busy)" : "") }),
      h("td", { text: dur(since(a.since)) }),
      h("td", { class: "load", text: load }),
      h("td", { class: "handled", text: a.handled_today }),
      h("td", { text: dur(a.aht_today) }),
      h("td", { class: "actions-col" }, select, ...(a.calls || []).map((id) => listenButton(id, a.name))));
  }));

  const list = [];
  for (const c of channelAlerts) {
    const what = c.status.replace("_", " ");
    list.push(h("div", { class: "alert channel", dataset: { channel: c.channel, account: c.account },
      text: `${c.channel} ${c.account} (${c.queue}): ${c.detail || what}` }));
  }
  for (const q of queues.values()) for (const text of q.alerts) list.push(h("div", { class: "alert", text: `${q.name}: ${text}` }));
  for (const a of alerts.slice(-5).reverse()) list.push(h("div", { class: "alert info", text: a.text }));
  $("alerts").replaceChildren(...list);
}

// A live call (a voice ticket the agent holds): the supervisor's own phone joins it muted (channels/twilio).
function listenButton(id, name) {
  const b = h("button", { type: "button", class: "btn small listen", dataset: { ticket: id }, text: `Listen in #${id}`,
    title: `Your phone is dialled into ${name}'s call, muted` });
  b.addEventListener("click", () => act(() => api("POST", `/api/twilio/tickets/${id}/listen`), `listening in on #${id}: your phone rings`));
  return b;
}

function fillSelects() {
  const agentSel = $("act-agent");
  const keep = agentSel.value;
  agentSel.replaceChildren(...[...agents.values()].map((a) => h("option", { value: a.id, text: a.name })));
  if (keep) agentSel.value = keep;
  const queueSel = $("act-queue");
  queueSel.replaceChildren(h("option", { value: "", text: "its own queue" }),
    ...[...queues.values()].map((q) => h("option", { value: q.id, text: q.name })));
}

async function act(fn, done) {
  const out = $("act-result");
  try {
    await fn();
    out.textContent = done;
    out.className = "small";
  } catch (err) {
    out.textContent = err.message;
    out.className = "small error";
  }
}

document.querySelectorAll("#ticket-actions [data-act]").forEach((b) => b.addEventListener("click", () => {
  const id = parseInt($("act-ticket").value.replace("#", ""), 10);
  if (!id) { $("act-result").textContent = "Enter a ticket number."; return; }
  const kind = b.dataset.act;
  if (kind === "reassign") act(() => api("POST", `/api/supervisor/tickets/${id}/reassign`, { agent_id: parseInt($("act-agent").value, 10) }), `#${id} reassigned`);
  if (kind === "requeue") {
    const q = $("act-queue").value;
    act(() => api("POST", `/api/supervisor/tickets/${id}/requeue`, q ? { queue_id: parseInt(q, 10) } : {}), `#${id} re-queued`);
  }
  if (kind === "join-visible") act(() => api("POST", `/api/supervisor/tickets/${id}/join`, { mode: "visible" }), `joined #${id}; the customer was told`);
  if (kind === "listen") act(() => api("POST", `/api/twilio/tickets/${id}/listen`), `listening in on #${id}: your phone rings`);
  if (kind === "join-silent") act(() => api("POST", `/api/supervisor/tickets/${id}/join`, { mode: "silent" }), `joined #${id} silently`);
}));

// --- tabs and the big screen --------------------------------------------------------------------------------

function showTab() {
  const name = (location.hash || "#wallboard").slice(1);
  document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== `tab-${name}`; });
  document.querySelectorAll(".tabs a").forEach((a) => a.classList.toggle("active", a.dataset.tab === name));
  if (name === "reports" && !$("r-charts").childElementCount) loadReport();
}
window.addEventListener("hashchange", showTab);

$("bigscreen").addEventListener("click", () => {
  document.body.classList.toggle("bigscreen");
  if (document.body.classList.contains("bigscreen") && document.documentElement.requestFullscreen) {
    document.documentElement.requestFullscreen().catch(() => {});
  }
});
document.addEventListener("keydown", (e) => { if (e.key === "Escape") document.body.classList.remove("bigscreen"); });
if (new URLSearchParams(location.search).get("mode") === "wallboard") document.body.classList.add("bigscreen");

// --- reports ------------------------------------------------------------------------------------------------

function reportQuery() {
  const q = new URLSearchParams({ start: $("r-from").value, end: $("r-to").value, bucket: $("r-bucket").value });
  if ($("r-queue").value) q.set("queue_id", $("r-queue").value);
  if ($("r-channel").value) q.set("channel", $("r-channel").value);
  return q.toString();
}

// The filters' choices: the queues, and the channels any queue takes (once, when the tab first opens).
let reportFilters = null;
function loadReportFilters() {
  reportFilters ||= api("GET", "/api/queues").then((queues) => {
    const channels = [...new Set(queues.flatMap((q) => q.channels))].sort();
    $("r-queue").append(...queues.map((q) => h("option", { value: String(q.id), text: q.name })));
    $("r-channel").append(...channels.map((c) => h("option", { value: c, text: c })));
  }).catch(() => { reportFilters = null; });
  return reportFilters;
}

async function loadReport() {
  $("r-error").textContent = "";
  await loadReportFilters();
  const qs = reportQuery();
  $("r-csv").href = `/api/reports/summary.csv?${qs}`;
  try {
    const r = await api("GET", `/api/reports/summary?${qs}`);
    const t = r.totals;
    // A queue whose service-level threshold changed: its past hours are being counted again under the new one.
    $("r-recount").hidden = !r.recounting.length;
    $("r-recount").textContent = r.recounting.length
      ? "Service level is being recounted under a changed threshold for " +
        r.recounting.map((q) => `${q.queue} (${q.done} of ${q.total} tickets)`).join(", ") +
        ": until it is done, those queues' past hours mix the old and the new threshold. Show again to refresh."
      : "";
    // Deflections are the knowledge base's count (all time), from its API where it is mounted.
    try { t.deflections = (await api("GET", "/api/kb/stats")).deflections; } catch { t.deflections = null; }
    const tiles = [
      ["Tickets", t.volume], ["Answered", t.answered], ["Abandoned", t.abandoned],
      ["Service level", pct(t.service_level)], ["Abandonment", pct(t.abandonment)],
      ["First response (avg)", dur(t.first_response_avg)], ["Handle time (avg)", dur(t.handle_avg)],
      ["Resolution (avg)", dur(t.resolution_avg)], ["CSAT", t.csat === null ? "–" : `${t.csat.toFixed(2)} / 5`],
      ["Deflections", t.deflections === null ? "–" : t.deflections],
    ];
    $("r-totals").replaceChildren(...tiles.map(([l, v]) => h("div", { class: "tile" }, h("span", { class: "label", text: l }), h("span", { class: "big", text: v }))));
    $("r-charts").replaceChildren(...r.charts.map((c) => h("figure", {}, h("img", { src: `/api/reports/chart/${c}.svg?${qs}`, alt: c.replace("_", " ") }))));
  } catch (err) {
    $("r-error").textContent = err.message;
  }
}
$("report-form").addEventListener("submit", (e) => { e.preventDefault(); loadReport(); });
{
  const today = new Date();
  const from = new Date(today.getTime() - 6 * 86400000);
  $("r-to").value = today.toISOString().slice(0, 10);
  $("r-from").value = from.toISOString().slice(0, 10);
}

// --- forecast -----------------------------------------------------------------------------------------------

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
async function loadForecast() {
  $("f-error").textContent = "";
  try {
    const f = await api("GET", `/api/supervisor/forecast?weeks=${$("f-weeks").value}`);
    const blocks = f.queues.map((q) => h("section", {},
      h("h2", { text: `${q.name}: ${q.available_now} agents available now; target ${q.service_level_target} % within ${q.service_level_seconds} s` }),
      q.hours.length ? h("table", { class: "board forecast" },
        h("thead", {}, h("tr", {}, ...["Hour of week", "Arrivals / h", "AHT", "Patience", "Erlang C agents", "Erlang A agents", "Available now"].map((t) => h("th", { text: t })))),
        h("tbody", {}, ...q.hours.map((r) => h("tr", {},
          h("td", { text: `${DAYS[r.weekday]} ${String(r.hour).padStart(2, "0")}:00` }),
          h("td", { text: r.arrivals_per_hour.toFixed(1) }), h("td", { text: dur(r.aht_seconds) }),
          h("td", { text: r.patience_seconds === null ? "–" : dur(r.patience_seconds) }),
          h("td", { class: r.erlang_c_agents > q.available_now ? "short" : "", text: r.erlang_c_agents }),
          h("td", { class: r.erlang_a_agents !== null && r.erlang_a_agents > q.available_now ? "short" : "", text: r.erlang_a_agents ?? "–" }),
          h("td", { text: q.available_now }))))) : h("p", { class: "muted", text: "No arrivals in the period." })));
    $("f-out").replaceChildren(...blocks);
  } catch (err) {
    $("f-error").textContent = err.message;
  }
}
$("forecast-form").addEventListener("submit", (e) => { e.preventDefault(); loadForecast(); });

// --- live ---------------------------------------------------------------------------------------------------

const stream = new EventStream({
  onEvent: (f) => { if (f.type === "wallboard.update") apply(f.data); },
  onState: (s) => {
    const el = $("conn");
    el.className = `conn ${s}`;
    el.textContent = s === "live" ? "Live" : s === "offline" ? "Reconnecting…" : "Connecting…";
  },
  onReset: load,
  // Every (re)connection reloads the board: frames sent while away are not kept (figures are, here).
  onHello: () => { if (connectedOnce) load().catch(() => {}); connectedOnce = true; },
});

showTab();
load().then(() => { stream.start(null); document.body.dataset.ready = "1"; }).catch((err) => { $("alerts").replaceChildren(h("div", { class: "alert", text: err.message })); });
setInterval(render, 1000);
