// The social channels' admin page: accounts and their health (live, from the console's event stream), the
// webhook URLs to give Meta and Telegram, the approved templates, and reconnecting a page whose token expired.
// Everything through /api/social; text lands in the DOM as text.
import { api } from "../console/api.js";
import { ago, h } from "../console/dom.js";
import { EventStream } from "../console/stream.js";

const $ = (id) => document.getElementById(id);
const NAMES = { messenger: "Messenger page", instagram: "Instagram account", whatsapp: "WhatsApp number", telegram: "Telegram bot" };
let accounts = [];

async function load() {
  try {
    const [list, setup, templates] = await Promise.all([
      api("GET", "/api/social/accounts"), api("GET", "/api/social/setup"), api("GET", "/api/social/templates"),
    ]);
    accounts = list;
    renderAccounts();
    renderSetup(setup);
    renderTemplates(templates);
    $("error").textContent = "";
  } catch (err) {
    $("error").textContent = err.status === 403 ? "Only admins see the social channels' settings." : err.message;
  }
}

function renderAccounts() {
  $("no-accounts").hidden = accounts.length > 0;
  $("accounts").replaceChildren(...accounts.map((a) => {
    const reconnect = a.channel === "telegram"
      ? h("span", { class: "muted small", text: "token in SWITCHBOARD_TELEGRAM_BOTS" })
      : reconnectForm(a);
    return h("tr", { dataset: { account: `${a.channel}:${a.account}` } },
      h("td", { text: NAMES[a.channel] || a.channel }),
      h("td", { text: a.account }),
      h("td", { text: a.queue }),
      h("td", {}, h("span", { class: `health ${a.status}`, text: a.status === "ok" ? "ok" : a.detail || a.status })),
      h("td", { text: a.last_webhook_at ? `${ago(a.last_webhook_at)} ago` : "never" }),
      h("td", { text: a.last_sent_at ? `${ago(a.last_sent_at)} ago` : "—" }),
      h("td", {}, reconnect));
  }));
}

function reconnectForm(a) {
  const input = h("input", { type: "password", autocomplete: "off", "aria-label": `New access token for ${a.channel} ${a.account}`, placeholder: "new access token" });
  const save = async (e) => {
    e.preventDefault();
    try {
      await api("PUT", `/api/social/accounts/${encodeURIComponent(a.channel)}/${encodeURIComponent(a.account)}/token`, { access_token: input.value.trim() });
      input.value = "";
      await load();
    } catch (err) {
      $("error").textContent = err.message;
    }
  };
  return h("form", { class: "reconnect", onsubmit: save }, input, h("button", { class: "btn", type: "submit", text: "Save token" }));
}

function renderSetup(s) {
  const rows = [
    ["Meta callback URL", s.meta_webhook_url],
    ["Meta app secret", s.meta_app_secret_set ? "set" : "not set (SWITCHBOARD_META_APP_SECRET)"],
    ["Meta verify token", s.meta_verify_token_set ? "set" : "not set (SWITCHBOARD_META_VERIFY_TOKEN)"],
    ...s.telegram_webhooks.map((t) => [`Telegram setWebhook for ${t.bot}`, `${t.url} (with its secret_token)`]),
    ["Graph API", s.graph_url],
    ["Telegram Bot API", s.telegram_api_url],
  ];
  $("setup").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
}

function renderTemplates(list) {
  $("templates").replaceChildren(...(list.length ? list.map((t) =>
    h("li", {}, h("strong", { text: `${t.name} (${t.language})` }), ` ${t.body}`))
    : [h("li", { class: "muted small", text: "None configured." })]));
}

// Health changes arrive as channel.health events, as in the console.
const stream = new EventStream({
  onEvent: (e) => {
    if (e.type !== "channel.health") return;
    const d = e.data || {};
    const i = accounts.findIndex((a) => a.channel === d.channel && a.account === d.account);
    if (i >= 0) { accounts[i] = { ...accounts[i], ...d }; renderAccounts(); }
  },
  onState: () => {},
  onReset: () => load(),
});

load();
stream.start(null);
