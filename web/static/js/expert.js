// The expert's desk: availability, the department queue, offers, the call, the outcome.
import { chatPanel } from "./chat.js";
import { confirmDialog } from "./confirm.js";
import { onLanguageChange, t } from "./i18n.js";
import { byTestId, startPage } from "./session.js";
import { FilePanel } from "./files.js";
import { MediaLink } from "./peer.js";
import { connectSignal } from "./signal.js";

let signal = null;
let presence = "away";
let offer = null;
let callId = null;
let lastEndedId = null;
let queue = { entries: [], experts: [] };
let countdownTimer = null;
let media = null;
let files = null;

function renderAvailability() {
  const button = byTestId("availability");
  const on = presence === "available" || presence === "busy";
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.disabled = presence === "busy";
  const key = on ? "expert.available" : "expert.away";
  button.dataset.i18n = key;
  button.textContent = t(key);
}

function renderQueue() {
  const list = byTestId("queue-list");
  list.replaceChildren();
  if (queue.entries.length === 0) {
    const empty = document.createElement("li");
    empty.className = "muted";
    empty.textContent = t("expert.queue_empty");
    list.append(empty);
    return;
  }
  const now = Date.now() / 1000;
  for (const entry of queue.entries) {
    const item = document.createElement("li");
    const minutes = Math.floor((now - entry.waiting_since) / 60);
    const caseText = entry.case_number ? t("expert.case", { case: entry.case_number }) : t("expert.no_case");
    item.textContent = `${caseText} · ${t("expert.waiting_for", { minutes })}`;
    list.append(item);
  }
}

function renderOffer() {
  const panel = document.getElementById("offer-panel");
  clearInterval(countdownTimer);
  if (!offer) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  document.getElementById("offer-case").textContent = offer.case_number
    ? t("expert.case", { case: offer.case_number })
    : t("expert.no_case");
  const tick = () => {
    const left = Math.max(0, Math.ceil(offer.expires_at - Date.now() / 1000));
    document.getElementById("offer-countdown").textContent = t("expert.countdown", { seconds: left });
  };
  tick();
  countdownTimer = setInterval(tick, 500);
}

function applyConsultation(view) {
  if (view.state === "active") {
    callId = view.consultation_id;
    offer = null;
    renderOffer();
    document.getElementById("call-view").hidden = false;
    document.getElementById("outcome-view").hidden = true;
    byTestId("call-status").textContent = t("expert.in_call");
    if (view.media) media.start(view.media);
    files.load();
  } else if (view.state === "ended" && view.consultation_id === callId) {
    lastEndedId = callId;
    callId = null;
    media.stop();
    document.getElementById("call-view").hidden = true;
    document.getElementById("outcome-view").hidden = false;
    document.getElementById("outcome-saved").textContent = "";
  }
}

async function onLogin() {
  const chat = chatPanel({
    list: document.getElementById("chat-list"),
    input: byTestId("chat-input"),
    button: byTestId("chat-send"),
    mySide: "expert",
    send: (text) => signal.send("send_chat", { consultation_id: callId, text }),
  });
  onLanguageChange(() => {
    renderAvailability();
    renderQueue();
    renderOffer();
  });
  media = new MediaLink({ localVideo: byTestId("local-video"), remoteVideo: byTestId("remote-video") });
  files = new FilePanel({
    input: byTestId("file-input"),
    list: byTestId("file-list"),
    consultation: () => callId,
  });
  signal = connectSignal({
    onConnect: async () => {
      media.reconnect();
      const state = await signal.send("get_state");
      if (state.presence) presence = state.presence.status;
      offer = state.offer;
      if (state.consultation) applyConsultation(state.consultation);
      queue = await signal.send("get_queue");
      renderAvailability();
      renderQueue();
      renderOffer();
    },
  });
  signal.on("presence", (view) => {
    presence = view.status;
    renderAvailability();
  });
  signal.on("queue_updated", (update) => {
    queue = update;
    renderQueue();
  });
  signal.on("offer", (view) => {
    offer = view;
    renderOffer();
  });
  signal.on("offer_revoked", (view) => {
    if (offer && offer.consultation_id === view.consultation_id) {
      offer = null;
      renderOffer();
    }
  });
  signal.on("consultation", applyConsultation);
  signal.on("chat_message", (message) => chat.add(message));
  signal.on("file_added", (view) => files.add(view));
  signal.on("peer_status", (status) => {
    byTestId("call-status").textContent =
      status.status === "reconnecting" ? t("expert.kiosk_reconnecting") : t("expert.in_call");
  });

  byTestId("availability").addEventListener("click", async () => {
    const next = presence === "available" ? "away" : "available";
    const view = await signal.send("set_presence", { status: next });
    presence = view.status;
    renderAvailability();
  });
  byTestId("accept-call").addEventListener("click", async () => {
    if (!offer) return;
    const view = await signal.send("accept_offer", { consultation_id: offer.consultation_id });
    chat.clear();
    files.clear();
    applyConsultation(view);
  });
  byTestId("decline-call").addEventListener("click", async () => {
    if (!offer) return;
    await signal.send("decline_offer", { consultation_id: offer.consultation_id }).catch(() => {});
    offer = null;
    renderOffer();
  });
  byTestId("end-call").addEventListener("click", async () => {
    if (callId && (await confirmDialog("call.end_confirm"))) {
      const view = await signal.send("end_consultation", { consultation_id: callId });
      applyConsultation(view);
    }
  });
  byTestId("save-outcome").addEventListener("click", async () => {
    if (!lastEndedId) return;
    await signal.send("save_outcome", {
      consultation_id: lastEndedId,
      outcome: byTestId("outcome").value,
      notes: byTestId("notes").value,
    });
    document.getElementById("outcome-saved").textContent = t("expert.saved");
    byTestId("notes").value = "";
  });
  setInterval(renderQueue, 30000);
}

startPage({ roles: ["expert"], onLogin });
