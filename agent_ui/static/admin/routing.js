// Routing rules: GET/PUT /api/routing/rules, and POST /api/routing/dry-run with the draft on the page.
import { $, api, h, showErrors, clearErrors, saved, parseLevels, formatLevels, splitList, ready } from "./admin.js";

const form = $("editor");
const dry = $("dry");
const CHANNELS = [...dry.channel.options].map((o) => o.value);
const PRIORITIES = ["", "low", "normal", "high", "urgent"];
let queues = [];

function field(n, key, label, input, hint) {
  return h("label", { "data-field": `rules.${n}.${key}` }, label, hint ? h("span", { class: "hint", text: hint }) : null, input);
}

function queueSelect(selected, blank, attrs = {}) {
  const sel = h("select", attrs, blank ? h("option", { value: "", text: blank }) : null,
    ...queues.map((q) => h("option", { value: q.name, text: q.name })));
  if (selected && !queues.some((q) => q.name === selected)) sel.append(h("option", { value: selected, text: selected }));
  sel.value = selected || "";
  return sel;
}

function parseAttrs(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i < 1) continue;
    const raw = line.slice(i + 1).trim();
    let v = raw;
    if (raw === "true" || raw === "false") v = raw === "true";
    else if (/^-?\d+(\.\d+)?$/.test(raw)) v = Number(raw);
    out[line.slice(0, i).trim()] = v;
  }
  return out;
}

const formatAttrs = (attrs) => Object.entries(attrs || {}).map(([k, v]) => `${k}=${v}`).join("\n");

function ruleRow(rule = { name: "", when: {}, queue: "" }) {
  const n = $("rules").children.length;
  const w = rule.when || {};
  const channels = h("div", { class: "checks", "data-key": "channel" }, ...CHANNELS.map((c) => h("label", {},
    h("input", { type: "checkbox", value: c, checked: (w.channel || []).includes(c) }), ` ${c}`)));
  const priority = h("select", { "data-key": "priority" }, ...PRIORITIES.map((p) => h("option", { value: p, text: p || "(unchanged)" })));
  priority.value = rule.priority || "";
  const li = h("li", { class: "step rule", "data-field": `rules.${n}` },
    h("div", { class: "row" },
      field(n, "name", "Rule name", h("input", { "data-key": "name", value: rule.name })),
      field(n, "queue", "Send to queue", queueSelect(rule.queue, "(choose a queue)", { "data-key": "queue" })),
      field(n, "priority", "Set priority", priority)),
    h("fieldset", { "data-field": `rules.${n}.when` }, h("legend", { text: "When" }),
      h("div", { "data-field": `rules.${n}.when.channel` }, h("span", { class: "hint", text: "Channel (none checked: any)" }),
        channels),
      h("div", { class: "row" },
        field(n, "when.keywords", "Any of the words", h("input", { "data-key": "keywords", value: (w.keywords || []).join(", ") }), "comma-separated"),
        field(n, "when.recipient", "Came in on", h("input", { "data-key": "recipient", value: (w.recipient || []).join(", ") }), "addresses or numbers"),
        field(n, "when.language", "Language", h("input", { "data-key": "language", value: (w.language || []).join(", ") }))),
      h("div", { class: "row" },
        field(n, "when.ivr_choice", "Phone menu choice", h("input", { "data-key": "ivr_choice", value: (w.ivr_choice || []).join(", ") })),
        field(n, "when.contact", "Contact attributes", h("textarea", { "data-key": "contact", rows: "2" }, formatAttrs(w.contact)), "key=value per line"))),
    field(n, "skills", "Add required skills", h("textarea", { "data-key": "skills", rows: "2" }, formatLevels(rule.skills)), "skill level per line"),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "btn", text: "Move up", onclick: () => { if (li.previousElementSibling) li.previousElementSibling.before(li); renumber(); } }),
      h("button", { type: "button", class: "btn", text: "Move down", onclick: () => { if (li.nextElementSibling) li.nextElementSibling.after(li); renumber(); } }),
      h("button", { type: "button", class: "btn danger", text: "Remove rule", onclick: () => { li.remove(); renumber(); } })));
  return li;
}

