// The pretend social app of `switchboard demo`: write as a Messenger, Instagram, WhatsApp or Telegram customer.
// Each message is built as the provider's webhook would carry it, signed by the hub's demo-only signer
// (/api/social/demo/sign: the demo's own app secret or bot secret), and posted to the real webhook
// (/webhooks/meta, /webhooks/telegram/{bot}). The agent's replies leave through the real senders to the demo's
// stand-in for the providers' send APIs; this page polls what it caught for this customer
// (/api/social/demo/replies). It talks to the hub over HTTP only.

const $ = (id) => document.getElementById(id);
const POLL_MS = 1500;
const tabs = [...document.querySelectorAll(".app-tab")];
let app = null; // {name, account}
let timer = null;
let shown = "";

function digits(n) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b, i) => (i === 0 ? 1 + (b % 9) : b % 10)).join("");
}

// Who this browser is on each app: kept, so a reload continues the same conversation.
function customer(name) {
  const key = `sb-demo-social:${name}:id`;
  let id = localStorage.getItem(key);
  if (!id) {
    id = { messenger: digits(16), instagram: digits(17), whatsapp: "4915" + digits(8), telegram: digits(9) }[name];
    localStorage.setItem(key, id);
  }
  return id;
}

function mine(name) {
  try { return JSON.parse(localStorage.getItem(`sb-demo-social:${name}:sent`) || "[]"); } catch { return []; }
}

function remember(name, text, at) {
  const list = mine(name).concat([{ text, at }]).slice(-200);
  localStorage.setItem(`sb-demo-social:${name}:sent`, JSON.stringify(list));
}

function status(text) { $("status").textContent = text; }

function webhookOf(name, account, from, who, text) {
  const now = Date.now();
  const id = digits(12);
  if (name === "telegram") {
    const person = { id: Number(from), is_bot: false, first_name: who };
    return {
      path: `/webhooks/telegram/${encodeURIComponent(account)}`, to: "telegram", bot: account,
      payload: {
        update_id: now * 10 + Number(digits(1)),
        message: { message_id: now % 1e9, from: person, chat: { ...person, type: "private" }, date: Math.floor(now / 1000), text },
      },
    };
  }
  if (name === "whatsapp") {
    const value = {
      messaging_product: "whatsapp",
      metadata: { display_phone_number: "15550100", phone_number_id: account },
      contacts: [{ profile: { name: who }, wa_id: from }],
      messages: [{ from, id: `wamid.demo${id}`, timestamp: String(Math.floor(now / 1000)), type: "text", text: { body: text } }],
    };
    return {
      path: "/webhooks/meta", to: "meta",
      payload: { object: "whatsapp_business_account", entry: [{ id: "demo-waba", changes: [{ field: "messages", value }] }] },
    };
  }
  const event = { sender: { id: from }, recipient: { id: account }, timestamp: now, message: { mid: `m_demo${id}`, text } };
  return {
    path: "/webhooks/meta", to: "meta",
    payload: { object: name === "instagram" ? "instagram" : "page", entry: [{ id: account, time: now, messaging: [event] }] },
  };
}

async function send(text) {
  const who = $("name").value.trim() || "Sam Customer";
  const hook = webhookOf(app.name, app.account, customer(app.name), who, text);
  const body = JSON.stringify(hook.payload);
  const signed = await fetch("/api/social/demo/sign", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ to: hook.to, bot: hook.bot || null, body }),
  });
  if (!signed.ok) throw new Error(`the demo signer answered ${signed.status}`);
  const { header, value } = await signed.json();
  const r = await fetch(hook.path, { method: "POST", headers: { "Content-Type": "application/json", [header]: value }, body });
  if (!r.ok) throw new Error(`${hook.path} answered ${r.status}`);
}

function render(replies) {
  const items = mine(app.name).map((m) => ({ ...m, cls: "mine" }))
    .concat(replies.map((m) => ({ ...m, cls: "theirs" })))
    .sort((a, b) => a.at - b.at);
  const key = app.name + JSON.stringify(items);
  if (key === shown) return;
  shown = key;
  const list = $("conversation");
  list.replaceChildren(...items.map((m) => {
    const li = document.createElement("li");
    li.className = m.cls;
    li.textContent = m.text;
    return li;
  }));
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "system";
    li.textContent = "No messages yet: say hello.";
    list.append(li);
  }
  list.scrollTop = list.scrollHeight;
}

async function poll() {
  clearTimeout(timer);
  const current = app;
  try {
    const q = new URLSearchParams({ channel: current.name, customer: customer(current.name) });
    const r = await fetch(`/api/social/demo/replies?${q}`);
    if (r.ok && current === app) render(await r.json());
  } catch { /* the next poll tries again */ }
  if (current === app) timer = setTimeout(poll, POLL_MS);
}

function pick(tab) {
  for (const t of tabs) t.setAttribute("aria-pressed", String(t === tab));
  app = { name: tab.dataset.app, account: tab.dataset.account };
  shown = "";
  status(`Writing on ${tab.textContent} as customer ${customer(app.name)}`);
  render([]);
  poll();
}

for (const tab of tabs) tab.addEventListener("click", () => pick(tab));

$("compose").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text || !app) return;
  $("send").disabled = true;
  try {
    await send(text);
    remember(app.name, text, Date.now() / 1000);
    $("text").value = "";
    status("Delivered to the hub. An agent answers from the console.");
    shown = "";
    poll();
  } catch (err) {
    status(`Not sent: ${err.message}`);
  } finally {
    $("send").disabled = false;
  }
});

const first = tabs.find((t) => !t.disabled);
if (first) pick(first);
