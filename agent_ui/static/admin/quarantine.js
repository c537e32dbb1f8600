// Quarantine: what arrived but could not become a message. Social channels through /api/social/quarantine
// (filters, a page at a time, show, try again, discard), and their webhook batches that failed through
// /api/social/inbox (try now, discard); mail through /api/email/quarantine (download, try again). A kept message is shown as text in a <pre>, never as markup.
import { $, api, h, showErrors, clearErrors, saved, ready } from "./admin.js";
import { clock } from "../console/dom.js";

const form = $("filters");
const PAGE = 50;
const NAMES = { whatsapp: "WhatsApp", messenger: "Messenger", instagram: "Instagram", comments: "Page comment", telegram: "Telegram" };
let offset = 0;

function query() {
  const q = new URLSearchParams();
  if (form.channel.value) q.set("channel", form.channel.value);
  if (form.account.value.trim()) q.set("account", form.account.value.trim());
  q.set("offset", offset);
  q.set("limit", PAGE);
  return q;
}

const key = (m) => ({ channel: m.channel, external_id: m.external_id });

async function act(what, m) {
  clearErrors(form);
  try {
    if (what === "reprocess") {
      const r = await api("POST", "/api/social/quarantine/reprocess", key(m));
      saved(r.ok ? `${m.external_id}: now message ${r.message_id} of ticket #${r.ticket_id}` : `${m.external_id} stays: ${r.reason}`);
    } else {
      await api("POST", "/api/social/quarantine/discard", key(m));
      saved(`${m.external_id}: discarded`);
    }
    $("detail").hidden = true;
    await show(false);
  } catch (err) {
    showErrors(form, err);
  }
}

async function open(m) {
  try {
    const d = await api("GET", `/api/social/quarantine/message?${new URLSearchParams(key(m))}`);
    $("detail-h").textContent = `${NAMES[d.channel] || d.channel} message ${d.external_id}`;
    $("detail-reason").textContent = d.reason;
    $("raw").textContent = d.raw;
    $("detail").hidden = false;
  } catch (err) {
    showErrors(form, err);
  }
}

function row(m) {
  const button = (text, onclick) => h("button", { type: "button", class: "btn", text, onclick });
  return h("tr", { dataset: { key: `${m.channel}:${m.external_id}` } },
    h("td", { text: clock(m.created_at) }), h("td", { text: NAMES[m.channel] || m.channel }),
    h("td", { text: m.account }), h("td", { text: m.sender }), h("td", { text: m.text }), h("td", { text: m.reason }),
    h("td", {}, button("Show", () => open(m)), " ", button("Try again", () => act("reprocess", m)), " ",
      button("Discard", () => act("discard", m))));
}

async function show(reset) {
  if (reset) offset = 0;
  try {
    const page = await api("GET", `/api/social/quarantine?${query()}`);
    $("social").replaceChildren(...(page.items.length ? page.items.map(row)
      : [h("tr", {}, h("td", { colspan: 7, class: "muted", text: "Nothing in quarantine." }))]));
    $("prev").hidden = offset === 0;
    $("next").hidden = offset + page.items.length >= page.total;
    $("range").textContent = page.total ? `${offset + 1}–${offset + page.items.length} of ${page.total}` : "";
  } catch (err) {
    showErrors(form, err);
  }
}

async function showEmail() {
  let items;
  try {
    items = await api("GET", "/api/email/quarantine?limit=100");
  } catch (err) {
    $("email-section").hidden = err.status === 404; // no email channel on this hub
    return;
  }
  $("email").replaceChildren(...(items.length ? items.map((q) => h("tr", {},
    h("td", { text: clock(q.created_at) }), h("td", { text: q.mailbox }), h("td", { text: q.error }),
    h("td", {}, h("a", { href: `/api/email/quarantine/${q.id}/raw`, text: "Download" }), " ",
      h("button", { type: "button", class: "btn", text: "Try again", onclick: async () => {
        try {
          const r = await api("POST", `/api/email/quarantine/${q.id}/reprocess`);
          saved(r.ok ? `mail ${q.id}: now message ${r.message_id}` : `mail ${q.id} stays: ${r.error}`);
        } catch (err) {
          saved(`mail ${q.id}: ${err.message}`);
        }
        await showEmail();
      } }))))
    : [h("tr", {}, h("td", { colspan: 4, class: "muted", text: "Nothing in quarantine." }))]));
}

// Webhook batches kept in the social inbox (/api/social/inbox): how many wait, and the failing ones.
async function showInbox() {
  let st;
  try {
    st = await api("GET", "/api/social/inbox");
  } catch (err) {
    $("inbox-section").hidden = err.status === 404; // no social channel on this hub
    return;
  }
  $("inbox-summary").textContent = st.waiting
    ? `${st.waiting} batch${st.waiting === 1 ? "" : "es"} waiting to be stored, ${st.failing.length} of them failing.`
    : "No batch waiting.";
  const act = async (b, what) => {
    try {
      await api("POST", `/api/social/inbox/${b.id}/${what}`);
      saved(what === "retry" ? `batch ${b.id}: being tried again` : `batch ${b.id}: discarded`);
    } catch (err) {
      saved(`batch ${b.id}: ${err.message}`);
    }
    await showInbox();
  };
  const button = (text, onclick) => h("button", { type: "button", class: "btn", text, onclick });
  $("inbox").replaceChildren(...(st.failing.length ? st.failing.map((b) => h("tr", { dataset: { batch: String(b.id) } },
    h("td", { text: clock(b.received_at) }), h("td", { text: b.provider === "meta" ? "Meta" : "Telegram" }),
    h("td", { text: b.account || "—" }), h("td", { text: String(b.attempts) }), h("td", { text: b.error || "" }),
    h("td", { text: b.next_try_at ? clock(b.next_try_at) : "now" }),
    h("td", {}, button("Try now", () => act(b, "retry")), " ", button("Discard", () => act(b, "discard")))))
    : [h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No batch is failing." }))]));
}

form.addEventListener("submit", (e) => { e.preventDefault(); show(true); });
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); show(false); });
$("next").addEventListener("click", () => { offset += PAGE; show(false); });
Promise.all([show(true), showInbox(), showEmail()]).then(ready);
