// The contacts pages: search (typo-tolerant, any phone format), the supervisors' list of possible duplicates,
// and one contact across every channel (identities, attributes, notes, one timeline, merge and undo, GDPR
// export and erase). Every string a customer wrote lands in textContent (dom.js), never in markup.
import { api } from "./api.js";
import { clock, h } from "./dom.js";

const $ = (id) => document.getElementById(id);
const contactId = Number(document.body.dataset.contactId) || null;
let me = null;
const supervisor = () => me && (me.role === "supervisor" || me.role === "admin");

function identityText(i) {
  if (i.kind === "webchat" && i.value.startsWith("visitor:")) return "website visitor";
  if (i.kind === "webchat" && i.value.startsWith("user:")) return `site user ${i.value.slice(5)}`;
  return i.value;
}

function hitItem(hit) {
  return h("li", { class: "contact-hit", dataset: { contactId: String(hit.id) } },
    h("a", { href: `/console/contacts/${hit.id}`, text: hit.name || `Contact ${hit.id}` }),
    h("span", { class: "muted small", text: hit.identities.map((i) => `${i.kind} ${identityText(i)}`).join(" · ") }),
    h("span", { class: "why", text: `${hit.matched} (${Math.round(hit.score)}%)` }));
}

async function search(q) {
  const list = $("results");
  list.replaceChildren();
  if (!q.trim()) return;
  let hits, index;
  try {
    [hits, index] = await Promise.all([
      api("GET", `/api/contacts?q=${encodeURIComponent(q)}`), api("GET", "/api/contacts/index")]);
  } catch (e) {
    list.append(h("li", { class: "error", text: e.message }));
    return;
  }
  // The index's first build (a large database, just started): the database answers meanwhile, exactly.
  if (index.state === "building") {
    list.append(h("li", { class: "muted small indexing", text: `Indexing contacts (${index.indexed} of ${index.total}): until it is done, only exact addresses, numbers and whole name words are found, without typos.` }));
  }
  if (!hits.length) list.append(h("li", { class: "muted", text: `No contact matches “${q}”.` }));
  for (const hit of hits) list.append(hitItem(hit));
}

async function loadDuplicates() {
  if (!supervisor()) return;
  const pairs = await api("GET", "/api/contacts/duplicates?limit=200");
  $("dupes-box").hidden = false;
  const list = $("dupes");
  list.replaceChildren();
  if (!pairs.length) list.append(h("li", { class: "muted small", text: "No possible duplicates found." }));
  for (const d of pairs) {
    list.append(h("li", { class: "contact-hit dupe" },
      h("a", { href: `/console/contacts/${d.contact_id}`, text: `Contact ${d.contact_id}` }),
      h("span", { text: "and" }),
      h("a", { href: `/console/contacts/${d.other_id}`, text: d.other_name || `Contact ${d.other_id}` }),
      h("span", { class: "why", text: `${d.score}%: ${d.reasons.join("; ")}` })));
  }
}

// --- one contact ---------------------------------------------------------------------------------------

function showError(e) { $("contact-error").textContent = e ? e.message || String(e) : ""; }

function attrRow(key = "", value = "") {
  const row = h("div", { class: "attr-row" },
    h("input", { class: "attr-key", "aria-label": "Attribute name", maxlength: 100, value: key }),
    h("input", { class: "attr-value", "aria-label": "Attribute value", maxlength: 2000, value: String(value ?? "") }),
    h("button", { class: "btn", type: "button", text: "Remove", onclick: () => row.remove() }));
  return row;
}

function parseValue(text) {
  if (text === "true") return true;
  if (text === "false") return false;
  if (/^-?\d{1,9}$/.test(text)) return Number(text);
  return text;
}

function timelineItems(c) {
  const items = [];
  for (const t of c.tickets) for (const m of t.messages) items.push({ t, m });
  items.sort((a, b) => (a.m.created_at < b.m.created_at ? -1 : a.m.created_at > b.m.created_at ? 1 : a.m.id - b.m.id));
  return items.map(({ t, m }) => {
    const kind = m.direction === "note" ? "note" : m.direction === "inbound" ? "in" : "out";
    const who = kind === "in" ? (c.name || m.sender || "Customer") : kind === "note" ? "Internal note" : "Agent";
    return h("li", { class: kind, dataset: { ticketId: String(t.id) } },
      h("div", { class: "meta" },
        h("span", { class: `chan chan-${m.channel}`, text: m.channel }),
        h("span", { text: `Ticket #${t.id}${t.subject ? ` · ${t.subject}` : ""} · ${t.status}` }),
        h("span", { text: who }),
        h("time", { datetime: m.created_at, text: clock(m.created_at) })),
      m.subject ? h("div", { class: "small", text: `Subject: ${m.subject}` }) : null,
      h("div", { class: "body", text: m.text || (m.attachments.length ? "" : "—") }),
      m.attachments.length ? h("div", { class: "muted small", text: m.attachments.map((a) => `📎 ${a.filename}`).join("  ") }) : null);
  });
}

