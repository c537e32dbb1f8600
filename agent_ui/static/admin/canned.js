// Canned responses: GET/POST /api/canned, PATCH/DELETE /api/canned/{id}.
import { $, api, showErrors, clearErrors, saved, renderList, ready } from "./admin.js";

const form = $("editor");
let items = [];
let current = null;

function fill(c) {
  current = c;
  clearErrors(form);
  $("heading").textContent = c ? `/${c.shortcut}` : "New canned response";
  form.shortcut.value = c ? c.shortcut : "";
  form.title.value = c ? c.title : "";
  form.text.value = c ? c.text : "";
  $("delete").hidden = !c;
  saved(c ? "" : "Not saved yet");
  renderList($("items"), items, {
    label: (x) => `/${x.shortcut}`, sub: (x) => x.title, isActive: (x) => current && x.id === current.id, onOpen: fill,
  });
}

async function load(openId) {
  items = await api("GET", "/api/canned?limit=100");
  fill(items.find((c) => c.id === openId) || null);
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  saved("Saving…");
  const data = { shortcut: form.shortcut.value.trim(), title: form.title.value.trim(), text: form.text.value };
  try {
    const c = current ? await api("PATCH", `/api/canned/${current.id}`, data) : await api("POST", "/api/canned", data);
    await load(c.id);
    saved(`Saved /${c.shortcut}`);
  } catch (err) {
    showErrors(form, err);
  }
});
$("delete").addEventListener("click", async () => {
  try {
    await api("DELETE", `/api/canned/${current.id}`);
    const gone = current.shortcut;
    await load(null);
    saved(`Deleted /${gone}`);
  } catch (err) {
    showErrors(form, err);
  }
});
$("new").addEventListener("click", () => fill(null));
load(null).then(ready);
