// The agent console. State comes from the REST API once, then from the event stream; every string a
// customer wrote is shown with textContent (see dom.js), never parsed as HTML.
import { api } from "./api.js";
import { ago, attachmentUrl, clock, h } from "./dom.js";
import { phoneAccepted, phoneStatus, startPhone } from "./phone.js";
import { EventStream } from "./stream.js";
import { healthEvent, loadHealth, showWindow, ticketHealth, tickWindow, windowMode } from "./window.js";

const $ = (id) => document.getElementById(id);
const OPEN = new Set(["new", "open", "pending"]);

const state = {
  me: null,
  attached: [], // files uploaded for the reply being written: {id, filename, size}
  suggestAsked: 0, // the newest suggestions request: older answers are dropped
  queues: [],
  agents: [],
  mine: new Map(), // ticket id -> ticket summary
  offers: new Map(), // ticket id -> {ticket, expires}
  unread: new Map(), // ticket id -> count
  waitingSince: new Map(), // ticket id -> iso of the oldest unanswered customer message
  current: null, // ticket id
  detail: null,
  sending: null, // {id, text, mode, key} of the message whose send has not succeeded yet
  shown: new Set(), // message ids in the timeline
  mode: "reply",
  ready: false,
  buffer: [],
  typingTimer: null,
  typingSentAt: 0,
  typingIdle: null,
  customerTyping: null,
  canned: [],
  cannedIndex: 0,
  views: [], // [{id, name, count}]
  view: null, // the view shown, by id
  viewsTimer: null,
};

const stream = new EventStream({
  onEvent: (e) => (state.ready ? apply(e) : state.buffer.push(e)),
  onState: (s) => {
    const el = $("conn");
    el.textContent = s === "live" ? "Live" : s === "connecting" ? "Connecting…" : "Reconnecting…";
    el.className = `conn ${s}`;
  },
  onReset: () => loadState(),
});

// --- start -------------------------------------------------------------------------------------------------------

async function boot() {
  state.me = await api("GET", "/api/auth/me");
  $("me").textContent = state.me.display_name || state.me.username;
  // The admin pages: all of them for admins, the knowledge base's and canned responses' for supervisors.
  if (state.me.role === "admin" || state.me.role === "supervisor") {
    $("admin-link").href = state.me.role === "admin" ? "/admin" : "/admin/kb";
    $("admin-link").hidden = false;
  }
  showStatus(state.me.status);
  startPhone();
  stream.start(null);
  [state.queues, state.agents] = await Promise.all([api("GET", "/api/queues"), api("GET", "/api/agents")]);
  await loadState();
  fillViewFilters();
  loadViews();
  loadHealth();
  setInterval(tick, 1000);
}

// The status control shows the server's word for the agent's status. Wrap-up is an entry of its own that the
// agent cannot pick (the server starts it after a live conversation and ends it by itself); during it the agent
// may still choose available, away or offline.
function showStatus(status) {
  const known = [...$("status").options].some((o) => o.value === status);
  $("status").value = known ? status : "away";
  phoneStatus(status);
}

async function loadState() {
  state.ready = false;
  const [mine, waiting] = await Promise.all([
    api("GET", "/api/tickets?mine=true&status=new&status=open&status=pending&limit=100"),
    api("GET", "/api/tickets?status=new&status=open&limit=200"),
  ]);
  state.mine = new Map(mine.items.map((t) => [t.id, t]));
  state.offers = new Map();
  for (const t of waiting.items) {
    if (t.offered_agent_id === state.me.id && !t.assignee_id) state.offers.set(t.id, offerOf(t));
  }
  await Promise.all([...state.mine.keys()].map(refreshWaiting));
  state.ready = true;
  const buffered = state.buffer.splice(0);
  buffered.forEach(apply);
  renderLists();
  if (state.current) await openTicket(state.current, { keepComposer: true });
}

// An offer counts down to the deadline the server set, whether it arrived as an event or was loaded over REST.
function offerOf(t) {
  return { ticket: t, expires: t.offer_expires_at ? new Date(t.offer_expires_at) : null };
}

async function refreshWaiting(id) {
  try {
    const t = await api("GET", `/api/tickets/${id}`);
    computeWaiting(id, t.messages);
    if (state.current !== id) countUnread(id, t.messages);
  } catch { /* gone or not ours any more */ }
}

// What the agent has read survives a reload: the newest message id seen per ticket, in localStorage. A
// conversation never opened here counts the customer's messages since the last answer.
function seenKey() { return `switchboard.seen.${state.me.id}`; }

function loadSeen() {
  try { return JSON.parse(localStorage.getItem(seenKey()) || "{}") || {}; } catch { return {}; }
}

function markSeen(id, messageId) {
  const seen = loadSeen();
  if (!messageId || (seen[id] || 0) >= messageId) return;
  seen[id] = messageId;
  const ids = Object.keys(seen).map(Number).sort((a, b) => a - b);
  for (const old of ids.slice(0, Math.max(0, ids.length - 500))) delete seen[old]; // keep the newest 500
  try { localStorage.setItem(seenKey(), JSON.stringify(seen)); } catch { /* storage full or off */ }
}

function countUnread(id, messages) {
  const seen = loadSeen()[id];
  let n = 0;
  for (const m of messages) {
    if (seen !== undefined) { if (m.direction === "inbound" && m.id > seen) n += 1; }
    else if (m.direction === "inbound") n += 1;
    else if (m.direction === "outbound") n = 0;
  }
  if (n) state.unread.set(id, n);
  else state.unread.delete(id);
}

function computeWaiting(id, messages) {
  let since = null;
  for (const m of messages) {
    if (m.direction === "inbound") since = since || m.created_at;
    else if (m.direction === "outbound") since = null;
  }
  if (since) state.waitingSince.set(id, since);
  else state.waitingSince.delete(id);
}

// --- events --------------------------------------------------------------------------------------------------------

