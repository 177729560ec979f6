// The citizen's kiosk: pick a department, wait, talk, rate, and leave no trace.
import { api } from "./api.js";
import { chatPanel } from "./chat.js";
import { confirmDialog } from "./confirm.js";
import { onLanguageChange, t } from "./i18n.js";
import { byTestId, startPage } from "./session.js";
import { FilePanel } from "./files.js";
import { MediaLink } from "./peer.js";
import { connectSignal } from "./signal.js";

const screens = ["start-screen", "waiting-screen", "call-screen", "after-screen"];
let signal = null;
let consultationId = null;
let lastPosition = null;
let departments = [];
let media = null;
let files = null;

function show(screen) {
  for (const id of screens) document.getElementById(id).hidden = id !== screen;
}

function renderDepartments() {
  const holder = document.getElementById("departments");
  holder.replaceChildren();
  for (const dept of departments) {
    const tile = document.createElement("button");
    tile.type = "button";
    tile.className = "tile";
    tile.dataset.testid = `department-${dept.code}`;
    tile.textContent = document.documentElement.lang === "en" ? dept.name_en : dept.name_zh;
    tile.addEventListener("click", () => requestConsultation(dept.code));
    holder.append(tile);
  }
}

function renderPosition() {
  const target = byTestId("queue-position");
  const wait = document.getElementById("wait-estimate");
  if (!lastPosition) {
    target.textContent = t("kiosk.waiting");
    wait.textContent = "";
    return;
  }
  target.textContent = t("kiosk.position", {
    ahead: lastPosition.position - 1,
    position: lastPosition.position,
  });
  wait.textContent =
    lastPosition.estimated_wait_s === null
      ? t("kiosk.wait_unknown")
      : t("kiosk.wait", { minutes: Math.max(1, Math.ceil(lastPosition.estimated_wait_s / 60)) });
}

async function requestConsultation(code) {
  const caseInput = byTestId("case-number");
  const caseNumber = caseInput.value.trim();
  const payload = { department: code };
  if (caseNumber) payload.case_number = caseNumber;
  try {
    const view = await signal.send("request_consultation", payload);
    applyConsultation(view);
  } catch (err) {
    showNotice(err.code === "invalid_payload" ? "error.generic" : "error.generic");
  }
}

function showNotice(key) {
  const notice = document.getElementById("notice");
  notice.dataset.i18n = key;
  notice.textContent = t(key);
}

function applyConsultation(view) {
  consultationId = view.consultation_id;
  if (view.state === "waiting" || view.state === "offered") {
    show("waiting-screen");
    document.getElementById("waiting-state").textContent =
      view.state === "offered" ? t("kiosk.offered") : t("kiosk.waiting");
    renderPosition();
  } else if (view.state === "active") {
    show("call-screen");
    byTestId("call-status").dataset.i18n = "kiosk.in_call";
    byTestId("call-status").textContent = t("kiosk.in_call");
    if (view.media) media.start(view.media);
    files.load();
  } else if (view.state === "ended") {
    media.stop();
    show("after-screen");
    const rating = document.getElementById("rating");
    rating.hidden = view.end_reason !== "completed" && view.end_reason !== "dropped";
    const message = view.end_reason === "no_expert" ? "kiosk.no_expert" : "kiosk.ended";
    document.getElementById("after-message").dataset.i18n = message;
    document.getElementById("after-message").textContent = t(message);
    if (rating.hidden) setTimeout(wipe, 8000);
  }
}

// Everything of this citizen goes: the page is rebuilt from the server and
// browser storage is emptied. The kiosk's own login is an HttpOnly cookie and stays.
function wipe() {
  try {
    localStorage.clear();
    sessionStorage.clear();
  } catch {
    // Nothing stored, or storage unavailable.
  }
  media?.stop();
  signal?.close();
  window.location.replace("/kiosk");
}

async function onLogin() {
  const data = await api("GET", "/api/v1/departments");
  departments = data.departments;
  renderDepartments();
  onLanguageChange(() => {
    renderDepartments();
    renderPosition();
  });
  const chat = chatPanel({
    list: document.getElementById("chat-list"),
    input: byTestId("chat-input"),
    button: byTestId("chat-send"),
    mySide: "kiosk",
    send: (text) => signal.send("send_chat", { consultation_id: consultationId, text }),
  });
  media = new MediaLink({ localVideo: byTestId("local-video"), remoteVideo: byTestId("remote-video") });
  files = new FilePanel({
    input: byTestId("file-input"),
    list: byTestId("file-list"),
    consultation: () => consultationId,
  });
  signal = connectSignal({
    onConnect: async () => {
      const state = await signal.send("get_state");
      if (state.consultation) applyConsultation(state.consultation);
      media.reconnect();
    },
  });
  signal.on("consultation", applyConsultation);
  signal.on("queue_position", (position) => {
    // The first position can arrive before the request's answer does.
    if (consultationId && position.consultation_id !== consultationId) return;
    consultationId = position.consultation_id;
    lastPosition = position;
    renderPosition();
  });
  signal.on("chat_message", (message) => chat.add(message));
  signal.on("file_added", (view) => files.add(view));
  signal.on("peer_status", (status) => {
    const el = byTestId("call-status");
    const key = status.status === "reconnecting" ? "kiosk.expert_reconnecting" : "kiosk.in_call";
    el.dataset.i18n = key;
    el.textContent = t(key);
  });
  byTestId("cancel-request").addEventListener("click", async () => {
    await signal.send("cancel_request", { consultation_id: consultationId }).catch(() => {});
    wipe();
  });
  byTestId("end-call").addEventListener("click", async () => {
    if (await confirmDialog("call.end_confirm")) {
      await signal.send("end_consultation", { consultation_id: consultationId }).catch(() => {});
    }
  });
  for (let score = 1; score <= 5; score += 1) {
    byTestId(`rating-${score}`).addEventListener("click", async () => {
      await signal
        .send("rate_consultation", { consultation_id: consultationId, rating: score })
        .catch(() => {});
      document.getElementById("after-message").textContent = t("kiosk.thanks");
      setTimeout(wipe, 1500);
    });
  }
  show("start-screen");
}

startPage({ roles: ["kiosk"], onLogin });
