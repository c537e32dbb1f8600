// The demo phone: a pretend call into the demo's phone menu through the same signed webhooks Twilio uses.
// Each webhook is signed by the hub's demo-only signer (/api/twilio/demo/sign, `switchboard demo` only), posted
// as Twilio would post it, and its TwiML is played here: <Say> read aloud and written to the transcript,
// <Gather> waits for keys or typed words, <Record> for a message, <Dial><Conference> holds until an agent
// answers. It talks to the hub over HTTP only.

const $ = (id) => document.getElementById(id);
const TO = document.querySelector("script[data-to]").dataset.to;
const ACCOUNT = "AC" + "0".repeat(32);

let call = null; // {sid, from, started, seq}
let waiting = null; // what the current TwiML waits for: {kind: "gather"|"record", action, numDigits, finishOnKey}
let digits = "";
let timer = null;
let holdTimer = null;

function hex(n) {
  const bytes = crypto.getRandomValues(new Uint8Array(n / 2));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function note(text, cls = "") {
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  $("transcript").append(li);
  li.scrollIntoView({ block: "nearest" });
}

function status(text) {
  $("status").textContent = text;
}

function speak(text, lang) {
  note(text);
  if (!$("speak").checked || !("speechSynthesis" in window)) return;
  const u = new SpeechSynthesisUtterance(text);
  if (lang) u.lang = lang;
  window.speechSynthesis.speak(u);
}

function params(extra = {}) {
  return {
    AccountSid: ACCOUNT, ApiVersion: "2010-04-01", CallSid: call.sid, From: call.from, To: TO, Caller: call.from,
    Called: TO, Direction: "inbound", CallStatus: "in-progress", ...extra,
  };
}

async function webhook(url, body) {
  const u = new URL(url, location.origin);
  const path = u.pathname + u.search;
  const signed = await fetch("/api/twilio/demo/sign", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ path, params: body }),
  });
  if (!signed.ok) throw new Error(`the demo signer answered ${signed.status}`);
  const { signature } = await signed.json();
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature },
    body: new URLSearchParams(body),
  });
  if (!r.ok) throw new Error(`${path} answered ${r.status}`);
  return r.text();
}

function clearWaits() {
  clearTimeout(timer);
  timer = null;
  waiting = null;
  digits = "";
  $("silence").disabled = true;
  $("stop-recording").hidden = true;
}

async function answer(extra) {
  const w = waiting;
  if (!w || !call) return;
  clearWaits();
  try {
    await play(await webhook(w.action, params(extra)));
  } catch (e) {
    status(`Error: ${e.message}`);
  }
}

async function play(text) {
  const root = new DOMParser().parseFromString(text, "application/xml").documentElement;
  for (const el of Array.from(root.children)) {
    if (!call) return;
    if (el.tagName === "Say") speak(el.textContent, el.getAttribute("language"));
    else if (el.tagName === "Play") note("(music)", "system");
    else if (el.tagName === "Pause") note("(pause)", "system");
    else if (el.tagName === "Gather") {
      let chars = 0;
      for (const p of Array.from(el.children)) {
        if (p.tagName === "Say") { speak(p.textContent, p.getAttribute("language")); chars += p.textContent.length; }
      }
      waiting = {
        kind: "gather", action: el.getAttribute("action"),
        numDigits: Number(el.getAttribute("numDigits") || 0), finishOnKey: el.getAttribute("finishOnKey") ?? "#",
      };
      const seconds = Number(el.getAttribute("timeout") || 5);
      status("Press keys, or type what you would say");
      $("silence").disabled = false;
      // The prompts take time to read: the menu times out after them, as on a real line.
      timer = setTimeout(() => answer({}), seconds * 1000 + chars * 70);
      return;
    } else if (el.tagName === "Record") {
      waiting = { kind: "record", action: el.getAttribute("action") };
      status("Recording: leave your message, then finish it");
      note("(beep)", "system");
      $("stop-recording").hidden = false;
      return;
    } else if (el.tagName === "Dial") {
      const room = el.querySelector("Conference");
      if (room) {
        status("On hold, waiting for an agent");
        note("(on hold, waiting for an agent)", "system");
        hold(room.getAttribute("waitUrl"), el.getAttribute("action"));
        return;
      }
      note(`(transferring to ${el.textContent.trim()})`, "system");
      waiting = { kind: "dial", action: el.getAttribute("action") };
      await answer({ DialCallStatus: "completed" });
      return;
    } else if (el.tagName === "Hangup" || el.tagName === "Reject") {
      await ended("The call ended");
      return;
    }
  }
}