function renumber() {
  [...$("rules").children].forEach((li, n) => {
    li.dataset.field = `rules.${n}`;
    li.querySelectorAll("[data-field]").forEach((el) => { el.dataset.field = el.dataset.field.replace(/^rules\.\d+/, `rules.${n}`); });
  });
}

function draft() {
  const rules = [...$("rules").children].map((li) => {
    const get = (key) => li.querySelector(`[data-key="${key}"]`);
    const when = {};
    const chans = [...get("channel").querySelectorAll("input:checked")].map((c) => c.value);
    if (chans.length) when.channel = chans;
    for (const key of ["keywords", "recipient", "language", "ivr_choice"]) {
      const values = splitList(get(key).value);
      if (values.length) when[key] = values;
    }
    const contact = parseAttrs(get("contact").value);
    if (Object.keys(contact).length) when.contact = contact;
    const rule = { name: get("name").value.trim(), when, queue: get("queue").value };
    if (get("priority").value) rule.priority = get("priority").value;
    const skills = parseLevels(get("skills").value);
    if (Object.keys(skills).length) rule.skills = skills;
    return rule;
  });
  const out = { rules };
  if (form.default_queue.value) out.default_queue = form.default_queue.value;
  return out;
}

async function load() {
  const [rules, qs] = await Promise.all([api("GET", "/api/routing/rules"), api("GET", "/api/queues")]);
  queues = qs;
  form.default_queue.replaceWith(queueSelect(rules.default_queue, "(none)", { name: "default_queue" }));
  $("rules").replaceChildren(...(rules.rules || []).map((r, n) => { const li = ruleRow(r); li.dataset.field = `rules.${n}`; return li; }));
  renumber();
}

async function runDry(target) {
  // The draft's errors land on the rules form (its loc is body.rules...), the message's on the dry-run form.
  clearErrors(form);
  clearErrors(dry);
  const message = {
    channel: dry.channel.value, recipient: dry.recipient.value.trim() || null, queue: dry.queue.value.trim() || null,
    ivr_choice: dry.ivr_choice.value.trim() || null, language: dry.language.value.trim() || null,
    contact: parseAttrs(dry.contact.value), subject: dry.subject.value || null, text: dry.text.value,
  };
  try {
    return await api("POST", "/api/routing/dry-run", { message, rules: draft() });
  } catch (err) {
    const detail = err.body && Array.isArray(err.body.detail) ? err.body.detail : [];
    const ofRules = detail.filter((e) => e.loc && e.loc[1] === "rules");
    if (ofRules.length) {
      err.body = { ...err.body, detail: ofRules.map((e) => ({ ...e, loc: ["body", ...e.loc.slice(2)] })) };
      showErrors(form, err);
      if (target === dry) dry.querySelector(".form-error").textContent = "Fix the rules above first.";
    } else {
      showErrors(target, err);
    }
    return null;
  }
}

function showAnswer(a) {
  const box = $("answer");
  box.hidden = false;
  box.replaceChildren(
    h("p", { class: "verdict", text: a.queue ? `This message would go to queue ${a.queue}` : "This message would go to no queue" }),
    h("p", { text: `Because ${a.reason}.` }),
    a.priority ? h("p", { text: `Priority set to ${a.priority}.` }) : null,
    Object.keys(a.skills).length ? h("p", { text: `Skills required: ${formatLevels(a.skills).replace(/\n/g, ", ")}.` }) : null,
    a.steps.length ? h("ol", {}, ...a.steps.map((s) => h("li", { class: s.matched ? "hit" : "" },
      `${s.rule}: ${s.matched ? "matches" : "skipped"} — ${s.reason}`))) : null);
}

dry.addEventListener("submit", async (e) => {
  e.preventDefault();
  const a = await runDry(dry);
  if (a) showAnswer(a);
});
$("check").addEventListener("click", async () => {
  const a = await runDry(form);
  if (a) saved("The rules are valid (not saved yet)");
});
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  saved("Saving…");
  clearErrors(form);
  try {
    await api("PUT", "/api/routing/rules", draft());
    await load();
    saved("Rules saved");
  } catch (err) {
    showErrors(form, err);
  }
});
$("add-rule").addEventListener("click", () => { $("rules").append(ruleRow()); renumber(); });
load().then(ready);
