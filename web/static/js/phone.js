// The citizen's own phone, opened from the kiosk's QR code: choose or take photos
// and send them into the call, once. The link in the address is all this page
// holds; it shows nothing of the consultation (web/phone_upload_api.py).
import { applyTranslations, initLanguage, setText } from "./i18n.js";
import { formatSize } from "./files.js";

const token = location.pathname.split("/").pop();
const base = `/api/v1/phone-links/${encodeURIComponent(token)}`;
const card = document.querySelector("[data-testid=phone-state]");
const message = document.getElementById("phone-message");
const form = document.getElementById("phone-form");
const input = document.querySelector("[data-testid=phone-file-input]");
const list = document.getElementById("phone-files");
const send = document.querySelector("[data-testid=phone-send]");

let limits = null;
let claim = null;
let chosen = [];
let sent = 0;

function show(state, key, vars) {
  card.dataset.state = state;
  setText(message, key, vars);
  form.hidden = !["ready", "chosen", "failed"].includes(state);
}

async function answer(response) {
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw Object.assign(new Error("phone"), { status: response.status, code: data?.error?.code });
  }
  return data;
}

function allowed(file) {
  const name = file.name.toLowerCase();
  return limits.extensions.some((ext) => name.endsWith(ext));
}

function problemKey(err) {
  if (err.code === "link_expired") return "phone.expired";
  if (err.status === 410 || err.code === "link_used") return "phone.used";
  if (err.status === 404) return "phone.invalid";
  if (err.code === "unsupported_type" || err.code === "type_mismatch") return "files.wrong_type";
  if (err.code === "too_large" || err.status === 413) return "files.too_large";
  if (err.code === "bad_name") return "files.bad_name";
  return "phone.failed";
}

function choose() {
  chosen = [...input.files];
  input.value = "";
  list.replaceChildren();
  for (const file of chosen) {
    const row = document.createElement("li");
    const name = document.createElement("span");
    name.className = "file-name";
    name.translate = false;
    name.textContent = file.name;
    const size = document.createElement("span");
    size.className = "muted";
    size.textContent = formatSize(file.size);
    row.append(name, size);
    list.append(row);
  }
  if (chosen.length === 0) return;
  if (chosen.length > limits.max_files) return show("failed", "phone.too_many", { n: limits.max_files });
  if (!chosen.every(allowed)) return show("failed", "files.wrong_type");
  if (chosen.some((file) => file.size > limits.max_file_size)) return show("failed", "files.too_large");
  send.disabled = false;
  return show("chosen", "phone.ready_to_send", { n: chosen.length });
}

async function sendAll() {
  send.disabled = true;
  input.disabled = true;
  try {
    if (!claim) {
      const response = await fetch(`${base}/claim`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ files: chosen.map((file) => ({ name: file.name, size: file.size })) }),
      });
      claim = (await answer(response)).claim;
    }
    while (sent < chosen.length) {
      const file = chosen[sent];
      show("sending", "phone.sending", { n: sent + 1, total: chosen.length });
      const response = await fetch(`${base}/files?name=${encodeURIComponent(file.name)}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${claim}`, "Content-Type": "application/octet-stream" },
        body: file,
      });
      await answer(response);
      sent += 1;
    }
    list.replaceChildren();
    show("done", "phone.done", { n: sent });
  } catch (err) {
    const key = problemKey(err);
    // A file refused (type, size) can be sent again under the same claim; a link
    // that is gone cannot.
    const gone = ["phone.expired", "phone.used", "phone.invalid"].includes(key);
    show(gone ? "gone" : "failed", key);
    send.disabled = gone;
    input.disabled = gone || claim !== null;
  }
}

async function start() {
  initLanguage(document.querySelector("[data-testid=lang-toggle]"));
  try {
    limits = await answer(await fetch(base));
    if (limits.state === "ready") show("ready", "phone.intro");
    else show("gone", limits.state === "expired" ? "phone.expired" : "phone.used");
  } catch (err) {
    show("gone", err.status === 404 ? "phone.invalid" : "phone.failed");
  }
  input.addEventListener("change", choose);
  send.addEventListener("click", sendAll);
  applyTranslations();
  document.body.dataset.ready = "true";
}

start();