function apply(e) {
  const d = e.data || {};
  const me = state.me.id;
  switch (e.type) {
    case "ticket.offered": {
      const t = d.ticket;
      if (t.offered_agent_id === me) {
        state.offers.set(t.id, offerOf(t));
        notify();
      }
      break;
    }
    case "offer.declined":
    case "offer.expired":
      if (d.agent_id === me) state.offers.delete(d.ticket_id);
      break;
    case "call.abandoned": // the caller hung up while the call was offered
      if (d.ticket) state.offers.delete(d.ticket.id);
      break;
    case "ticket.assigned":
    case "ticket.updated":
    case "ticket.created": {
      const t = d.ticket;
      if (!t) break;
      if (t.offered_agent_id !== me) state.offers.delete(t.id);
      if (t.assignee_id === me && OPEN.has(t.status)) {
        const isNew = !state.mine.has(t.id);
        state.mine.set(t.id, { ...(state.mine.get(t.id) || {}), ...t });
        if (isNew) {
          refreshWaiting(t.id).then(renderLists);
          // handed to me by someone else (a transfer) or by routing: new work I have not seen yet
          if (d.by !== me && state.current !== t.id) {
            state.unread.set(t.id, Math.max(1, state.unread.get(t.id) || 0));
            notify();
          }
        }
      } else {
        state.mine.delete(t.id);
      }
      if (state.current === t.id && state.detail) {
        state.detail = { ...state.detail, ...t };
        renderHead();
      }
      break;
    }
    case "message.created": {
      const m = d.message;
      if (state.mine.has(m.ticket_id)) {
        const t = state.mine.get(m.ticket_id);
        t.last_message_at = m.created_at;
        if (m.direction === "inbound") {
          if (!state.waitingSince.has(m.ticket_id)) state.waitingSince.set(m.ticket_id, m.created_at);
          if (state.current !== m.ticket_id || document.hidden) {
            state.unread.set(m.ticket_id, (state.unread.get(m.ticket_id) || 0) + 1);
            notify();
          } else {
            markSeen(m.ticket_id, m.id);
          }
        } else if (m.direction === "outbound") {
          state.waitingSince.delete(m.ticket_id);
        }
      }
      if (state.current === m.ticket_id) {
        appendMessage(m);
        if (m.direction === "inbound") {
          showCustomerTyping(false);
          loadSuggestions({ id: m.ticket_id }); // what the customer just wrote, whatever waits in the composer
          showWindow(m.ticket_id, templateSent); // the customer wrote: their window opens again
        }
      }
      break;
    }
    case "message.status":
      if (state.current === d.ticket_id) setDelivery(d.message_id, d.status, d.error);
      break;
    case "typing":
      if (e.ticket_id === state.current && d.who === "visitor") showCustomerTyping(d.active, d.name);
      break;
    case "agent.status":
      if (d.agent_id === me) showStatus(d.status);
      break;
    case "channel.health":
      healthEvent(d);
      break;
    default:
      break;
  }
  if (/^(ticket|offer)\./.test(e.type)) refreshViews();
  renderLists();
}

// --- lists ----------------------------------------------------------------------------------------------------------

function renderLists() {
  const offers = $("offers");
  offers.replaceChildren();
  // A burst (several offers at once, as on going available): one "accept all" per channel. Routing offered them
  // within the agent's capacity on each channel, so taking them all stays within it.
  if (state.offers.size > 1) {
    const byChannel = new Map();
    for (const [id, o] of state.offers) byChannel.set(o.ticket.channel, [...(byChannel.get(o.ticket.channel) || []), id]);
    offers.append(h("li", { class: "offer-burst" },
      h("div", { class: "small", text: `${state.offers.size} offers at once` }),
      h("div", { class: "burst-actions" }, [...byChannel].map(([channel, ids]) => h("button", {
        class: "btn primary", type: "button", text: `Accept all ${ids.length} ${channel}`, onclick: () => acceptAll(ids),
      })))));
  }
  for (const [id, o] of state.offers) {
    const t = o.ticket;
    offers.append(h("li", { class: "offer", dataset: { id } },
      h("div", { class: "offer-top" },
        h("span", { class: `chan chan-${t.channel}`, text: t.channel }),
        h("span", { class: "countdown", "data-countdown": id, text: countdown(o) })),
      h("div", { class: "subject", text: t.subject || `Ticket #${id}` }),
      t.channel === "voice" ? screenPop(id) : null,
      h("div", { class: "offer-actions" },
        h("button", { class: "btn primary", type: "button", text: "Accept", title: "Accept (Alt+A)", onclick: () => accept(id) }),
        h("button", { class: "btn", type: "button", text: "Decline", title: "Decline (Alt+D)", onclick: () => decline(id) }))));
  }
  $("no-offers").hidden = state.offers.size > 0;

  const list = $("mine");
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.id : null;
  list.replaceChildren();
  const items = [...state.mine.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
  for (const t of items) {
    const unread = state.unread.get(t.id) || 0;
    const waiting = state.waitingSince.get(t.id);
    list.append(h("li", {
      class: `conv-item${state.current === t.id ? " active" : ""}${unread ? " unread" : ""}`,
      role: "option", tabindex: "-1", "aria-selected": String(state.current === t.id), dataset: { id: t.id },
      onclick: () => openTicket(t.id),
      onkeydown: (ev) => { if (ev.key === "Enter") openTicket(t.id); },
    },
    h("div", { class: "row" },
      h("span", { class: `chan chan-${t.channel}`, text: t.channel }),
      h("span", { class: "subject", text: t.subject || `#${t.id}` }),
      unread ? h("span", { class: "unread-badge", "aria-label": `${unread} unread`, text: String(unread) }) : null),
    h("div", { class: "row muted small" },
      h("span", { text: `#${t.id}` }),
      waiting ? h("span", { class: "waiting", "data-waiting": t.id, text: `waiting ${ago(waiting)}` }) : h("span", { text: "answered" }))));
  }
  $("no-mine").hidden = state.mine.size > 0;
  // One Tab stop for the whole list (the one focused before this render, else the open conversation, else the
  // first); the arrows move within it (see the list's keydown handler).
  const options = [...list.children];
  const byId = (id) => options.find((li) => li.dataset.id === String(id));
  const stop = (focused && byId(focused)) || byId(state.current) || options[0];
  if (stop) {
    stop.tabIndex = 0;
    if (focused) stop.focus();
  }
  updateTitle();
}

$("mine").addEventListener("keydown", (e) => {
  const options = [...$("mine").children];
  const at = options.indexOf(document.activeElement);
  if (at < 0 || e.altKey || e.ctrlKey || e.metaKey) return; // Alt+arrows: the console's own shortcuts
  const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: options.length - 1 }[e.key];
  if (to === undefined || to < 0 || to >= options.length) return;
  e.preventDefault();
  options[at].tabIndex = -1;
  options[to].tabIndex = 0;
  options[to].focus();
});

