// Queues: GET/POST /api/queues, PATCH/DELETE /api/queues/{id} (the API's own checks; errors beside their field;
// a queue still in use is refused with the reason, shown above the Save button).
import {
  $, api, h, showErrors, clearErrors, saved, parseLevels, formatLevels, splitList, numberOrNull,
  checkedValues, setChecked, renderList,
  ready,
} from "./admin.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const PRIORITIES = ["low", "normal", "high", "urgent"];
const TARGETS = ["first_response_seconds", "resolution_seconds"];
const form = $("editor");
let queues = [];
let current = null;

function stepRow(step = {}) {
  const n = $("steps").children.length;
  const li = h("li", { class: "step", "data-field": `overflow.${n}` },
    h("div", { class: "row" },
      h("label", { "data-field": `overflow.${n}.after_seconds` }, "After (seconds of waiting)",
        h("input", { name: "after_seconds", type: "number", min: "0", value: step.after_seconds ?? "" })),
      h("label", { "data-field": `overflow.${n}.widen_to` }, "Also offer to queues (comma-separated)",
        h("input", { name: "widen_to", value: (step.widen_to || []).join(", ") })),
      h("label", { "data-field": `overflow.${n}.drop_skills` }, "Stop requiring skills (comma-separated)",
        h("input", { name: "drop_skills", value: (step.drop_skills || []).join(", ") }))),
    h("div", { class: "actions" }, h("button", { type: "button", class: "btn danger", text: "Remove step",
      onclick: () => { li.remove(); renumber(); } })));
  return li;
}

function renumber() {
  [...$("steps").children].forEach((li, n) => {
    li.dataset.field = `overflow.${n}`;
    li.querySelectorAll("[data-field]").forEach((el) => {
      el.dataset.field = el.dataset.field.replace(/^overflow\.\d+/, `overflow.${n}`);
    });
  });
}

function fillOverflowQueues(selected) {
  const sel = form.overflow_queue;
  sel.replaceChildren(h("option", { value: "", text: "(no queue)" }),
    ...queues.filter((q) => !current || q.id !== current.id).map((q) => h("option", { value: q.name, text: q.name })));
  sel.value = selected || "";
}

function fill(q) {
  current = q;
  clearErrors(form);
  $("heading").textContent = q ? `Queue ${q.name}` : "New queue";
  form.name.value = q ? q.name : "";
  form.name.disabled = !!q;
  form.description.value = q ? q.description : "";
  form.priority.value = q ? q.priority : 0;
  setChecked($("channels"), q ? q.channels : []);
  form.required_skills.value = formatLevels(q && q.required_skills);
  const hours = q && q.hours;
  form.has_hours.checked = !!hours;
  form.timezone.value = hours ? hours.timezone || "UTC" : "UTC";
  for (const d of DAYS) form[`day_${d}`].value = hours && hours.weekly && hours.weekly[d] ? hours.weekly[d].join(", ") : "";
  form.holidays.value = hours && hours.holidays ? hours.holidays.join("\n") : "";
  form.sla_first_response_seconds.value = q && q.sla_first_response_seconds ? q.sla_first_response_seconds : "";
  form.sla_resolution_seconds.value = q && q.sla_resolution_seconds ? q.sla_resolution_seconds : "";
  for (const p of PRIORITIES) {
    for (const t of TARGETS) {
      const v = q && q.sla_policies && q.sla_policies[p] ? q.sla_policies[p][t] : null;
      form[`sla_${p}_${t}`].value = v ?? "";
    }
  }
  form.service_level_target.value = q ? q.service_level_target : 80;
  form.service_level_seconds.value = q ? q.service_level_seconds : 60;
  form.wait_alert_seconds.value = q ? q.wait_alert_seconds : 300;
  $("steps").replaceChildren();
  for (const s of (q && q.overflow) || []) $("steps").append(stepRow(s));
  form.max_wait_seconds.value = q && q.max_wait_seconds ? q.max_wait_seconds : "";
  fillOverflowQueues(q && q.overflow_queue);
  $("delete").hidden = !q;
  saved(q ? "" : "Not saved yet");
  list();
}

function body() {
  let hours = null;
  if (form.has_hours.checked) {
    const weekly = {};
    for (const d of DAYS) {
      const spans = splitList(form[`day_${d}`].value);
      if (spans.length) weekly[d] = spans;
    }
    hours = { timezone: form.timezone.value.trim() || "UTC", weekly, holidays: splitList(form.holidays.value) };
  }
  const overflow = [...$("steps").children].map((li) => ({
    after_seconds: numberOrNull(li.querySelector("[name=after_seconds]")),
    widen_to: splitList(li.querySelector("[name=widen_to]").value),
    drop_skills: splitList(li.querySelector("[name=drop_skills]").value),
  }));
  const policies = {};
  for (const p of PRIORITIES) {
    const targets = {};
    for (const t of TARGETS) {
      const v = numberOrNull(form[`sla_${p}_${t}`]);
      if (v !== null) targets[t] = v;
    }
    if (Object.keys(targets).length) policies[p] = targets;
  }
  const data = {
    description: form.description.value,
    channels: checkedValues($("channels")),
    required_skills: parseLevels(form.required_skills.value),
    priority: numberOrNull(form.priority) ?? 0,
    hours,
    sla_first_response_seconds: numberOrNull(form.sla_first_response_seconds),
    sla_resolution_seconds: numberOrNull(form.sla_resolution_seconds),
    sla_policies: Object.keys(policies).length ? policies : null,
    service_level_target: numberOrNull(form.service_level_target),
    service_level_seconds: numberOrNull(form.service_level_seconds),
    wait_alert_seconds: numberOrNull(form.wait_alert_seconds),
    overflow,
    max_wait_seconds: numberOrNull(form.max_wait_seconds),
    overflow_queue: form.overflow_queue.value || null,
  };
  if (!current) data.name = form.name.value.trim();
  return data;
}

function list() {
  renderList($("items"), queues, {
    label: (q) => q.name, sub: (q) => q.channels.join(", ") || "no channels",
    isActive: (q) => current && q.id === current.id, onOpen: fill,
  });
}

async function load(openId) {
  queues = await api("GET", "/api/queues");
  fill(queues.find((q) => q.id === openId) || null);
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  saved("Saving…");
  try {
    const q = current ? await api("PATCH", `/api/queues/${current.id}`, body()) : await api("POST", "/api/queues", body());
    await load(q.id);
    saved(`Saved ${q.name}`);
  } catch (err) {
    showErrors(form, err);
  }
});
$("delete").addEventListener("click", async () => {
  clearErrors(form);
  try {
    await api("DELETE", `/api/queues/${current.id}`);
    const gone = current.name;
    await load(null);
    saved(`Deleted ${gone}`);
  } catch (err) {
    showErrors(form, err);
  }
});
$("add-step").addEventListener("click", () => $("steps").append(stepRow()));
$("new").addEventListener("click", () => fill(null));
load(null).then(ready);
