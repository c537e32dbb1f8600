/*
 * Switchboard chat widget. Embed on any page with one tag:
 *
 *   <script src="https://support.example.com/widget.js" data-queue="support" async></script>
 *
 * Optional attributes: data-title, data-color (CSS colour), data-open ("true" opens the panel at load).
 * A site that knows its signed-in user passes it, with an HMAC-SHA256 of the user id computed on its server
 * under SWITCHBOARD_CHAT_IDENTITY_SECRET:
 *   data-user-id, data-user-hash, data-user-email, data-user-name
 * or sets window.SwitchboardChatIdentity = {user_id, hash, email, name} before the tag.
 *
 * Everything the widget shows that someone typed is set with textContent: no customer or agent HTML is ever
 * interpreted. It lives in a shadow root so the page's CSS and the widget's never touch.
 */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || window.__switchboardChat) return;
  const base = new URL(script.src, location.href);
  const origin = base.origin;
  const wsOrigin = origin.replace(/^http/, "ws");
  const opts = script.dataset;
  const queue = opts.queue || null;
  const storeKey = `switchboard-chat:${origin}:${queue || ""}`;
  let identity = window.SwitchboardChatIdentity || (opts.userId
    ? { user_id: opts.userId, hash: opts.userHash || "", email: opts.userEmail || null, name: opts.userName || null }
    : null);

  // --- state --------------------------------------------------------------------------------------------------
  const saved = load();
  const state = {
    token: saved.token || null,
    open: !!saved.open || opts.open === "true",
    pending: saved.pending || [], // [{client_id, text, attachments, created_at}] not yet acknowledged
    emailWanted: saved.emailWanted || null, // offline: the address to send once the first message is stored
    lastId: 0,
    shown: new Map(), // message id -> element
    byClient: new Map(), // client_id -> element (own messages before their ack)
    config: null,
    ws: null,
    connected: false,
    retry: 0,
    unread: 0,
    ticketId: null,
    agentName: null,
    solved: false, // the conversation's ticket is solved or closed: the next message starts a new one
    typingTimer: null,
    typingSent: 0,
    typingActive: false,
    idleTimer: null,
    watchdog: null,
    waitTimer: null,
    configLoading: null,
    undelivered: [],
  };

  function load() {
    try { return JSON.parse(localStorage.getItem(storeKey) || "{}"); } catch { return {}; }
  }
  function save() {
    try {
      localStorage.setItem(storeKey, JSON.stringify({
        token: state.token, open: state.open, pending: state.pending, emailWanted: state.emailWanted,
      }));
    } catch { /* private mode: the conversation lasts as long as the page */ }
  }
  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // --- DOM helpers: text only ------------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }
  const time = (iso) => {
    const d = iso ? new Date(iso) : new Date();
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  };

  // --- the UI ------------------------------------------------------------------------------------------------------
  const host = h("div", { id: "switchboard-chat" });
  const root = host.attachShadow({ mode: "open" });
  const color = /^[#a-zA-Z0-9(),.% ]{1,40}$/.test(opts.color || "") ? opts.color : "#2563eb";
  const style = h("style");
  style.textContent = `
:host { all: initial; }
* { box-sizing: border-box; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.launcher { position: fixed; right: 20px; bottom: 20px; width: 60px; height: 60px; border-radius: 50%; border: 0;
  background: ${color}; color: #fff; cursor: pointer; box-shadow: 0 6px 20px rgba(0,0,0,.25); z-index: 2147483000;
  display: flex; align-items: center; justify-content: center; }
.launcher:focus-visible, button:focus-visible, textarea:focus-visible, input:focus-visible {
  outline: 3px solid #f59e0b; outline-offset: 2px; }
.launcher svg { width: 28px; height: 28px; fill: currentColor; }
.badge { position: absolute; top: -2px; right: -2px; min-width: 20px; height: 20px; padding: 0 6px; border-radius: 10px;
  background: #dc2626; color: #fff; font-size: 12px; font-weight: 700; line-height: 20px; text-align: center; }
.panel { position: fixed; right: 20px; bottom: 92px; width: 370px; height: min(600px, calc(100vh - 120px));
  background: #fff; color: #111827; border-radius: 14px; box-shadow: 0 12px 40px rgba(0,0,0,.25);
  display: flex; flex-direction: column; overflow: hidden; z-index: 2147483000; font-size: 14px; }
.panel[hidden] { display: none; }
header { background: ${color}; color: #fff; padding: 14px 16px; display: flex; align-items: center; gap: 10px; }
header .who { flex: 1; min-width: 0; }
header h2 { margin: 0; font-size: 16px; font-weight: 650; }
header p { margin: 2px 0 0; font-size: 12px; opacity: .9; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.close { background: transparent; border: 0; color: #fff; font-size: 22px; cursor: pointer; width: 32px; height: 32px;
  border-radius: 6px; line-height: 1; }
.close:hover { background: rgba(255,255,255,.15); }
.banner { background: #fef3c7; color: #92400e; font-size: 12px; padding: 6px 12px; text-align: center; }
.banner[hidden] { display: none; }
.body { flex: 1; overflow-y: auto; padding: 12px; background: #f9fafb; display: flex; flex-direction: column; gap: 8px; }
.log { display: flex; flex-direction: column; gap: 8px; }
.msg { max-width: 82%; display: flex; flex-direction: column; }
.msg .bubble { padding: 8px 12px; border-radius: 14px; white-space: pre-wrap; word-wrap: break-word; overflow-wrap: anywhere;
  line-height: 1.4; }
.msg.in { align-self: flex-end; align-items: flex-end; }
.msg.in .bubble { background: ${color}; color: #fff; border-bottom-right-radius: 4px; }
.msg.out { align-self: flex-start; }
.msg.out .bubble { background: #fff; border: 1px solid #e5e7eb; border-bottom-left-radius: 4px; }
.meta { font-size: 11px; color: #6b7280; margin-top: 3px; display: flex; gap: 6px; }
.meta .state.failed { color: #dc2626; }
.system { align-self: center; font-size: 12px; color: #6b7280; background: #eef2f7; padding: 4px 10px; border-radius: 10px;
  text-align: center; }
.att img { max-width: 220px; max-height: 200px; border-radius: 8px; display: block; margin-top: 4px; }
.att a { color: inherit; }
.chip { font-size: 13px; opacity: .9; }
.file-error { background: #fef2f2; color: #b91c1c; font-size: 13px; padding: 8px 12px; border-top: 1px solid #fecaca; }
.file-error[hidden] { display: none; }
.typing { font-size: 12px; color: #6b7280; min-height: 16px; padding: 0 14px 4px; background: #f9fafb; }
form.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 12px; padding: 14px; display: flex;
  flex-direction: column; gap: 10px; }
form.card[hidden] { display: none; }
.fields { display: flex; flex-direction: column; gap: 10px; }
form.card p { margin: 0; color: #374151; line-height: 1.4; }
label { display: flex; flex-direction: column; gap: 4px; font-size: 13px; font-weight: 600; color: #374151; }
input[type=text], input[type=email], textarea { font: inherit; font-weight: 400; border: 1px solid #d1d5db; border-radius: 8px;
  padding: 8px 10px; color: #111827; background: #fff; width: 100%; }
.primary { background: ${color}; color: #fff; border: 0; border-radius: 8px; padding: 9px 14px; font: inherit;
  font-weight: 600; cursor: pointer; }
.primary:disabled { opacity: .6; cursor: default; }
.error { color: #b91c1c; font-size: 12px; min-height: 0; }
.stars { display: flex; gap: 4px; border: 0; padding: 0; margin: 0; }
.stars legend { font-size: 13px; font-weight: 600; color: #374151; margin-bottom: 4px; }
.stars input { position: absolute; opacity: 0; width: 1px; height: 1px; }
.stars label { font-size: 26px; color: #d1d5db; cursor: pointer; font-weight: 400; }
.stars label.on { color: #f59e0b; }
.stars input:focus-visible + span { outline: 3px solid #f59e0b; }
.answers { border-top: 1px solid #e5e7eb; background: #fffbeb; padding: 8px 12px; max-height: 40%; overflow-y: auto; }
.answers[hidden] { display: none; }
.answers h3 { margin: 0 0 6px; font-size: 12px; font-weight: 650; color: #92400e; }
.answers ul { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 6px; }
.answers li { display: flex; align-items: center; gap: 8px; justify-content: space-between; }
.answers a { color: #1d4ed8; font-size: 13px; }
.answers button { flex: none; font: inherit; font-size: 12px; border: 1px solid #d1d5db; background: #fff; border-radius: 6px;
  padding: 3px 8px; cursor: pointer; }
.composer { display: flex; align-items: flex-end; gap: 6px; padding: 10px; border-top: 1px solid #e5e7eb; background: #fff; }
.composer[hidden] { display: none; }
.composer textarea { resize: none; max-height: 120px; min-height: 40px; }
.icon { background: transparent; border: 0; width: 40px; height: 40px; border-radius: 8px; cursor: pointer; color: #4b5563;
  display: flex; align-items: center; justify-content: center; flex: none; }
.icon:hover { background: #f3f4f6; }
.icon svg { width: 22px; height: 22px; fill: currentColor; }
.send { color: ${color}; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (max-width: 480px) {
  /* the whole screen, without a horizontal scroll; 16px text so phones do not zoom into the fields */
  .panel { inset: 0; width: auto; height: auto; max-height: none; border-radius: 0; }
  .launcher { right: 14px; bottom: 14px; }
  .close { width: 44px; height: 44px; }
  input[type=text], input[type=email], textarea { font-size: 16px; }
}`;
  const svgPath = (d) => {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
    p.setAttribute("d", d);
    svg.append(p);
    return svg;
  };
  const badge = h("span", { class: "badge", hidden: true, "aria-hidden": "true" });
  const launcher = h("button", {
    class: "launcher", type: "button", "aria-label": "Open chat", "aria-expanded": "false", "aria-controls": "sb-panel",
    onclick: () => toggle(),
  }, svgPath("M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"), badge);
  const title = h("h2", { id: "sb-title", text: opts.title || "Chat with us" });
  const subtitle = h("p", { text: "" });
  const closeBtn = h("button", { class: "close", type: "button", "aria-label": "Close chat", onclick: () => toggle(false) }, "×");
  const banner = h("div", { class: "banner", role: "status", hidden: true });
  const log = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Messages" });
  const typing = h("div", { class: "typing", "aria-live": "polite" });

  // pre-chat form (fields from the server's config)
  const prechatFields = h("div", { class: "fields" });
  const prechatNote = h("p", { text: "" });
  const prechatError = h("div", { class: "error", role: "alert" });
  const prechat = h("form", { class: "card prechat", hidden: true, "aria-label": "Before we start", novalidate: true },
    prechatNote, prechatFields, prechatError, h("button", { class: "primary", type: "submit", text: "Start chat" }));

  // offline: ask for an email address
  const offlineEmail = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
  const offlineError = h("div", { class: "error", role: "alert" });
  const offline = h("form", { class: "card offline", hidden: true, "aria-label": "Answer by email" },
    h("p", { class: "offline-text", text: "" }),
    h("label", {}, "Email address", offlineEmail), offlineError,
    h("button", { class: "primary", type: "submit", text: "Answer me by email" }));

  // satisfaction
  const starsBox = h("fieldset", { class: "stars" }, h("legend", { text: "How did we do?" }));
  const starLabels = [];
  for (let i = 1; i <= 5; i++) {
    const input = h("input", { type: "radio", name: "score", value: String(i), "aria-label": `${i} out of 5` });
    const lab = h("label", { title: `${i} out of 5` }, input, h("span", { "aria-hidden": "true", text: "★" }));
    input.addEventListener("change", () => starLabels.forEach((l, j) => l.classList.toggle("on", j < i)));
    starLabels.push(lab);
    starsBox.append(lab);
  }
  const ratingComment = h("textarea", { name: "comment", rows: "2", maxlength: "2000" });
  const ratingError = h("div", { class: "error", role: "alert" });
  const rating = h("form", { class: "card rating", hidden: true, "aria-label": "Rate this conversation" },
    starsBox, h("label", {}, "Anything to add? (optional)", ratingComment), ratingError,
    h("button", { class: "primary", type: "submit", text: "Send rating" }));

  const body = h("div", { class: "body" }, prechat, log, offline, rating);
  const fileInput = h("input", {
    type: "file", class: "sr", tabindex: "-1", "aria-hidden": "true",
    accept: "image/png,image/jpeg,image/gif,image/webp,application/pdf",
  });
  const attachBtn = h("button", { class: "icon", type: "button", "aria-label": "Attach an image or PDF", onclick: () => fileInput.click() },
    svgPath("M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5H9v9a3 3 0 0 0 6 0V5a4.5 4.5 0 0 0-9 0v11.5a6 6 0 0 0 12 0v-10z"));
  const input = h("textarea", { rows: "1", "aria-label": "Type your message", placeholder: "Type your message…", maxlength: "5000" });
  const sendBtn = h("button", { class: "icon send", type: "submit", "aria-label": "Send message" },
    svgPath("M2 21l21-9L2 3v7l15 2-15 2z"));
  const composer = h("form", { class: "composer", hidden: true, "aria-label": "Send a message" }, attachBtn, fileInput, input, sendBtn);
  const fileNotice = h("div", { class: "file-error", role: "alert", hidden: true });
  // Self-service: while nobody has joined, articles of the site's knowledge base that may answer what the
  // visitor is typing (GET /api/kb/public/answers; a server without a knowledge base answers 404 and nothing shows).
  const answerList = h("ul", {});
  const answers = h("section", { class: "answers", hidden: true, "aria-label": "Articles that may answer your question" },
    h("h3", { text: "These articles may answer your question" }), answerList);
  const panel = h("section", { class: "panel", id: "sb-panel", role: "dialog", "aria-labelledby": "sb-title", hidden: true },
    h("header", {}, h("div", { class: "who" }, title, subtitle), closeBtn), banner, body, typing, fileNotice, answers, composer);
  root.append(style, launcher, panel);

  // --- showing things -----------------------------------------------------------------------------------------------
  function scrollDown() { body.scrollTop = body.scrollHeight; }
  function setSubtitle() {
    if (state.solved) subtitle.textContent = "Solved · write again to start a new conversation";
    else if (state.agentName && state.emailWanted) subtitle.textContent = `${state.agentName} will answer you by email`;
    else if (state.agentName) subtitle.textContent = `You are chatting with ${state.agentName}`;
    else if (state.emailWanted) subtitle.textContent = "We will answer by email";
    else if (state.config && !state.config.available) subtitle.textContent = state.config.open === false ? "We are closed right now" : "We are away right now";
    else subtitle.textContent = "We usually reply in a minute";
  }
  function systemLine(text) {
    log.append(h("div", { class: "system", role: "status", text }));
    scrollDown();
  }
  // An attachment is served only to the conversation that holds it, so its address carries the visitor token
  // (an <img> cannot send a header). Until our own message is stored it is shown by name only.
  function attachmentsEl(list, pending) {
    if (!list || !list.length) return null;
    const box = h("div", { class: "att" });
    for (const a of list) {
      const safe = typeof a.sha256 === "string" && /^[0-9a-f]{64}$/.test(a.sha256);
      const url = safe && !pending && state.token
        ? `${origin}/api/chat/attachments/${a.sha256}?token=${encodeURIComponent(state.token)}` : null;
      if (!url) {
        box.append(h("span", { class: "chip", text: `📎 ${a.filename || "file"}` }));
      } else if (/^image\//.test(a.content_type || "")) {
        box.append(h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, h("img", { src: url, alt: a.filename || "image" })));
      } else if (url) {
        box.append(h("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: `📄 ${a.filename || "file"}` }));
      }
    }
    return box;
  }
  function renderMessage(m) {
    if (m.id && state.shown.has(m.id)) return state.shown.get(m.id);
    let el = m.client_id ? state.byClient.get(m.client_id) : null;
    if (el) { // our own message, now stored
      if (m.id) stored(el, m.id, m.attachments);
      return el;
    }
    const inbound = m.direction === "inbound";
    const stateEl = h("span", { class: "state", text: inbound ? (m.id ? "Sent" : "Sending…") : "" });
    el = h("div", { class: `msg ${inbound ? "in" : "out"}`, "data-id": m.id || "" },
      h("div", { class: "bubble", text: m.text || "" }),
      attachmentsEl(m.attachments, !m.id),
      h("div", { class: "meta" },
        inbound ? null : h("span", { class: "author", text: m.agent_name || "Support" }),
        h("time", { datetime: m.created_at || "", text: time(m.created_at) }),
        inbound ? stateEl : null));
    if (!m.text) el.querySelector(".bubble").remove();
    if (m.id) state.shown.set(m.id, el);
    if (m.client_id && !m.id) state.byClient.set(m.client_id, el);
    else if (m.client_id) state.byClient.set(m.client_id, el);
    log.append(el);
    if (m.id && m.id > state.lastId) state.lastId = m.id;
    scrollDown();
    return el;
  }
  function stored(el, id, attachments) {
    state.shown.set(id, el);
    el.dataset.id = String(id);
    setState(el, "Sent");
    const old = el.querySelector(".att");
    if (old && attachments && attachments.length) old.replaceWith(attachmentsEl(attachments, false));
  }
  function setState(el, text, failed) {
    const s = el.querySelector(".state");
    if (s) { s.textContent = text; s.classList.toggle("failed", !!failed); }
  }
  function showTyping(active, name) {
    clearTimeout(state.typingTimer);
    typing.textContent = active ? `${name || "Support"} is typing…` : "";
    if (active) state.typingTimer = setTimeout(() => { typing.textContent = ""; }, 6000);
  }
  function updateBadge() {
    badge.hidden = state.unread === 0;
    badge.textContent = String(state.unread);
    launcher.setAttribute("aria-label", state.unread ? `Open chat, ${state.unread} unread` : "Open chat");
  }
  function showComposer(on) { composer.hidden = !on; }

  // --- opening, the pre-chat form, the offline form -------------------------------------------------------------------
  function toggle(force) {
    state.open = force === undefined ? !state.open : force;
    panel.hidden = !state.open;
    launcher.setAttribute("aria-expanded", String(state.open));
    save();
    if (state.open) {
      state.unread = 0;
      updateBadge();
      start();
      setTimeout(() => {
        const first = prechat.hidden ? (composer.hidden ? closeBtn : input) : prechat.querySelector("input");
        (first || closeBtn).focus();
        scrollDown();
      }, 0);
      flushDelivered();
    } else {
      launcher.focus();
    }
  }
  root.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.open) { e.preventDefault(); toggle(false); }
  });

  function fetchConfig(fresh = false) {
    if (state.config && !fresh) return Promise.resolve(state.config);
    if (!state.configLoading) { // one request however many ask at once
      state.configLoading = fetch(`${origin}/api/chat/config${queue ? `?queue=${encodeURIComponent(queue)}` : ""}`)
        .then((r) => r.json())
        .then((config) => {
          state.config = config;
          if (!opts.title && config.title) title.textContent = config.title;
          setSubtitle();
          return config;
        })
        .finally(() => { state.configLoading = null; });
    }
    return state.configLoading;
  }

  async function start() {
    if (state.token) { connect(); return; }
    let config;
    try { config = await fetchConfig(); } catch { systemLine("Chat is not reachable right now. Please try again later."); return; }
    if (state.token) return;
    if (identity) { await startSession({}); return; }
    prechatFields.replaceChildren();
    const fields = config.pre_chat_fields || [];
    for (const f of fields) {
      const needed = f.required || (!config.available && f.name === "email");
      const inp = h("input", {
        type: f.type === "email" ? "email" : "text", name: f.name, required: needed,
        autocomplete: f.name === "email" ? "email" : f.name === "name" ? "name" : "on", maxlength: "200",
      });
      prechatFields.append(h("label", {}, `${f.label}${needed ? "" : " (optional)"}`, inp));
    }
    if (!config.available && !fields.some((f) => f.name === "email")) {
      prechatFields.append(h("label", {}, "Email address", h("input", { type: "email", name: "email", required: true })));
    }
    prechatNote.textContent = config.available ? (config.greeting || "") : (config.offline_message || "Nobody is available right now.");
    if (!fields.length && config.available) { await startSession({}); return; }
    prechat.hidden = false;
    showComposer(false);
  }

  prechat.addEventListener("submit", async (e) => {
    e.preventDefault();
    prechatError.textContent = "";
    const data = {};
    for (const inp of prechat.querySelectorAll("input")) {
      const v = inp.value.trim();
      if (inp.required && !v) { prechatError.textContent = "Please fill in the required fields."; inp.focus(); return; }
      if (inp.type === "email" && v && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(v)) {
        prechatError.textContent = "Please enter a valid email address."; inp.focus(); return;
      }
      if (v) data[inp.name] = v;
    }
    if (state.config && !state.config.available && data.email) state.emailWanted = data.email;
    await startSession(data);
  });

  async function startSession(data) {
    const payload = { name: data.name || null, email: data.email || null, queue };
    if (identity) payload.identity = identity;
    try {
      const r = await fetch(`${origin}/api/chat/sessions`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
      });
      const body = await r.json();
      const detail = errorText(body);
      if (!r.ok && identity && r.status >= 400 && r.status < 500) {
        // The page named a signed-in user the server would not verify (a wrong or missing hash, or no secret
        // configured): a mistake of the site, not the visitor's. Chat unverified rather than not at all;
        // such a visitor is linked to nobody.
        console.warn(`Switchboard chat: ${detail || r.status}; this visitor chats unverified`);
        identity = null;
        await start();
        return;
      }
      if (!r.ok) { prechatError.textContent = detail || "Could not start the chat."; prechat.hidden = false; return; }
      state.token = body.token;
      save();
      prechat.hidden = true;
      if (state.emailWanted) {
        const closed = state.config && state.config.open === false;
        systemLine(`${closed ? "We are closed right now" : "Nobody is available right now"}. Write your question and we will answer by email.`);
      }
      connect();
    } catch {
      prechatError.textContent = "Could not reach the server. Please try again.";
    }
  }

  offline.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = offlineEmail.value.trim();
    if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(v)) { offlineError.textContent = "Please enter a valid email address."; return; }
    offlineError.textContent = "";
    state.emailWanted = v;
    save();
    sendFallback();
  });
  // While the conversation waits for an agent, whether anybody is available is checked again every
  // availability_check_seconds (server config): when nobody is (they all went away, declined, or the queue
  // closed since the chat began), the visitor is told so and offered to be answered by email; the form goes
  // again if someone comes back.
  function checkWaiting(fresh = true) {
    clearTimeout(state.waitTimer);
    if (!state.token || !state.ticketId || state.solved || state.agentName || state.emailWanted) { offline.hidden = true; return; }
    fetchConfig(fresh).then((c) => {
      if (state.agentName || state.emailWanted) return;
      if (!c.available && offline.hidden) {
        offline.querySelector(".offline-text").textContent = c.offline_message || "";
        offline.hidden = false;
      } else if (c.available) {
        offline.hidden = true;
      }
    }).catch(() => {}).finally(() => {
      const every = ((state.config && state.config.availability_check_seconds) || 20) * 1000;
      if (state.token && !state.agentName && !state.emailWanted) state.waitTimer = setTimeout(checkWaiting, every);
    });
  }
  function sendFallback() {
    if (state.emailWanted && state.ticketId && state.connected) send({ type: "email_fallback", email: state.emailWanted });
  }

  // --- the socket ------------------------------------------------------------------------------------------------------
  function connect() {
    if (state.ws || !state.token) return;
    const url = `${wsOrigin}/ws/chat?token=${encodeURIComponent(state.token)}&last_message_id=${state.lastId}`;
    const ws = new WebSocket(url);
    state.ws = ws;
    ws.onmessage = (ev) => {
      armWatchdog();
      let f;
      try { f = JSON.parse(ev.data); } catch { return; }
      onFrame(f);
    };
    ws.onclose = () => {
      state.ws = null;
      state.connected = false;
      clearTimeout(state.watchdog);
      if (!state.token) return;
      banner.textContent = "Connection lost. Reconnecting…";
      banner.hidden = false;
      const delay = Math.min(10000, 500 * 2 ** state.retry) * (0.75 + Math.random() / 2);
      state.retry = Math.min(state.retry + 1, 6);
      setTimeout(connect, delay);
    };
    ws.onerror = () => { /* onclose follows */ };
  }
  function armWatchdog() {
    clearTimeout(state.watchdog);
    // the server sends a heartbeat when idle; silence this long means a dead connection
    state.watchdog = setTimeout(() => { if (state.ws) state.ws.close(); }, 70000);
  }
  function send(frame) {
    if (state.ws && state.connected) { state.ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  function onFrame(f) {
    switch (f.type) {
      case "hello":
        state.connected = true;
        state.retry = 0;
        banner.hidden = true;
        prechat.hidden = true;
        showComposer(true);
        for (const m of f.messages || []) renderMessage(m);
        state.ticketId = f.ticket_id || state.ticketId;
        if (f.agent && f.agent.name) state.agentName = f.agent.name;
        if (f.email_fallback) { state.emailWanted = f.email_fallback; offline.hidden = true; save(); }
        state.solved = f.status === "solved" || f.status === "closed";
        setSubtitle();
        if (f.rating_request && f.ticket_id) askRating(f.ticket_id);
        else if (state.solved && !log.querySelector(".system.solved")) solvedLine();
        for (const p of state.pending) { // resend what was never acknowledged: stored once by client_id
          if (!state.byClient.has(p.client_id)) renderMessage({ ...p, direction: "inbound" });
          send({ type: "message", client_id: p.client_id, text: p.text, attachments: p.attachments || [] });
        }
        if (!state.config) fetchConfig().catch(() => {});
        sendFallback();
        flushDelivered();
        checkWaiting(false);
        break;
      case "ack": {
        const acked = state.pending.find((p) => p.client_id === f.client_id);
        state.pending = state.pending.filter((p) => p.client_id !== f.client_id);
        save();
        const el = state.byClient.get(f.client_id);
        if (el) stored(el, f.message_id, acked && acked.attachments);
        if (f.message_id > state.lastId) state.lastId = f.message_id;
        const first = !state.ticketId;
        if (!first && f.ticket_id && f.ticket_id !== state.ticketId) newConversation();
        state.ticketId = f.ticket_id;
        if (first && state.emailWanted) sendFallback();
        else if (first) checkWaiting(false);
        break;
      }
      case "message": {
        const m = f.message;
        const isNew = !state.shown.has(m.id);
        renderMessage(m);
        if (isNew && m.direction === "outbound") {
          showTyping(false);
          if (m.agent_name && !state.agentName) { state.agentName = m.agent_name; setSubtitle(); }
          state.undelivered.push(m.id);
          if (!state.open) { state.unread += 1; updateBadge(); }
          flushDelivered();
        }
        break;
      }
      case "typing": showTyping(f.active, f.name); break;
      case "agent_joined":
        state.agentName = f.name || "An agent";
        offline.hidden = true;
        answers.hidden = true; // a person answers now
        setSubtitle();
        systemLine(`${state.agentName} joined the chat`);
        break;
      case "agent_left":
        state.agentName = null;
        setSubtitle();
        systemLine("You are being transferred to a colleague…");
        checkWaiting();
        break;
      case "rating_request": askRating(f.ticket_id); break;
      case "rating_saved":
        rating.hidden = true;
        systemLine("Thank you for your feedback!");
        break;
      case "reopened": rating.hidden = true; state.solved = false; setSubtitle(); break;
      case "deflected": // closed by this visitor's "This solved it" (here or in another tab): nobody to wait for,
        // nothing to rate; writing again starts a new conversation (its ack says so)
        if (f.ticket_id) {
          state.solved = true;
          clearTimeout(state.waitTimer);
          offline.hidden = true;
          rating.hidden = true;
          setSubtitle();
        }
        break;
      case "email_fallback":
        state.emailWanted = f.email;
        save();
        offline.hidden = true;
        setSubtitle();
        systemLine(`Thanks! We will answer you at ${f.email} by email.`);
        break;
      case "error":
        if (f.code === "unauthorized") { reset(); return; }
        if (f.client_id) {
          const el = state.byClient.get(f.client_id);
          state.pending = state.pending.filter((p) => p.client_id !== f.client_id);
          save();
          if (el) setState(el, `Not sent: ${f.message || f.code}`, true);
        } else if (f.code === "already_rated" || f.code === "not_rateable") {
          rating.hidden = true;
        } else if (f.message) {
          ratingError.textContent = rating.hidden ? "" : f.message;
          offlineError.textContent = offline.hidden ? "" : f.message;
        }
        break;
      default: break; // heartbeat, pong
    }
  }

  // What an error answer says: `detail` is a string, or for a 422 a list of {loc, msg, type}.
  function errorText(body) {
    const d = body && body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d) && d.length && typeof d[0].msg === "string") return d.map((e) => e.msg).join("; ");
    return null;
  }

  function reset() {
    clearTimeout(state.waitTimer);
    offline.hidden = true;
    state.token = null;
    state.pending = [];
    state.emailWanted = null;
    state.ticketId = null;
    state.solved = false;
    state.agentName = null;
    state.lastId = 0;
    state.shown.clear();
    state.byClient.clear();
    log.replaceChildren();
    save();
    if (state.ws) state.ws.close();
    showComposer(false);
    if (state.open) start();
  }

  function flushDelivered() {
    if (!state.open || document.visibilityState === "hidden" || !state.undelivered.length) return;
    if (send({ type: "delivered", message_ids: state.undelivered.slice(0, 200) })) state.undelivered = [];
  }
  document.addEventListener("visibilitychange", flushDelivered);

  function askRating(ticketId) {
    rating.dataset.ticket = String(ticketId);
    rating.hidden = false;
    state.solved = true;
    setSubtitle();
    solvedLine();
    log.after(rating);
    scrollDown();
  }
  function solvedLine() {
    log.append(h("div", { class: "system solved", role: "status", text: "This conversation was marked as solved." }));
    scrollDown();
  }
  // The visitor wrote after their conversation was solved: the server opened a new one (linked to the old one
  // for the agent); say so, and forget the old one's agent and email answer.
  function newConversation() {
    state.solved = false;
    state.agentName = null;
    state.emailWanted = null;
    save();
    rating.hidden = true;
    systemLine("A new conversation has started. We will be with you shortly.");
    setSubtitle();
  }
  rating.addEventListener("submit", (e) => {
    e.preventDefault();
    const picked = rating.querySelector("input[name=score]:checked");
    if (!picked) { ratingError.textContent = "Pick from 1 to 5 stars."; return; }
    ratingError.textContent = "";
    send({ type: "rating", ticket_id: Number(rating.dataset.ticket), score: Number(picked.value), comment: ratingComment.value });
  });

  // --- writing -------------------------------------------------------------------------------------------------------
  function submitMessage(text, attachments) {
    const p = { client_id: newId(), text, attachments: attachments || [], created_at: new Date().toISOString() };
    state.pending.push(p);
    save();
    renderMessage({ ...p, direction: "inbound" });
    send({ type: "message", client_id: p.client_id, text: p.text, attachments: p.attachments.map((a) => ({ sha256: a.sha256, filename: a.filename })) });
    stopTyping();
  }
  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    autosize();
    fileError("");
    submitMessage(text);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); composer.requestSubmit(); }
  });
  function autosize() { input.style.height = "auto"; input.style.height = `${Math.min(120, input.scrollHeight)}px`; }
  input.addEventListener("input", () => {
    autosize();
    const now = Date.now();
    if (!state.typingActive || now - state.typingSent > 2500) {
      if (send({ type: "typing", active: true })) { state.typingActive = true; state.typingSent = now; }
    }
    clearTimeout(state.idleTimer);
    state.idleTimer = setTimeout(stopTyping, 3000);
  });
  function stopTyping() {
    clearTimeout(state.idleTimer);
    if (state.typingActive) { state.typingActive = false; send({ type: "typing", active: false }); }
  }

  // --- self-service answers -------------------------------------------------------------------------------------------
  let answersAsked = 0;
  input.addEventListener("input", () => {
    clearTimeout(state.answersTimer);
    state.answersTimer = setTimeout(offerAnswers, 350);
  });
  async function offerAnswers() {
    const q = input.value.trim();
    if (state.agentName || q.length < 4 || q.length > 200 || state.noAnswers) { if (!q) answers.hidden = true; return; }
    const asked = ++answersAsked;
    try {
      const lang = (navigator.language || "").split("-")[0];
      const r = await fetch(`${origin}/api/kb/public/answers?q=${encodeURIComponent(q)}${lang ? `&locale=${encodeURIComponent(lang)}` : ""}`);
      if (r.status === 404) { state.noAnswers = true; return; }
      if (!r.ok || asked !== answersAsked) return;
      const items = await r.json();
      answerList.replaceChildren(...items.map((a) => h("li", {},
        h("a", { href: `${origin}${a.url}`, target: "_blank", rel: "noopener", text: a.title }),
        h("button", { type: "button", text: "This solved it", "aria-label": `“${a.title}” solved my question`, onclick: () => solved(a, q) }))));
      answers.hidden = items.length === 0 || !!state.agentName;
    } catch { /* no answers this time */ }
  }
  // "This solved it": the knowledge base counts the deflection, and a conversation already waiting for an agent
  // closes as deflected (the `solved` frame; the server answers `deflected`). Writing again opens a new one.
  async function solved(article, q) {
    answers.hidden = true;
    input.value = "";
    autosize();
    send({ type: "solved", article_id: article.id, title: article.title });
    try {
      await fetch(`${origin}/api/kb/public/solved`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ article_id: article.id, query: q }),
      });
    } catch { /* counted or not, the visitor has their answer */ }
    systemLine(`Glad “${article.title}” helped! Write again any time if you need us.`);
  }

  function fileError(text) {
    fileNotice.textContent = text;
    fileNotice.hidden = !text;
  }
  function size(bytes) {
    return bytes >= 1024 * 1024 ? `${+(bytes / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
  }
  const ALLOWED = "Only images (PNG, JPEG, GIF, WebP) and PDF files can be sent.";
  fileInput.addEventListener("change", async () => {
    const file = fileInput.files && fileInput.files[0];
    fileInput.value = "";
    if (!file) return;
    fileError("");
    const types = (state.config && state.config.attachment_types) || ["application/pdf", "image/gif", "image/jpeg", "image/png", "image/webp"];
    if (file.type && !types.includes(file.type)) { fileError(`“${file.name}” cannot be sent. ${ALLOWED}`); return; }
    const max = (state.config && state.config.max_attachment_bytes) || 5 * 1024 * 1024;
    if (file.size > max) { fileError(`“${file.name}” is too large (${size(file.size)}); files can be at most ${size(max)}.`); return; }
    const form = new FormData();
    form.append("file", file, file.name);
    attachBtn.disabled = true;
    try {
      const r = await fetch(`${origin}/api/chat/attachments`, { method: "POST", headers: { Authorization: `Bearer ${state.token}` }, body: form });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) {
        const why = r.status === 415 ? ALLOWED : r.status === 413 ? `Files can be at most ${size(max)}.` : errorText(body) || "";
        fileError(`“${file.name}” could not be sent. ${why}`.trim());
        return;
      }
      submitMessage(input.value.trim(), [body]);
      input.value = "";
      autosize();
    } catch {
      fileError(`“${file.name}” could not be sent. Please try again.`);
    } finally {
      attachBtn.disabled = false;
    }
  });

  // --- go ----------------------------------------------------------------------------------------------------------------
  function mount() {
    document.body.append(host);
    window.__switchboardChat = { open: () => toggle(true), close: () => toggle(false), reset };
    updateBadge();
    if (state.open) toggle(true);
    else if (state.token) connect();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
