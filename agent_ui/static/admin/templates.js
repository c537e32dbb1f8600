// Message templates: GET/POST /api/templates, PATCH/DELETE /api/templates/{id}. The variables a body takes
// ({{1}}, {{2}}...) are listed as it is typed, with a preview of what the customer reads.
import { $, api, showErrors, clearErrors, saved, renderList, ready } from "./admin.js";

const form = $("editor");
const PLACEHOLDER = /\{\{\s*([1-9][0-9]?)\s*\}\}/g;
let items = [];
let current = null;

function numbers(body) {
  return [...new Set([...body.matchAll(PLACEHOLDER)].map((m) => Number(m[1])))].sort((a, b) => a - b);
}

function describe() {
  const body = form.body.value;
  const found = numbers(body);
  $("variables").textContent = found.length
    ? `Variables: ${found.map((n) => `{{${n}}}`).join(", ")} (the agent fills in ${found.length})`
    : "No variables: the text is sent as it is.";
  $("preview").textContent = body.replace(PLACEHOLDER, (_, n) => `[value ${n}]`);
}

function fill(t) {
  current = t;
  clearErrors(form);
  $("heading").textContent = t ? `${t.name} (${t.language})` : "New template";
  form.name.value = t ? t.name : "";
  form.language.value = t ? t.language : "en_US";
  form.body.value = t ? t.body : "";
  form.content_sid.value = t && t.content_sid ? t.content_sid : "";
  $("delete").hidden = !t;
  saved(t ? "" : "Not saved yet");
  describe();
  renderList($("items"), items, {
    label: (x) => x.name,
    sub: (x) => `${x.language} · ${x.variables} variable${x.variables === 1 ? "" : "s"}`,
    isActive: (x) => current && x.id === current.id,
    onOpen: fill,
  });
}

async function load(openId) {
  items = await api("GET", "/api/templates");
  fill(items.find((t) => t.id === openId) || null);
}

form.body.addEventListener("input", describe);
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  saved("Saving…");
  const data = {
    name: form.name.value.trim(),
    language: form.language.value.trim(),
    body: form.body.value,
    content_sid: form.content_sid.value.trim() || null,
  };
  try {
    const t = current
      ? await api("PATCH", `/api/templates/${current.id}`, data)
      : await api("POST", "/api/templates", { ...data, channels: ["whatsapp"] });
    await load(t.id);
    saved(`Saved ${t.name}`);
  } catch (err) {
    showErrors(form, err);
  }
});
$("delete").addEventListener("click", async () => {
  try {
    await api("DELETE", `/api/templates/${current.id}`);
    const gone = current.name;
    await load(null);
    saved(`Deleted ${gone}`);
  } catch (err) {
    showErrors(form, err);
  }
});
$("new").addEventListener("click", () => fill(null));
load(null).then(ready);