async function loadContact() {
  let c;
  try {
    c = await api("GET", `/api/contacts/${contactId}`);
  } catch (e) {
    showError(e);
    return;
  }
  showError(null);
  document.title = `${c.name || `Contact ${c.id}`} · Switchboard`;
  const gone = $("gone");
  gone.hidden = !c.deleted_at;
  if (c.erased_at) gone.replaceChildren("This contact's personal data was erased.");
  else if (c.merged_into_id) {
    gone.replaceChildren("This contact was merged into ",
      h("a", { href: `/console/contacts/${c.merged_into_id}`, text: `contact ${c.merged_into_id}` }), ".");
  }
  $("name").value = c.name || "";
  $("identities").replaceChildren(...c.identities.map((i) => h("li", {},
    h("span", { class: "muted", text: i.kind }),
    h("span", { text: identityText(i) }),
    h("span", { class: "muted small", text: i.channels.length ? `(${i.channels.join(", ")})` : "" }),
    h("span", { class: `badge ${i.verified ? "verified" : "unverified"}`, text: i.verified ? "verified" : "not verified" }))));
  if (!c.identities.length) $("identities").append(h("li", { class: "muted small", text: "None." }));
  $("attrs").replaceChildren(...Object.entries(c.attributes).map(([k, v]) => attrRow(k, v)));

  $("duplicates").replaceChildren(...c.duplicates.map((d) => h("li", { class: "contact-hit dupe", dataset: { otherId: String(d.other_id) } },
    h("a", { href: `/console/contacts/${d.other_id}`, text: d.other_name || `Contact ${d.other_id}` }),
    h("span", { class: "why", text: `${d.score}%: ${d.reasons.join("; ")}` }),
    supervisor() ? h("button", { class: "btn primary merge-btn", type: "button", text: "Merge into this contact",
      onclick: () => merge(d.other_id) }) : null)));
  $("no-duplicates").hidden = c.duplicates.length > 0;

  $("merges").replaceChildren(...c.merges.map((m) => h("li", { class: "contact-hit" },
    h("span", { text: `Contact ${m.merged_id} merged into contact ${m.survivor_id}` }),
    h("time", { class: "muted small", datetime: m.created_at, text: clock(m.created_at) }),
    m.undone_at ? h("span", { class: "muted small", text: "undone" })
      : supervisor() && !m.moved.erased ? h("button", { class: "btn undo-btn", type: "button", text: "Undo merge", onclick: () => undo(m.id) }) : null)));
  if (!c.merges.length) $("merges").append(h("li", { class: "muted small", text: "None." }));

  $("notes").replaceChildren(...c.notes.map((n) => h("li", {}, h("div", { text: n.text }),
    h("time", { class: "muted small", datetime: n.created_at, text: clock(n.created_at) }))));
  const items = timelineItems(c);
  $("timeline").replaceChildren(...(items.length ? items : [h("li", { class: "muted", text: "No conversations you may see." })]));

  const exp = $("export");
  exp.hidden = !supervisor();
  exp.href = `/api/contacts/${c.id}/export`;
  exp.setAttribute("download", `contact-${c.id}.json`);
  $("erase").hidden = !(me.role === "admin") || Boolean(c.deleted_at);
  for (const el of document.querySelectorAll("#name-form input, #name-form button, #attrs-form input, #attrs-form button, #note-form textarea, #note-form button")) {
    el.disabled = Boolean(c.deleted_at);
  }
}

async function act(fn) {
  try {
    await fn();
    await loadContact();
  } catch (e) {
    showError(e);
  }
}

const merge = (otherId) => act(() => api("POST", `/api/contacts/${contactId}/merge`, { contact_id: otherId }));
const undo = (mergeId) => act(() => api("POST", `/api/contacts/merges/${mergeId}/undo`));

function wireContact() {
  $("name-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("PATCH", `/api/contacts/${contactId}`, { name: $("name").value }));
  });
  $("add-attr").addEventListener("click", () => $("attrs").append(attrRow()));
  $("attrs-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const attributes = {};
    for (const row of $("attrs").querySelectorAll(".attr-row")) {
      const key = row.querySelector(".attr-key").value.trim();
      if (key) attributes[key] = parseValue(row.querySelector(".attr-value").value);
    }
    act(() => api("PATCH", `/api/contacts/${contactId}`, { attributes }));
  });
  $("note-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("note-text").value.trim();
    if (!text) return;
    act(async () => {
      await api("POST", `/api/contacts/${contactId}/notes`, { text });
      $("note-text").value = "";
    });
  });
  // Erase asks twice, in the page (no browser dialog): the button turns into a confirmation.
  $("erase").addEventListener("click", () => {
    const btn = $("erase");
    if (btn.dataset.armed !== "yes") {
      btn.dataset.armed = "yes";
      btn.textContent = "Really erase all personal data?";
      return;
    }
    btn.dataset.armed = "";
    btn.textContent = "Erase…";
    act(() => api("POST", `/api/contacts/${contactId}/erase`));
  });
}

async function boot() {
  me = await api("GET", "/api/auth/me");
  if (contactId) {
    wireContact();
    await loadContact();
  } else {
    await Promise.all([search($("q").value), loadDuplicates()]);
  }
  document.body.dataset.ready = "yes";
}

boot();
