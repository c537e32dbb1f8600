// The browser phone: where the calls the agent accepts ring (this browser, or their own phone), and, in the
// browser, Twilio's Voice JavaScript SDK loaded from the hub (/static/vendor/twilio-voice, never a CDN) with an
// access token from the hub (POST /api/twilio/phone/token). The Device registers while the agent is available;
// a call that rings shortly after they accepted a voice offer is answered at once (accepting was the answer),
// any other shows "Answer". Without Twilio credentials on the server the control says so instead.
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
const SDK = "/static/vendor/twilio-voice/twilio.min.js";
const RING = "/static/console/sounds/ring.wav";
const TONE = "/static/console/sounds/tone.wav";
const SOUND_NAMES = ["disconnect", "outgoing", "dtmf0", "dtmf1", "dtmf2", "dtmf3", "dtmf4", "dtmf5", "dtmf6",
  "dtmf7", "dtmf8", "dtmf9", "dtmfs", "dtmfh"];
const ACCEPT_WINDOW_MS = 60_000; // a call ringing this soon after accepting a voice offer is that offer's

const phone = {
  info: null, // GET /api/twilio/phone
  device: null,
  call: null, // the Twilio.Call ringing or in progress
  accepted: 0, // when the agent last accepted a voice offer
  available: false,
};

function say(text, state) {
  const el = $("phone-status");
  el.textContent = text;
  el.dataset.state = state;
}

function loadSdk() {
  if (window.Twilio && window.Twilio.Device) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = SDK;
    s.onload = () => resolve();
    s.onerror = () => reject(new Error("the browser phone's SDK did not load"));
    document.head.append(s);
  });
}

async function token() {
  return (await api("POST", "/api/twilio/phone/token")).token;
}

function showCall() {
  const ringing = phone.call && phone.call.status() === "pending";
  $("phone-answer").hidden = !ringing;
  $("phone-hangup").hidden = !phone.call;
}

function follow(call) {
  phone.call = call;
  const done = () => { phone.call = null; showCall(); say("Browser phone: ready", "ready"); };
  call.on("accept", () => { showCall(); say("On a call", "call"); });
  call.on("disconnect", done);
  call.on("cancel", done);
  call.on("reject", done);
  call.on("error", (e) => say(`Call failed: ${e.message}`, "error"));
  if (Date.now() - phone.accepted < ACCEPT_WINDOW_MS) {
    phone.accepted = 0;
    call.accept();
  } else {
    say("A call is ringing", "ringing");
  }
  showCall();
}

async function startDevice() {
  if (phone.device) return;
  say("Browser phone: starting…", "starting");
  try {
    await loadSdk();
    const sounds = { incoming: RING };
    for (const name of SOUND_NAMES) sounds[name] = TONE;
    // publishEvents: no call-quality reports to Twilio's event gateway (the console's CSP lets it speak HTTP to the hub only).
    phone.device = new window.Twilio.Device(await token(), { sounds, closeProtection: true, publishEvents: false });
  } catch (err) {
    say(`Browser phone unavailable: ${err.message}`, "error");
    return;
  }
  const device = phone.device;
  device.on("registered", () => say("Browser phone: ready", "ready"));
  device.on("unregistered", () => say("Browser phone: not receiving calls (set yourself available)", "idle"));
  device.on("error", (e) => say(`Browser phone: ${e.message}`, "error"));
  device.on("incoming", follow);
  device.on("tokenWillExpire", async () => {
    try { device.updateToken(await token()); } catch (err) { say(`Browser phone: ${err.message}`, "error"); }
  });
  say("Browser phone: not receiving calls (set yourself available)", "idle");
  register();
}

function stopDevice() {
  if (!phone.device) return;
  phone.device.destroy();
  phone.device = null;
  phone.call = null;
  showCall();
}

// Registered (reachable by Twilio) only while the agent is available.
function register() {
  const d = phone.device;
  if (!d) return;
  const registered = d.state === "registered" || d.state === "registering";
  if (phone.available && !registered) d.register().catch((e) => say(`Browser phone: ${e.message}`, "error"));
  else if (!phone.available && d.state === "registered" && !phone.call) d.unregister().catch(() => {});
}

function show(info) {
  phone.info = info;
  $("phone").hidden = false;
  const where = $("phone-where");
  where.querySelector("option[value=browser]").disabled = !info.browser_available;
  where.querySelector("option[value=phone]").disabled = !info.own_number;
  where.value = info.answer_on === "console" ? "" : info.answer_on;
  where.hidden = info.answer_on === "console";
  $("phone-status").title = info.browser_unavailable_reason || "";
  if (info.answer_on === "browser") {
    startDevice();
    return;
  }
  stopDevice();
  if (info.answer_on === "phone") say("Calls you accept ring your own phone", "phone");
  else say("Browser phone unavailable without Twilio credentials", "unavailable");
}

export async function startPhone() {
  let info;
  try {
    info = await api("GET", "/api/twilio/phone");
  } catch {
    return; // no phone channel on this server
  }
  $("phone-where").addEventListener("change", async (e) => {
    try { show(await api("PUT", "/api/twilio/phone", { answer_on: e.target.value })); }
    catch (err) { say(err.message, "error"); }
  });
  $("phone-answer").addEventListener("click", () => phone.call && phone.call.accept());
  $("phone-hangup").addEventListener("click", () => {
    if (!phone.call) return;
    if (phone.call.status() === "pending") phone.call.reject();
    else phone.call.disconnect();
  });
  show(info);
}

// The console's status control: the browser phone takes calls only while the agent is available.
export function phoneStatus(status) {
  phone.available = status === "available";
  register();
}

// The agent accepted a voice offer: the call about to ring in the browser is answered at once.
export function phoneAccepted() {
  phone.accepted = Date.now();
  if (phone.call && phone.call.status() === "pending") {
    phone.accepted = 0;
    phone.call.accept();
  }
}