function hold(waitUrl, leftUrl) {
  let last = "";
  const poll = async () => {
    if (!call) return;
    try {
      const text = await webhook(waitUrl, params());
      const root = new DOMParser().parseFromString(text, "application/xml").documentElement;
      const said = Array.from(root.getElementsByTagName("Say")).map((s) => s.textContent).join(" ");
      if (said && said !== last) { speak(said, root.getElementsByTagName("Say")[0].getAttribute("language")); last = said; }
      if (!root.getElementsByTagName("Play").length) {
        status("Connected to an agent");
        note("(connected)", "system");
        return; // answered: no more hold music
      }
    } catch (e) {
      status(`Error: ${e.message}`);
    }
    holdTimer = setTimeout(poll, 3000);
  };
  poll();
}

async function dial() {
  if (call) return;
  $("transcript").replaceChildren();
  call = { sid: "CA" + hex(32), from: $("from").value.trim() || "+14155550142", started: Date.now(), seq: 0 };
  $("call").disabled = true;
  $("hangup").disabled = false;
  status(`Calling ${TO}…`);
  note(`You call ${TO} from ${call.from}`, "system");
  try {
    await play(await webhook("/webhooks/twilio/voice", params({ CallStatus: "ringing" })));
  } catch (e) {
    status(`Error: ${e.message}`);
  }
}

async function ended(text) {
  const c = call;
  if (!c || c.ending) return;
  c.ending = true;
  clearWaits();
  clearTimeout(holdTimer);
  const seconds = Math.round((Date.now() - c.started) / 1000);
  try {
    await webhook("/webhooks/twilio/voice/status", params({ CallStatus: "completed", CallDuration: String(seconds), SequenceNumber: "9" }));
  } catch (e) {
    /* the call is over either way */
  }
  call = null;
  if ("speechSynthesis" in window) window.speechSynthesis.cancel();
  status(text);
  note(`(${text.toLowerCase()} after ${seconds} s)`, "system");
  $("call").disabled = false;
  $("hangup").disabled = true;
}

function key(k) {
  if (!call) { $("from").value += k; return; }
  note(`You press ${k}`, "caller");
  if (!waiting || waiting.kind !== "gather") return;
  if (k === waiting.finishOnKey && waiting.finishOnKey !== "") { answer({ Digits: digits }); return; }
  digits += k;
  if (waiting.numDigits && digits.length >= waiting.numDigits) answer({ Digits: digits });
  else { clearTimeout(timer); timer = setTimeout(() => answer({ Digits: digits }), 5000); }
}

for (const b of document.querySelectorAll(".key")) b.addEventListener("click", () => key(b.dataset.key));
$("call").addEventListener("click", dial);
$("hangup").addEventListener("click", () => ended("You hung up"));
$("silence").addEventListener("click", () => { note("(silence)", "caller"); answer({}); });
$("stop-recording").addEventListener("click", () => {
  note("(you finish your message)", "caller");
  const n = hex(32);
  answer({
    RecordingUrl: `https://api.twilio.com/2010-04-01/Accounts/${ACCOUNT}/Recordings/RE${n}`, RecordingSid: "RE" + n,
    RecordingDuration: "8",
  });
});
$("say-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const words = $("say").value.trim();
  if (!words || !call) return;
  $("say").value = "";
  note(`You say "${words}"`, "caller");
  if (waiting && waiting.kind === "gather") answer({ SpeechResult: words, Confidence: "0.9" });
});
