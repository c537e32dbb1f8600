// Messaging windows in the composer (GET /api/tickets/{id}/window): how long the customer's window stays open
// (WhatsApp, Messenger, Instagram), the HUMAN_AGENT extension, and once it is closed the approved templates
// the agent may send instead of free text. And the channels' health alerts (expired tokens, silent webhooks).
import { api } from "./api.js";
import { h } from "./dom.js";

const $ = (id) => document.getElementById(id);

const win = {
  ticketId: null,
  state: null, // the server's answer
  fetchedAt: 0, // Date.now() when it arrived: seconds_left counts from then
  mode: "reply",
  onSent: null, // (message) => void: a template reply was stored
};

// How a duration reads in the composer: "23 h 59 min", "6 d 23 h", "4 min 10 s".
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400), hours = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${hours} h`;
  if (hours > 0) return `${hours} h ${m} min`;
  if (m > 0) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

function left() {
  const st = win.state;
  if (!st || st.seconds_left === null || st.seconds_left === undefined) return null;
  return st.seconds_left - (Date.now() - win.fetchedAt) / 1000;
}

export async function showWindow(ticketId, onSent) {
  win.ticketId = ticketId;
  win.onSent = onSent;
  let st;
  try { st = await api("GET", `/api/tickets/${ticketId}/window`); } catch { st = null; }
  if (win.ticketId !== ticketId) return;
  win.state = st;
  win.fetchedAt = Date.now();
  renderTemplates();
  render();
}

export function windowMode(mode) {
  win.mode = mode;
  render();
}

// Called every second: the countdown moves, and a window that just closed is asked again (the server decides).
export function tickWindow() {
  if (!win.state || !["open", "tagged"].includes(win.state.status)) return;
  const s = left();
  if (s !== null && s <= 0) { showWindow(win.ticketId, win.onSent); return; }
  render();
}

function render() {
  const st = win.state;
  const box = $("window");
  const closed = st && st.status === "closed";
  const replying = win.mode === "reply";
  if (!st || st.status === "none") {
    box.hidden = true;
    $("templates").hidden = true;
    setFreeText(true);
    return;
  }
  box.hidden = false;
  box.className = `window ${st.status}`;
  const name = { whatsapp: "WhatsApp", messenger: "Messenger", instagram: "Instagram" }[st.channel] || st.channel;
  if (st.status === "open") {
    box.textContent = `${name} window open: ${duration(left())} left to reply`;
  } else if (st.status === "tagged") {
    box.textContent = `${name} 24-hour window closed; as a human agent (${st.tag}) you may reply for ${duration(left())} more`;
  } else {
    box.textContent = st.templates_allowed
      ? `${name} window closed: free text cannot be sent. Pick an approved template below.`
      : `${name} window closed: ${st.reason}`;
  }
  $("templates").hidden = !(closed && replying && st.templates_allowed && st.templates.length);
  setFreeText(!(closed && replying));
}

// Outside the window free text is refused by the server anyway: the composer says so before the agent types.
function setFreeText(allowed) {
  const text = $("text");
  // A solved ticket's composer stays off whatever the window (console.js updateComposer sets data-shut).
  const composer = $("composer");
  composer.dataset.windowShut = allowed ? "" : "1";
  const off = !allowed || composer.dataset.shut === "1";
  text.disabled = off;
  $("send").disabled = off;
  text.placeholder = allowed
    ? "Write a reply… Enter sends, Shift+Enter for a new line, / for canned responses"
    : "The customer's messaging window is closed: free text cannot be sent";
}

// The picker as last drawn ("ticket:templates"): the window is asked again on the ticket's events, and an
// unchanged list keeps the agent's choice and the variables typed so far.
let drawn = "";

function renderTemplates() {
  const st = win.state;
  const select = $("template-name");
  const list = (st && st.templates) || [];
  const key = `${win.ticketId}:${JSON.stringify(list)}`;
  if (key === drawn) return;
  drawn = key;
  select.replaceChildren(...list.map((t) => h("option", { value: t.name, text: `${t.name} (${t.language})` })));
  renderVariables();
}

function chosen() {
  const list = (win.state && win.state.templates) || [];
  return list.find((t) => t.name === $("template-name").value) || list[0] || null;
}

function placeholders(body) {
  return Math.max(0, ...[...body.matchAll(/\{\{\s*(\d+)\s*\}\}/g)].map((m) => Number(m[1])));
}

function renderVariables() {
  const t = chosen();
  const vars = $("template-vars");
  if (!t) { vars.replaceChildren(); $("template-preview").textContent = ""; return; }
  const n = placeholders(t.body);
  vars.replaceChildren(...Array.from({ length: n }, (_, i) =>
    h("label", { class: "template-var" }, `{{${i + 1}}} `,
      h("input", { type: "text", "data-var": i + 1, "aria-label": `Template variable ${i + 1}`, oninput: preview }))));
  preview();
}

function values() {
  return [...document.querySelectorAll("#template-vars input")].map((el) => el.value.trim());
}

function preview() {
  const t = chosen();
  if (!t) return;
  const v = values();
  $("template-preview").textContent = t.body.replace(/\{\{\s*(\d+)\s*\}\}/g, (_, i) => v[Number(i) - 1] || `{{${i}}}`);
  $("template-send").disabled = v.some((x) => !x);
}

async function sendTemplate() {
  const t = chosen();
  if (!t || !win.ticketId) return;
  const id = win.ticketId;
  $("template-send").disabled = true;
  try {
    const m = await api("POST", `/api/tickets/${id}/reply`, { template: { name: t.name, variables: values() } });
    $("compose-error").textContent = "";
    for (const el of document.querySelectorAll("#template-vars input")) el.value = "";
    if (win.onSent) win.onSent(m);
  } catch (err) {
    $("compose-error").textContent = err.message;
  } finally {
    preview();
  }
}

$("template-name").addEventListener("change", renderVariables);
$("template-send").addEventListener("click", sendTemplate);

// --- channel health -------------------------------------------------------------------------------------------------

const alerts = new Map(); // "channel:account" -> account health

export async function loadHealth() {
  let list = [];
  try { list = await api("GET", "/api/social/health"); } catch { list = []; }
  alerts.clear();
  for (const a of list) alerts.set(`${a.channel}:${a.account}`, a);
  renderHealth();
}

export function healthEvent(d) {
  const key = `${d.channel}:${d.account}`;
  if (d.status === "ok") alerts.delete(key);
  else alerts.set(key, d);
  renderHealth();
}

function renderHealth() {
  const box = $("health-alert");
  box.hidden = alerts.size === 0;
  box.replaceChildren(...[...alerts.values()].map((a) =>
    h("p", { text: `${a.channel} ${a.account}: ${a.detail || a.status}` })));
  renderTicketHealth();
}

// The open conversation's own account (the page, number or bot its customer wrote to: the recipient of their
// last message) when it has a problem: the composer says what it means for this reply, above the reply box.
let ticketAccount = null; // {keys: ["channel:account", ...]}

const CONSEQUENCE = {
  token_expired: "Replies on this conversation cannot be delivered until it is reconnected in Admin.",
  silent: "The customer's new messages may not be arriving.",
  failing: "The provider keeps failing: replies are retried.",
};

export function ticketHealth(t) {
  const inbound = [...(t.messages || [])].reverse().find((m) => m.direction === "inbound" && m.recipient);
  const channel = t.reply_channel || t.channel;
  // A comment's account is its page or Instagram account, whose health is kept under messenger or instagram.
  const channels = channel === "comments" ? ["messenger", "instagram"] : [channel];
  ticketAccount = inbound ? { keys: channels.map((c) => `${c}:${inbound.recipient}`) } : null;
  renderTicketHealth();
}

function renderTicketHealth() {
  const box = $("ticket-health");
  const a = ticketAccount && ticketAccount.keys.map((k) => alerts.get(k)).find(Boolean);
  box.hidden = !a;
  box.textContent = a
    ? `This conversation's ${a.channel} account ${a.account}: ${a.detail || a.status}. `
      + `${CONSEQUENCE[a.status] || ""}`.trim()
    : "";
}
