// Mailboxes (the email channel): /api/email/mailboxes (list, create, change, delete) and /api/email/quarantine.
// Passwords are write-only: the API never answers them; left empty on an edit they stay as they are.
import { $, api, h, showErrors, clearErrors, saved, numberOrNull, renderList, ready } from "./admin.js";
import { clock } from "../console/dom.js";

const form = $("editor");
const TEXT = ["address", "imap_host", "folder", "username", "smtp_host", "smtp_security"];
let boxes = [];
let queues = [];
let current = null;

function fill(m) {
  current = m;
  clearErrors(form);
  const readOnly = !!m && m.source !== "api";
  $("heading").textContent = m ? `Mailbox ${m.name}` : "New mailbox";
  $("readonly").hidden = !readOnly;
  form.name.value = m ? m.name : "";
  form.name.disabled = !!m;
  form.queue.replaceChildren(...queues.map((q) => h("option", { value: q.name, text: q.name })));
  form.queue.value = m ? m.queue : (queues[0] ? queues[0].name : "");
  for (const k of TEXT) form[k].value = m ? m[k] : form[k].defaultValue || (k === "smtp_security" ? "starttls" : "");
  form.imap_port.value = m ? m.imap_port : 993;
  form.smtp_port.value = m ? m.smtp_port : 587;
  form.imap_tls.checked = m ? m.imap_tls : true;
  form.smtp_username.value = m && m.smtp_username ? m.smtp_username : "";
  form.password.value = "";
  form.smtp_password.value = "";
  $("pw-hint").textContent = m ? "empty: unchanged" : "";
  form.querySelectorAll("input, select, button[type=submit]").forEach((el) => { el.disabled = readOnly || (el === form.name && !!m); });
  $("delete").hidden = !m || readOnly;
  $("state").textContent = m ? `${m.running ? "Running" : "Stopped"}${m.last_uid ? `, last UID ${m.last_uid}` : ""}${m.error ? ` — ${m.error}` : ""}` : "";
  saved(m ? "" : "Not saved yet");
  renderList($("items"), boxes, {
    label: (b) => b.name, sub: (b) => `${b.address} → ${b.queue}${b.source === "api" ? "" : " (settings)"}`,
    isActive: (b) => current && b.name === current.name, onOpen: fill,
  });
}

function body() {
  const data = { queue: form.queue.value, imap_tls: form.imap_tls.checked,
    imap_port: numberOrNull(form.imap_port), smtp_port: numberOrNull(form.smtp_port),
    smtp_username: form.smtp_username.value.trim() || null };
  for (const k of TEXT) data[k] = form[k].value.trim();
  if (form.password.value || !current) data.password = form.password.value;
  if (form.smtp_password.value) data.smtp_password = form.smtp_password.value;
  if (!current) data.name = form.name.value.trim();
  return data;
}

async function loadQuarantine() {
  const items = await api("GET", "/api/email/quarantine?limit=100");
  $("quarantine").replaceChildren(...items.map((q) => h("tr", {},
    h("td", { text: clock(q.created_at) }), h("td", { text: q.mailbox }), h("td", { text: q.error }),
    h("td", {}, h("a", { href: `/api/email/quarantine/${q.id}/raw`, text: "Download" }), " ",
      h("button", { type: "button", class: "btn", text: "Try again", onclick: async () => {
        await api("POST", `/api/email/quarantine/${q.id}/reprocess`);
        await loadQuarantine();
      } })))));
}

async function load(openName) {
  [boxes, queues] = await Promise.all([api("GET", "/api/email/mailboxes"), api("GET", "/api/queues")]);
  fill(boxes.find((b) => b.name === openName) || null);
  await loadQuarantine();
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  saved("Saving…");
  try {
    const m = current
      ? await api("PATCH", `/api/email/mailboxes/${encodeURIComponent(current.name)}`, body())
      : await api("POST", "/api/email/mailboxes", body());
    await load(m.name);
    saved(`Saved ${m.name}`);
  } catch (err) {
    showErrors(form, err);
  }
});
$("delete").addEventListener("click", async () => {
  try {
    const gone = current.name;
    await api("DELETE", `/api/email/mailboxes/${encodeURIComponent(gone)}`);
    await load(null);
    saved(`Deleted ${gone}`);
  } catch (err) {
    showErrors(form, err);
  }
});
$("new").addEventListener("click", () => fill(null));
load(null).then(ready);