function countdown(o) {
  if (!o.expires) return "offered";
  const s = Math.max(0, Math.round((o.expires.getTime() - Date.now()) / 1000));
  return `${s}s`;
}

function tick() {
  if (state.detail) renderSla();
  tickWindow();
  for (const [id, o] of state.offers) {
    const el = document.querySelector(`[data-countdown="${id}"]`);
    if (el) el.textContent = countdown(o);
  }
  for (const el of document.querySelectorAll("[data-waiting]")) {
    const since = state.waitingSince.get(Number(el.dataset.waiting));
    if (since) el.textContent = `waiting ${ago(since)}`;
  }
}

function updateTitle() {
  let n = state.offers.size;
  for (const c of state.unread.values()) n += c;
  document.title = n ? `(${n}) Switchboard console` : "Switchboard console";
}

// A short chime on new work. Browsers keep an AudioContext silent until the page has had a click or a key
// press, so the first one of those (choosing a status, say) unlocks it.
let audio = null;
function unlockAudio() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume().catch(() => {});
  } catch { /* no Web Audio */ }
}
document.addEventListener("pointerdown", unlockAudio, { capture: true });
document.addEventListener("keydown", unlockAudio, { capture: true });

function notify() {
  updateTitle();
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.25);
  } catch { /* no Web Audio: the title badge still shows */ }
}

// --- offers ------------------------------------------------------------------------------------------------------------

// A call's screen pop: who is calling, what they chose in the phone menu, how long they have waited, and what
// else they have open (GET /api/twilio/tickets/{id}/call), loaded once per offer.
const pops = new Map();

