// Agents: GET/POST /api/agents, PATCH /api/agents/{id} (role, queues, skills, capacity, password, active).
import {
  $, api, h, showErrors, clearErrors, saved, parseLevels, formatLevels, numberOrNull, checkedValues, setChecked,
  renderList,
  ready,
} from "./admin.js";

const form = $("editor");
const reset = $("reset");
const capInputs = [...form.querySelectorAll("input[name^=cap_]")];
let agents = [];
let queues = [];
let current = null;

function queueNames(ids) {
  return queues.filter((q) => ids.includes(q.id)).map((q) => q.name);
}

function fill(a) {
  current = a;
  clearErrors(form);
  clearErrors(reset);
  $("heading").textContent = a ? `Agent ${a.username}${a.active ? "" : " (deactivated)"}` : "New agent";
  form.username.value = a ? a.username : "";
  form.username.disabled = !!a;
  form.display_name.value = a ? a.display_name : "";
  form.role.value = a ? a.role : "agent";
  $("password-field").hidden = !!a;
  form.password.value = "";
  setChecked($("queues"), a ? queueNames(a.queue_ids) : []);
  form.skills.value = formatLevels(a && a.skills);
  for (const input of capInputs) {
    const ch = input.name.slice(4);
    input.value = a && a.capacity[ch] !== undefined ? a.capacity[ch] : "";
  }
  $("toggle-active").hidden = !a;
  $("toggle-active").textContent = a && !a.active ? "Reactivate" : "Deactivate";
  reset.hidden = !a;
  reset.password.value = "";
  $("reset-done").textContent = "";
  saved(a ? `Status: ${a.status}` : "Not saved yet");
  list();
}

function body() {
  const capacity = {};
  for (const input of capInputs) {
    const v = numberOrNull(input);
    if (v !== null) capacity[input.name.slice(4)] = v;
  }
  const data = {
    display_name: form.display_name.value.trim(),
    role: form.role.value,
    queues: checkedValues($("queues")),
    skills: parseLevels(form.skills.value),
    capacity,
  };
  if (!current) {
    data.username = form.username.value.trim();
    data.password = form.password.value;
  }
  return data;
}

function list() {
  renderList($("items"), agents, {
    label: (a) => a.display_name || a.username,
    sub: (a) => `${a.username} · ${a.role}${a.active ? "" : " · deactivated"}`,
    isActive: (a) => current && a.id === current.id, onOpen: fill,
  });
}

async function load(openId) {
  [agents, queues] = await Promise.all([api("GET", "/api/agents"), api("GET", "/api/queues")]);
  $("queues").replaceChildren(...queues.map((q) => h("label", {}, h("input", { type: "checkbox", value: q.name }), ` ${q.name}`)));
  fill(agents.find((a) => a.id === openId) || null);
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  saved("Saving…");
  try {
    const a = current ? await api("PATCH", `/api/agents/${current.id}`, body()) : await api("POST", "/api/agents", body());
    await load(a.id);
    saved(`Saved ${a.username}`);
  } catch (err) {
    showErrors(form, err);
  }
});
$("toggle-active").addEventListener("click", async () => {
  try {
    const a = await api("PATCH", `/api/agents/${current.id}`, { active: !current.active });
    await load(a.id);
    saved(a.active ? `Reactivated ${a.username}` : `Deactivated ${a.username}`);
  } catch (err) {
    showErrors(form, err);
  }
});
reset.addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api("PATCH", `/api/agents/${current.id}`, { password: reset.password.value });
    clearErrors(reset);
    reset.password.value = "";
    $("reset-done").textContent = `New password set for ${current.username}`;
  } catch (err) {
    showErrors(reset, err);
  }
});
$("new").addEventListener("click", () => fill(null));
load(null).then(ready);
