// The knowledge base's admin page: list, write and edit articles with a preview, read and restore versions, see
// (and drop) the wordings the ranking learned from agents' feedback.
// Everything goes through /api/kb; text lands in the DOM as text, except the preview, which is the server's
// HTML sanitized with nh3 (POST /api/kb/preview) under a CSP that runs no inline script.
import { api } from "../console/api.js";
import { h, clock } from "../console/dom.js";

const $ = (id) => document.getElementById(id);
const form = $("editor");
let articles = [];
let current = null; // the article being edited (null: a new one)

async function loadList() {
  articles = await api("GET", "/api/kb/articles?limit=500");
  renderList();
}

function renderList() {
  const q = $("filter").value.trim().toLowerCase();
  $("articles").replaceChildren(...articles
    .filter((a) => !q || a.title.toLowerCase().includes(q) || a.slug.includes(q))
    .map((a) => h("li", {}, h("button", {
      class: current && current.id === a.id ? "active" : "", type: "button",
      text: `${a.title} · ${a.locale} · ${a.status}`, onclick: () => open(a.id),
    }))));
}

function fill(a) {
  form.title.value = a ? a.title : "";
  form.slug.value = a ? a.slug : "";
  form.slug.disabled = !!a;
  form.locale.value = a ? a.locale : "en";
  form.locale.disabled = !!a;
  form.category.value = a ? a.category : "General";
  form.status.value = a ? a.status : "draft";
  form.tags.value = a ? a.tags.join(", ") : "";
  form.phrasings.value = a ? a.phrasings.join("\n") : "";
  form.body.value = a ? a.body : "";
  $("delete").hidden = !a;
  $("error").textContent = "";
  $("saved").textContent = a ? `Version ${a.version}, saved ${clock(a.updated_at)}` : "New article";
}

async function open(id) {
  current = await api("GET", `/api/kb/articles/${id}`);
  fill(current);
  renderList();
  await preview();
  await loadVersions();
  await loadLearned();
}

// Learned wordings are not the article's own phrasings (the textarea): they come from feedback, so they are
// listed apart, marked "learned", each with a button that makes the ranking unlearn it.
async function loadLearned() {
  const learned = current ? await api("GET", `/api/kb/articles/${current.id}/learned`) : [];
  $("learned-box").hidden = learned.length === 0;
  $("learned").replaceChildren(...learned.map((w) => h("li", {},
    h("span", { class: "badge", text: "learned" }),
    h("span", { class: "wording", text: w.wording }),
    h("span", { class: "muted small", text: `${w.times}× helpful, last ${clock(w.last_at)}` }),
    h("button", { class: "btn danger", type: "button", text: "Drop", "aria-label": `Drop learned wording: ${w.wording}`,
      onclick: () => dropLearned(w) }))));
}

async function dropLearned(w) {
  try {
    await api("DELETE", `/api/kb/articles/${current.id}/learned/${w.id}`);
    await loadLearned();
  } catch (e) { $("error").textContent = e.message; }
}

async function loadVersions() {
  if (!current) { $("versions").replaceChildren(); return; }
  const versions = await api("GET", `/api/kb/articles/${current.id}/versions`);
  $("versions").replaceChildren(...versions.map((v) => h("li", {},
    h("span", { text: `Version ${v.version} · ${v.title} · ${v.status} · ${clock(v.created_at)} (${v.source})` }), " ",
    v.version === current.version ? h("span", { class: "muted small", text: "current" })
      : h("button", { class: "btn", type: "button", text: `Restore version ${v.version}`, onclick: () => restore(v.version) }))));
}

async function restore(version) {
  try {
    current = await api("POST", `/api/kb/articles/${current.id}/versions/${version}/restore`);
    fill(current);
    await preview();
    await loadVersions();
    await loadList();
  } catch (e) { $("error").textContent = e.message; }
}

async function preview() {
  const { html } = await api("POST", "/api/kb/preview", { body: form.body.value });
  $("preview").innerHTML = html; // sanitized by the server (nh3)
}

function fields() {
  return {
    title: form.title.value, category: form.category.value, status: form.status.value,
    tags: form.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
    phrasings: form.phrasings.value.split("\n").map((p) => p.trim()).filter(Boolean),
    body: form.body.value,
  };
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  $("error").textContent = "";
  try {
    current = current
      ? await api("PATCH", `/api/kb/articles/${current.id}`, { ...fields(), version: current.version })
      : await api("POST", "/api/kb/articles", { ...fields(), slug: form.slug.value, locale: form.locale.value });
    fill(current);
    await preview();
    await loadVersions();
    await loadList();
  } catch (err) {
    $("error").textContent = err.status === 409 && err.code === "article_changed"
      ? "Someone saved this article meanwhile: reload it to see their changes." : err.message;
  }
});
$("preview-btn").addEventListener("click", () => preview().catch((e) => { $("error").textContent = e.message; }));
$("new").addEventListener("click", () => { current = null; fill(null); $("preview").replaceChildren(); loadVersions(); loadLearned(); renderList(); });
$("delete").addEventListener("click", async () => {
  if (!current) return;
  await api("DELETE", `/api/kb/articles/${current.id}`);
  current = null;
  fill(null);
  $("preview").replaceChildren();
  await loadVersions();
  await loadLearned();
  await loadList();
});
$("filter").addEventListener("input", renderList);

fill(null);
loadList();