function screenPop(id) {
  const box = h("div", { class: "screen-pop", dataset: { pop: id } });
  const fill = (c) => {
    if (!c) return;
    const who = c.contact && c.contact.name ? `${c.contact.name} (${c.caller})` : c.caller;
    const open = c.contact ? c.contact.open_tickets.filter((t) => t.id !== id) : [];
    box.replaceChildren(
      h("div", { class: "pop-caller", text: `Caller: ${who}` }),
      h("div", { class: "pop-path", text: `Menu: ${c.ivr_path.join(" › ")}` }),
      h("div", { class: "pop-history", text: open.length
        ? `Also open: ${open.map((t) => `#${t.id} ${t.subject}`).join("; ")}` : "Nothing else open" }));
  };
  if (pops.has(id)) fill(pops.get(id));
  else api("GET", `/api/twilio/tickets/${id}/call`).then((c) => { pops.set(id, c); fill(c); }).catch(() => {});
  return box;
}

async function accept(id) {
  try {
    const t = await api("POST", `/api/tickets/${id}/accept`);
    if (t.channel === "voice") phoneAccepted();
    state.offers.delete(id);
    state.mine.set(t.id, t);
    renderLists();
    await openTicket(t.id);
  } catch (err) {
    state.offers.delete(id);
    renderLists();
    flash(err.message);
  }
}

// One request for the whole group; each offer is taken or refused on its own (one that expired meanwhile is
// named with its reason, the others are still taken).
async function acceptAll(ids) {
  let answers;
  try {
    answers = await api("POST", "/api/offers/accept", { ticket_ids: ids });
  } catch (err) { flash(err.message); return; }
  let first = null;
  const refused = [];
  for (const a of answers) {
    state.offers.delete(a.ticket_id);
    if (a.accepted) {
      if (a.ticket.channel === "voice") phoneAccepted();
      state.mine.set(a.ticket.id, a.ticket);
      first = first || a.ticket.id;
    } else refused.push(`#${a.ticket_id}: ${a.detail}`);
  }
  renderLists();
  if (refused.length) flash(`Not taken: ${refused.join("; ")}`);
  if (first) await openTicket(first);
}

async function decline(id) {
  try { await api("POST", `/api/tickets/${id}/decline`); } catch (err) { flash(err.message); }
  state.offers.delete(id);
  renderLists();
}

// --- views and search --------------------------------------------------------------------------------------------------

const CHANNELS = ["webchat", "email", "sms", "whatsapp", "voice", "messenger", "instagram", "telegram"];

function fillViewFilters() {
  const channels = new Set(CHANNELS);
  for (const q of state.queues) for (const c of q.channels || []) channels.add(c);
  $("vf-channel").append(...[...channels].map((c) => h("option", { value: c, text: c })));
  $("vf-queue").append(...state.queues.map((q) => h("option", { value: q.id, text: q.name })));
}

function viewQuery() {
  const p = new URLSearchParams();
  const add = (key, value) => { if (value) p.set(key, value); };
  add("channel", $("vf-channel").value);
  add("queue_id", $("vf-queue").value);
  add("priority", $("vf-priority").value);
  add("sla", $("vf-sla").value);
  add("tag", $("vf-tag").value.trim());
  return p;
}

async function loadViews() {
  try { state.views = await api("GET", `/api/views?${viewQuery()}`); } catch { return; }
  renderViews();
}

function renderViews() {
  $("views").replaceChildren(...state.views.map((v) => h("li", {},
    h("button", {
      class: "view-btn", type: "button", "aria-pressed": String(state.view === v.id), dataset: { view: v.id },
      onclick: () => selectView(v.id),
    }, h("span", { text: v.name }), h("span", { class: "count", text: String(v.count) })))));
}

async function selectView(id) {
  state.view = state.view === id ? null : id;
  renderViews();
  $("view-panel").hidden = !state.view;
  if (state.view) await loadView();
}

async function loadView() {
  const id = state.view;
  if (!id) return;
  const p = viewQuery();
  p.set("sort", $("vf-sort").value);
  p.set("limit", "50");
  let page;
  try { page = await api("GET", `/api/views/${id}?${p}`); } catch (err) { $("view-status").textContent = err.message; return; }
  if (state.view !== id) return;
  const shown = page.items.length;
  $("view-status").textContent = `${page.total} ticket${page.total === 1 ? "" : "s"}${page.total > shown ? `, the first ${shown} shown` : ""}`;
  $("view-tickets").replaceChildren(...page.items.map(viewItem));
}

function viewItem(t) {
  const waiting = !t.assignee_id && !t.offered_agent_id && OPEN.has(t.status) && (state.me.queue_ids || []).includes(t.queue_id);
  const mineOffer = t.offered_agent_id === state.me.id && !t.assignee_id;
  const holder = t.assignee_id ? `with ${t.assignee_id === state.me.id ? "you" : agentName(t.assignee_id)}` : t.offered_agent_id ? "offered" : "waiting";
  return h("li", { class: "conv-item view-item", dataset: { id: t.id }, onclick: () => openTicket(t.id) },
    h("div", { class: "row" },
      h("span", { class: `chan chan-${t.channel}`, text: t.channel }),
      h("span", { class: "subject", text: t.subject || `#${t.id}` }),
      waiting || mineOffer ? h("button", {
        class: "btn take", type: "button", text: "Take", "aria-label": `Take #${t.id}`,
        onclick: (ev) => { ev.stopPropagation(); pull(t.id); },
      }) : null),
    h("div", { class: "row muted small" },
      h("span", { text: `#${t.id} · ${t.status} · ${t.priority}` }),
      h("span", { text: holder })));
}

async function pull(id) {
  try {
    const t = await api("POST", `/api/tickets/${id}/pull`);
    state.offers.delete(id);
    state.mine.set(t.id, t);
    renderLists();
    await openTicket(t.id);
  } catch (err) { flash(err.message); }
  refreshViews();
}

function refreshViews() {
  clearTimeout(state.viewsTimer);
  state.viewsTimer = setTimeout(() => { loadViews(); loadView(); }, 300);
}

for (const id of ["vf-channel", "vf-queue", "vf-priority", "vf-sla", "vf-sort"]) $(id).addEventListener("change", refreshViews);
$("vf-tag").addEventListener("input", refreshViews);

$("search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch(); });

async function runSearch() {
  const q = $("search-q").value.trim();
  if (!q) { $("search-results").replaceChildren(); $("search-status").textContent = ""; return; }
  let r;
  try { r = await api("GET", `/api/search/tickets?q=${encodeURIComponent(q)}&limit=20`); } catch (err) { $("search-status").textContent = err.message; return; }
  if ($("search-q").value.trim() !== q) return; // a newer search is on its way
  $("search-status").textContent = r.items.length ? `${r.items.length} found` : "Nothing found.";
  $("search-results").replaceChildren(...r.items.map((hit) => h("li", {
    class: "conv-item search-hit", dataset: { id: hit.ticket.id }, onclick: () => openTicket(hit.ticket.id),
  },
  h("div", { class: "row" },
    h("span", { class: `chan chan-${hit.ticket.channel}`, text: hit.ticket.channel }),
    h("span", { class: "subject" }, marked(hit.subject_html))),
  h("div", { class: "row muted small" }, h("span", { text: `#${hit.ticket.id} · ${hit.ticket.status}` })),
  hit.snippet_html ? h("div", { class: "snippet" }, marked(hit.snippet_html)) : null)));
}

// The server's highlights are escaped text with <mark> around the matches. They are rebuilt here as text nodes and
// <mark> elements, so nothing in them is ever parsed as HTML by the console.
function marked(escaped) {
  const out = [];
  let inMark = false;
  for (const part of escaped.split(/(<mark>|<\/mark>)/)) {
    if (part === "<mark>") inMark = true;
    else if (part === "</mark>") inMark = false;
    else if (part) {
      const plain = part.replace(/&(lt|gt|quot|#x27|#39|amp);/g, (_, e) => ({ lt: "<", gt: ">", quot: "\"", "#x27": "'", "#39": "'", amp: "&" })[e]);
      out.push(inMark ? h("mark", { text: plain }) : plain);
    }
  }
  return out;
}

function flash(text) {
  $("compose-error").textContent = text;
  setTimeout(() => { if ($("compose-error").textContent === text) $("compose-error").textContent = ""; }, 5000);
}

// --- the conversation ----------------------------------------------------------------------------------------------------

async function openTicket(id, { keepComposer = false } = {}) {
  const changed = state.current !== id;
  state.current = id;
  state.unread.delete(id);
  renderLists();
  let t;
  try { t = await api("GET", `/api/tickets/${id}`); } catch (err) { flash(err.message); return; }
  if (state.current !== id) return;
  state.detail = t;
  computeWaiting(id, t.messages);
  $("empty").hidden = true;
  $("conv").hidden = false;
  renderHead();
  const timeline = $("timeline");
  timeline.replaceChildren();
  state.shown = new Set();
  t.messages.forEach(appendMessage);
  markSeen(id, Math.max(0, ...state.shown));
  showCustomerTyping(false);
  if (changed && !keepComposer) { $("text").value = ""; setMode("reply"); }
  if (changed) { state.attached = []; renderAttached(); }
  if (changed) showWindow(id, templateSent);
  ticketHealth(t);
  $("text").focus();
  renderContact(t.contact);
  loadHistory(t);
  if (changed) { $("suggestions").replaceChildren(); $("no-suggestions").hidden = false; }
  loadSuggestions(t);
}

// A template reply the window's picker stored (window.js).
function templateSent(m) {
  if (state.current === m.ticket_id) appendMessage(m);
  state.waitingSince.delete(m.ticket_id);
  renderLists();
}

function renderHead() {
  const t = state.detail;
  $("conv-title").textContent = t.subject || `Ticket #${t.id}`;
  const parts = [`#${t.id}`, t.channel, t.status];
  if (t.reply_channel) parts.push(`answered by ${t.reply_channel}${t.reply_to ? ` to ${t.reply_to}` : ""}`);
  if (t.rating) parts.push(`rated ${t.rating}/5${t.rating_comment ? `: “${t.rating_comment}”` : ""}`);
  $("conv-sub").textContent = parts.join(" · ");
  const open = OPEN.has(t.status);
  $("solve-btn").disabled = !open;
  $("transfer-btn").disabled = !open;
  renderSla();
  const link = $("conv-link");
  link.replaceChildren();
  if (t.linked_ticket_id) {
    link.append("Follows ", h("a", { href: `#ticket-${t.linked_ticket_id}`, text: `#${t.linked_ticket_id}`,
      onclick: (ev) => { ev.preventDefault(); openTicket(t.linked_ticket_id); } }), " (the customer wrote again after it was solved)");
  }
  link.hidden = !t.linked_ticket_id;
  $("private-option").hidden = t.channel !== "comments";
  updateComposer();
}

// A solved or closed ticket takes no reply (the customer's next message opens a new ticket, linked to it);
// internal notes still go on it.
function updateComposer() {
  const t = state.detail;
  const shut = !!t && !OPEN.has(t.status) && state.mode === "reply";
  // Off as well while the customer's messaging window is closed (window.js sets data-window-shut).
  const composer = $("composer");
  composer.dataset.shut = shut ? "1" : "";
  const off = shut || composer.dataset.windowShut === "1";
  $("text").disabled = off;
  $("send").disabled = off;
  $("attach").disabled = off;
  const why = $("composer-closed");
  why.hidden = !shut;
  why.textContent = shut
    ? `This ticket is ${t.status}: replying is off. The customer's next message opens a new ticket, linked to this one. Internal notes still work.`
    : "";
}


// The ticket's SLA deadlines as timers: time left (or how late) to the first response and the resolution;
// stopped while pending on the customer.
function renderSla() {
  const t = state.detail;
  const el = $("conv-sla");
  if (!t || !OPEN.has(t.status)) { el.textContent = ""; return; }
  const parts = [];
  const timer = (label, due) => {
    const left = Math.round((new Date(due).getTime() - Date.now()) / 1000);
    const span = (s) => (s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`);
    return left >= 0 ? `${label} due in ${span(left)}` : `${label} overdue by ${span(-left)}`;
  };
  if (t.first_response_due_at && !t.first_response_at) parts.push(timer("First response", t.first_response_due_at));
  if (t.resolution_due_at) parts.push(timer("Resolution", t.resolution_due_at));
  if (t.sla_paused_at) parts.push("SLA paused (pending on the customer)");
  el.textContent = parts.length ? `⏱ ${parts.join(" · ")}` : "";
  const late = parts.some((p) => p.includes("overdue"));
  el.classList.toggle("late", late);
}

function agentName(id) {
  const a = state.agents.find((x) => x.id === id);
  return a ? a.display_name || a.username : "Agent";
}

function appendMessage(m) {
  if (state.shown.has(m.id)) return;
  state.shown.add(m.id);
  const kind = m.direction === "note" ? "note" : m.direction === "inbound" ? "in" : "out";
  const who = kind === "in" ? (state.detail && state.detail.contact && state.detail.contact.name) || m.sender || "Customer"
    : m.author_agent_id === state.me.id ? "You" : agentName(m.author_agent_id);
  const atts = (m.attachments || []).map((a) => {
    const url = attachmentUrl(a);
    if (!url) return h("span", { class: "att", text: a.filename || "attachment" });
    return /^image\//.test(a.content_type || "")
      ? h("a", { class: "att", href: url, target: "_blank", rel: "noopener noreferrer" }, h("img", { src: url, alt: a.filename || "image" }))
      : h("a", { class: "att", href: url, target: "_blank", rel: "noopener noreferrer", text: `📄 ${a.filename || "file"}` });
  });
  const li = h("li", { class: `msg ${kind}`, dataset: { id: m.id } },
    h("div", { class: "msg-meta" },
      h("span", { class: "who", text: kind === "note" ? `${who} · internal note` : who }),
      h("span", { class: "chan-small", text: m.channel }),
      h("time", { datetime: m.created_at, text: clock(m.created_at) }),
      kind === "out" ? h("span", { class: `delivery ${m.delivery_status}`, text: m.delivery_status, title: m.delivery_error || "" }) : null,
      kind === "out" ? h("span", { class: "delivery-error", text: deliveryProblem(m.delivery_status, m.delivery_error) }) : null),
    m.subject ? h("div", { class: "msg-subject", text: m.subject }) : null,
    m.text ? h("div", { class: "msg-text", text: m.text }) : null,
    atts.length ? h("div", { class: "atts" }, atts) : null);
  $("timeline").append(li);
  li.scrollIntoView({ block: "end" });
}

function setDelivery(messageId, status, error) {
  const el = document.querySelector(`.msg[data-id="${messageId}"] .delivery`);
  if (el) { el.textContent = status; el.className = `delivery ${status}`; el.title = error || ""; }
  const problem = document.querySelector(`.msg[data-id="${messageId}"] .delivery-error`);
  if (problem) problem.textContent = deliveryProblem(status, error);
}

// Why a reply is not out yet (the last failed attempt, while it is retried) or never will be.
function deliveryProblem(status, error) {
  if (!error) return "";
  return status === "pending" ? `retrying: ${error}` : status === "failed" ? error : "";
}

function showCustomerTyping(active, name) {
  clearTimeout(state.customerTyping);
  $("typing").textContent = active ? `${name || "Customer"} is typing…` : "";
  if (active) state.customerTyping = setTimeout(() => { $("typing").textContent = ""; }, 6000);
}

function renderContact(c) {
  const link = $("contact-page");
  link.href = `/console/contacts/${c.id}`;
  link.hidden = false;
  const box = $("contact");
  box.className = "contact";
  const label = (i) => (i.kind === "webchat" && i.value.startsWith("visitor:") ? "website visitor (not verified)"
    : i.kind === "webchat" && i.value.startsWith("user:") ? `site user ${i.value.slice(5)} (verified)` : i.value);
  const parts = [
    h("div", { class: "contact-name", text: c.name || "Unknown visitor" }),
    h("ul", { class: "identities" }, c.identities.map((i) => h("li", {}, h("span", { class: "muted", text: `${i.kind} ` }), h("span", { text: label(i) })))),
  ];
  if (Object.keys(c.attributes || {}).length) {
    parts.push(h("dl", { class: "attrs" }, Object.entries(c.attributes).flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })])));
  }
  box.replaceChildren(...parts);
}

async function loadHistory(t) {
  const list = $("history");
  list.replaceChildren();
  let hist;
  try { hist = await api("GET", `/api/contacts/${t.contact_id}`); } catch { return; }
  if (state.current !== t.id) return;
  const others = hist.tickets.filter((x) => x.id !== t.id).reverse();
  if (!others.length) list.append(h("li", { class: "muted small", text: "No earlier conversations." }));
  for (const x of others) {
    const details = h("details", {},
      h("summary", {},
        h("span", { class: `chan chan-${x.channel}`, text: x.channel }),
        h("span", { class: "subject", text: x.subject || `#${x.id}` }),
        h("span", { class: "muted small", text: ` #${x.id} · ${x.status} · ${clock(x.created_at)}${x.linked_ticket_id ? ` · follows #${x.linked_ticket_id}` : ""}` })),
      h("ol", { class: "mini-timeline" }, x.messages.map((m) => h("li", { class: `mini ${m.direction}` },
        h("span", { class: "muted small", text: `${m.direction === "inbound" ? "customer" : m.direction === "note" ? "note" : "agent"} · ${clock(m.created_at)} ` }),
        h("span", { text: m.text })))));
    list.append(h("li", {}, details));
  }
}

// The page says whether the server has the knowledge base's suggestions (agent_ui/views.py): without them there
// is nothing to ask, and asking would only log a 404 in the browser's console.
const KB_SUGGEST = document.body.dataset.kbSuggest === "on";
if (!KB_SUGGEST) $("no-suggestions").textContent = "The knowledge base is not set up.";

// Suggestions follow the conversation: asked again for the customer's words when they write (message.created),
// and, debounced, as the agent types (a draft of three words or more steers them: the agent is looking for
// something). A new customer message wins over a draft already there (often a suggestion just inserted). A knowledge-base item (with an id) offers its link
// or its text, its score, and "helpful" / "not helpful", which the knowledge base learns from.
async function loadSuggestions(t, draft = "") {
  const list = $("suggestions");
  if (!KB_SUGGEST) { list.replaceChildren(); $("no-suggestions").hidden = false; return; }
  const asked = ++state.suggestAsked;
  try {
    const q = draft.trim() ? `&draft=${encodeURIComponent(draft.trim().slice(0, 300))}` : "";
    const res = await fetch(`/api/kb/suggest?ticket_id=${t.id}${q}`, { credentials: "same-origin" });
    if (!res.ok || asked !== state.suggestAsked || state.current !== t.id) return;
    const items = await res.json();
    const arr = Array.isArray(items) ? items : items.items || [];
    const query = (items && items.query) || "";
    list.replaceChildren(...arr.slice(0, 5).map((a) => suggestionItem(a, t.id, query)));
    $("no-suggestions").hidden = arr.length > 0;
  } catch { /* a network error or a bad answer: no suggestions this time */ }
}

function suggestionItem(a, ticketId, query) {
  const link = a.url ? (a.url.startsWith("/") ? `${location.origin}${a.url}` : a.url) : "";
  const title = h("button", {
    class: "linklike", type: "button", text: a.title || "Article",
    title: link ? "Insert a link to the article" : "Insert the article's text",
    onclick: () => insertText(link ? `${a.title}: ${link}` : a.text || a.title || ""),
  });
  if (a.id === undefined) return h("li", {}, title);
  const verdict = h("span", { class: "muted small", role: "status" });
  const vote = (helpful) => async () => {
    try {
      await api("POST", "/api/kb/feedback", { article_id: a.id, helpful, ticket_id: ticketId, query });
      verdict.textContent = helpful ? "Thanks: marked helpful" : "Thanks: marked not helpful";
      for (const b of buttons.querySelectorAll("button.vote")) b.disabled = true;
    } catch (e) { verdict.textContent = e.message; }
  };
  const buttons = h("span", { class: "suggestion-actions" },
    a.text && link ? h("button", { class: "btn small", type: "button", text: "Insert text", "aria-label": `Insert the text of ${a.title}`, onclick: () => insertText(a.text) }) : null,
    h("button", { class: "btn small vote", type: "button", text: "👍", "aria-label": `${a.title} is helpful`, onclick: vote(true) }),
    h("button", { class: "btn small vote", type: "button", text: "👎", "aria-label": `${a.title} is not helpful`, onclick: vote(false) }),
    verdict);
  return h("li", { class: "suggestion", dataset: { article: a.id } },
    title,
    h("span", { class: "muted small", text: ` ${a.status === "internal" ? "internal · " : ""}score ${Number(a.score).toFixed(2)}` }),
    buttons);
}

function suggestWhileTyping() {
  if (!KB_SUGGEST || !state.current) return;
  clearTimeout(state.suggestTimer);
  const t = state.mine.get(state.current) || { id: state.current };
  state.suggestTimer = setTimeout(() => loadSuggestions(t, $("text").value), 500);
}

// --- composing -----------------------------------------------------------------------------------------------------------

function setMode(mode) {
  state.mode = mode;
  $("mode-reply").classList.toggle("active", mode === "reply");
  $("mode-note").classList.toggle("active", mode === "note");
  $("mode-reply").setAttribute("aria-selected", String(mode === "reply"));
  $("mode-note").setAttribute("aria-selected", String(mode === "note"));
  $("composer").classList.toggle("note-mode", mode === "note");
  $("text").setAttribute("aria-label", mode === "note" ? "Internal note (not sent to the customer)" : "Reply to the customer");
  $("send").textContent = mode === "note" ? "Add note" : "Send";
  $("attach-label").hidden = mode === "note"; // notes carry no files
  updateComposer();
  windowMode(mode);
}

// A key per message being sent, kept until its send succeeds: Send clicked again after a network error (the first
// request may have been stored all the same) sends the same key, and the server stores the message once.
function clientKey(id, text, mode) {
  const s = state.sending;
  if (s && s.id === id && s.text === text && s.mode === mode) return s.key;
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  const key = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  state.sending = { id, text, mode, key };
  return key;
}

// Files for the reply being written: each uploaded for the open ticket as it is picked (POST
// /api/reply-attachments, which checks its type and size), then named in the reply by the id the upload gave.
// An upload is valid for its ticket only: switching tickets drops the list.
async function attachFiles(files) {
  const id = state.current;
  for (const file of files) {
    const form = new FormData();
    form.append("ticket_id", String(id));
    form.append("file", file, file.name);
    try {
      const up = await api("POST", "/api/reply-attachments", form);
      if (state.current === id) state.attached.push({ id: up.id, filename: up.filename, size: up.size });
      $("compose-error").textContent = "";
    } catch (err) {
      $("compose-error").textContent = `${file.name}: ${err.message}`;
    }
  }
  renderAttached();
}

function renderAttached() {
  const box = $("attached");
  box.hidden = state.attached.length === 0;
  box.replaceChildren(...state.attached.map((a, i) => h("li", {},
    h("span", { text: `📎 ${a.filename} (${Math.max(1, Math.round(a.size / 1024))} KB)` }),
    h("button", { class: "btn ghost small", type: "button", text: "×", "aria-label": `Remove ${a.filename}`,
      onclick: () => { state.attached.splice(i, 1); renderAttached(); } }))));
}

async function sendCurrent() {
  const text = $("text").value.trim();
  const mode = state.mode;
  const files = mode === "reply" ? [...state.attached] : [];
  if ((!text && !files.length) || !state.current) return;
  const id = state.current;
  $("send").disabled = true;
  try {
    const path = mode === "note" ? `/api/tickets/${id}/notes` : `/api/tickets/${id}/reply`;
    const key = clientKey(id, text + files.map((a) => a.id).join(), mode);
    const body = { text, client_key: key };
    if (files.length) body.attachments = files.map((a) => ({ id: a.id, filename: a.filename }));
    if (mode === "reply" && !$("private-option").hidden && $("private").checked) body.private = true;
    const m = await api("POST", path, body);
    if (state.sending && state.sending.key === key) state.sending = null;
    if (files.length) { state.attached = state.attached.filter((a) => !files.includes(a)); renderAttached(); }
    // What the agent typed while this was on its way (the next note, say) stays in the composer.
    if (state.current === id && $("text").value.trim() === text) {
      $("text").value = "";
      $("private").checked = false;
    }
    $("compose-error").textContent = "";
    if (state.current === id) appendMessage(m);
    if (mode === "reply") state.waitingSince.delete(id);
    stopTyping();
    renderLists();
  } catch (err) {
    $("compose-error").textContent = err.message;
  } finally {
    $("send").disabled = false;
    $("text").focus();
  }
}

function typing() {
  if (!state.current || state.mode !== "reply") return;
  const now = Date.now();
  if (now - state.typingSentAt > 2500) {
    stream.send({ type: "typing", ticket_id: state.current, active: true });
    state.typingSentAt = now;
  }
  clearTimeout(state.typingIdle);
  state.typingIdle = setTimeout(stopTyping, 3000);
}

function stopTyping() {
  clearTimeout(state.typingIdle);
  if (state.typingSentAt && state.current) stream.send({ type: "typing", ticket_id: state.current, active: false });
  state.typingSentAt = 0;
}

function insertText(text) {
  const ta = $("text");
  ta.value = ta.value ? `${ta.value}\n${text}` : text;
  ta.focus();
}

// canned responses: "/" then letters, at the start of a line
function cannedQuery() {
  const ta = $("text");
  const before = ta.value.slice(0, ta.selectionStart);
  const m = /(?:^|\n)\/([\w.-]*)$/.exec(before);
  return m ? m[1] : null;
}

let cannedSeq = 0;
async function updateCanned() {
  const q = cannedQuery();
  if (q === null) { hideCanned(); return; }
  const seq = ++cannedSeq;
  let items = [];
  try { items = await api("GET", `/api/canned?q=${encodeURIComponent(q)}`); } catch { items = []; }
  if (seq !== cannedSeq) return;
  state.canned = items;
  state.cannedIndex = 0;
  renderCanned();
}

// The list stays a popup of the composer: focus never leaves the textarea, which names the highlighted
// response (aria-activedescendant) so that a screen reader reads it as the arrows move.
function renderCanned() {
  const box = $("canned");
  box.replaceChildren();
  if (!state.canned.length) {
    box.append(h("li", { class: "muted small", text: "No canned response matches." }));
  }
  state.canned.forEach((c, i) => {
    box.append(h("li", {
      id: `canned-${i}`, role: "option", "aria-selected": String(i === state.cannedIndex), class: i === state.cannedIndex ? "sel" : "",
      onmousedown: (e) => { e.preventDefault(); pickCanned(i); },
    }, h("strong", { text: `/${c.shortcut}` }), h("span", { text: ` ${c.title}` }), h("div", { class: "muted small preview", text: c.text })));
  });
  box.hidden = false;
  if (state.canned.length) $("text").setAttribute("aria-activedescendant", `canned-${state.cannedIndex}`);
  else $("text").removeAttribute("aria-activedescendant");
}

function hideCanned() {
  $("canned").hidden = true;
  $("text").removeAttribute("aria-activedescendant");
}

function pickCanned(i) {
  const c = state.canned[i];
  if (!c) return;
  const ta = $("text");
  const pos = ta.selectionStart;
  const before = ta.value.slice(0, pos).replace(/\/[\w.-]*$/, "");
  ta.value = before + c.text + ta.value.slice(pos);
  const caret = (before + c.text).length;
  ta.setSelectionRange(caret, caret);
  hideCanned();
  ta.focus();
}

$("text").addEventListener("keydown", (e) => {
  const box = $("canned");
  if (!box.hidden && state.canned.length) {
    if (e.key === "ArrowDown") { e.preventDefault(); state.cannedIndex = (state.cannedIndex + 1) % state.canned.length; renderCanned(); return; }
    if (e.key === "ArrowUp") { e.preventDefault(); state.cannedIndex = (state.cannedIndex - 1 + state.canned.length) % state.canned.length; renderCanned(); return; }
    if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); pickCanned(state.cannedIndex); return; }
  }
  if (e.key === "Escape" && !box.hidden) { e.preventDefault(); hideCanned(); return; }
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendCurrent(); }
});
$("text").addEventListener("input", () => { typing(); updateCanned(); suggestWhileTyping(); });
// Closed a moment after the composer loses the focus (a click on a response lands first), unless it has the
// focus again by then: an older blur's timer closed a popup opened since.
$("text").addEventListener("blur", () => setTimeout(() => { if (document.activeElement !== $("text")) hideCanned(); }, 150));
$("composer").addEventListener("submit", (e) => { e.preventDefault(); sendCurrent(); });
$("attach").addEventListener("change", (e) => {
  const files = [...e.target.files];
  e.target.value = ""; // the same file may be picked again
  attachFiles(files);
});
$("mode-reply").addEventListener("click", () => setMode("reply"));
$("mode-note").addEventListener("click", () => setMode("note"));

// --- actions -----------------------------------------------------------------------------------------------------------------

async function solve() {
  if (!state.current) return;
  try {
    await api("PATCH", `/api/tickets/${state.current}`, { status: "solved" });
    state.mine.delete(state.current);
    state.detail.status = "solved";
    renderHead();
    renderLists();
  } catch (err) { flash(err.message); }
}

async function openTransfer() {
  if (!state.current) return;
  try { state.agents = await api("GET", "/api/agents"); } catch { /* keep the list we have */ }
  const qs = $("transfer-queue");
  qs.replaceChildren(h("option", { value: "", text: "—" }), ...state.queues.map((q) => h("option", { value: q.id, text: q.name })));
  const as = $("transfer-agent");
  as.replaceChildren(h("option", { value: "", text: "—" }),
    ...state.agents.filter((a) => a.id !== state.me.id && a.active).map((a) => h("option", { value: a.id, text: `${a.display_name || a.username} (${a.status})` })));
  $("transfer-dialog").showModal();
}

$("transfer-dialog").addEventListener("close", async () => {
  if ($("transfer-dialog").returnValue !== "ok" || !state.current) return;
  const queue_id = Number($("transfer-queue").value) || null;
  const agent_id = Number($("transfer-agent").value) || null;
  if (!queue_id && !agent_id) { flash("Pick a queue or an agent."); return; }
  try {
    await api("POST", `/api/tickets/${state.current}/transfer`, { queue_id, agent_id });
    state.mine.delete(state.current);
    renderLists();
    flash("Transferred.");
  } catch (err) { flash(err.message); }
});

$("solve-btn").addEventListener("click", solve);
$("transfer-btn").addEventListener("click", openTransfer);
$("status").addEventListener("change", async (e) => {
  try { await api("PUT", "/api/agents/me/status", { status: e.target.value }); } catch (err) { flash(err.message); }
});
$("logout").addEventListener("click", async () => {
  await api("POST", "/api/auth/logout");
  location.href = "/login";
});
$("help-btn").addEventListener("click", () => $("help-dialog").showModal());

function moveConversation(step) {
  const ids = [...document.querySelectorAll("#mine .conv-item")].map((el) => Number(el.dataset.id));
  if (!ids.length) return;
  const i = ids.indexOf(state.current);
  openTicket(ids[(i + step + ids.length) % ids.length]);
}

function focusReply() {
  if (!state.current) return;
  setMode("reply");
  $("text").focus();
}

// The shortcuts, also listed in the help dialog (press ?) and in the buttons' tooltips. Matched on the physical
// key (e.code): on a Mac, Alt+letter types a special character and e.key is not the letter.
const SHORTCUTS = {
  KeyA: () => { const first = state.offers.keys().next(); if (!first.done) accept(first.value); },
  KeyD: () => { const first = state.offers.keys().next(); if (!first.done) decline(first.value); },
  KeyR: focusReply,
  KeyN: () => { setMode(state.mode === "note" ? "reply" : "note"); $("text").focus(); },
  KeyS: () => solve(),
  KeyT: () => openTransfer(),
  ArrowDown: () => moveConversation(1),
  ArrowUp: () => moveConversation(-1),
};

document.addEventListener("keydown", (e) => {
  const typingInField = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement && document.activeElement.tagName);
  if (e.altKey && !e.ctrlKey && !e.metaKey) {
    const action = SHORTCUTS[e.code];
    if (action) { e.preventDefault(); action(); }
    return;
  }
  if (e.key === "?" && !typingInField) { e.preventDefault(); $("help-dialog").showModal(); }
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.current) {
    state.unread.delete(state.current);
    markSeen(state.current, Math.max(0, ...state.shown));
    renderLists();
  }
});

boot().catch((err) => {
  if (err && err.status !== 401) $("conn").textContent = `Could not load: ${err.message}`;
});
