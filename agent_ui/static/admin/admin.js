// What every admin page shares: the REST API client, reading a form's fields, and showing an error next to the
// field it names (a 422's `loc`), or above the buttons when it names none. Text only ever lands as text.
import { api, ApiError } from "../console/api.js";
import { h } from "../console/dom.js";

export { api, ApiError, h };

export const $ = (id) => document.getElementById(id);

// A 409 names no field: the field it is about, by its code.
const CONFLICT_FIELDS = {
  queue_name_taken: "name", username_taken: "username", canned_shortcut_taken: "shortcut",
  mailbox_exists: "name", mailbox_name_taken: "name",
};

export function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((e) => e.remove());
  form.querySelectorAll("[aria-invalid]").forEach((e) => {
    e.removeAttribute("aria-invalid");
    e.removeAttribute("aria-describedby");
  });
  const general = form.querySelector(".form-error");
  if (general) general.textContent = "";
}

let errorIds = 0;

function placeError(form, path, msg) {
  // The deepest element whose data-field is the loc or a prefix of it: rules.2.when.channel.0 lands on the
  // rule's channel field, hours.weekly.mon on Monday's hours.
  for (let n = path.length; n > 0; n--) {
    const key = path.slice(0, n).join(".");
    const target = form.querySelector(`[data-field="${CSS.escape(key)}"]`);
    if (target) {
      // Beside a label, not inside it: the field keeps its name, and the error is its description.
      const error = h("p", { class: "field-error", role: "alert", id: `err-${++errorIds}`, text: msg });
      if (target.tagName === "LABEL") target.after(error);
      else target.append(error);
      const input = target.matches("input, select, textarea") ? target : target.querySelector("input, select, textarea");
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", error.id);
      }
      return true;
    }
  }
  return false;
}

// Show `err` (an ApiError, or anything thrown) on `form`.
export function showErrors(form, err) {
  clearErrors(form);
  saved("");
  const general = form.querySelector(".form-error");
  const unplaced = [];
  const detail = err && err.body && err.body.detail;
  if (err instanceof ApiError && err.status === 422 && Array.isArray(detail)) {
    // A field that may also be null (pydantic's union) adds "Input should be None" beside the real error,
    // and names the union's member in the loc (capacity.dict[str,...].email): neither is for people.
    const real = detail.length > 1 ? detail.filter((e) => e.msg !== "Input should be None") : detail;
    for (const e of real) {
      const loc = (Array.isArray(e.loc) ? e.loc : []).filter((p) => typeof p === "number" || !/[[\]]/.test(p));
      const path = loc[0] === "body" || loc[0] === "query" ? loc.slice(1) : loc;
      const msg = String(e.msg || "invalid").replace(/^Value error, /, "");
      if (!path.length || !placeError(form, path, msg)) unplaced.push(path.length ? `${path.join(".")}: ${msg}` : msg);
    }
  } else if (err instanceof ApiError && err.status === 409 && CONFLICT_FIELDS[err.code]) {
    if (!placeError(form, [CONFLICT_FIELDS[err.code]], err.message)) unplaced.push(err.message);
  } else {
    unplaced.push((err && err.message) || String(err));
  }
  if (general) general.textContent = unplaced.join("; ");
  const first = form.querySelector(".field-error, .form-error:not(:empty)");
  if (first && first.scrollIntoView) first.scrollIntoView({ block: "nearest" });
}

export function saved(text) {
  const el = $("saved");
  if (el) el.textContent = text;
}

// "name level" (or name=level, name:level with a space) per line or comma: {name: level}. A level that is not
// a whole number is sent as it is, for the API to refuse it naming the field.
export function parseLevels(text) {
  const out = {};
  for (const part of text.split(/[\n,]+/)) {
    const p = part.trim();
    if (!p) continue;
    const m = p.match(/^(.*?)(?:\s*=\s*|\s+)(\S+)$/);
    const [name, level] = m ? [m[1].trim(), m[2]] : [p, "1"];
    out[name] = /^-?\d+$/.test(level) ? Number(level) : level;
  }
  return out;
}

export function formatLevels(levels) {
  return Object.entries(levels || {}).map(([k, v]) => `${k} ${v}`).join("\n");
}

export function splitList(text) {
  return text.split(/[\n,]+/).map((s) => s.trim()).filter(Boolean);
}

// A number input: its number, null when empty, the text itself when not a number (the API names the field).
export function numberOrNull(input) {
  const v = input.value.trim();
  if (!v) return null;
  return /^-?\d+$/.test(v) ? Number(v) : v;
}

export function checkedValues(container) {
  return [...container.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
}

export function setChecked(container, values) {
  const want = new Set(values || []);
  container.querySelectorAll("input[type=checkbox]").forEach((c) => { c.checked = want.has(c.value); });
}

// The list beside the editor: one button per item, the open one marked.
export function renderList(ul, items, { label, sub, isActive, onOpen }) {
  ul.replaceChildren(...items.map((it) => h("li", {}, h("button", {
    type: "button", class: isActive(it) ? "active" : "", onclick: () => onOpen(it),
  }, label(it), sub ? h("span", { class: "sub", text: sub(it) }) : null))));
}

// The page has loaded its data (tests wait for this before typing into a form the first load would reset).
export function ready() {
  document.body.dataset.ready = "true";
}
