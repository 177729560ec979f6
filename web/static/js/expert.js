// The expert's desk: availability, the department queue, ringing offers, the
// call, the outcome, and the expert's own history with its documents.
import { api } from "./api.js";
import { CallView } from "./call.js";
import { confirmDialog } from "./confirm.js";
import { fileRow } from "./files.js";
import { onLanguageChange, setText, textElement } from "./i18n.js";
import { Ringer } from "./ring.js";
import { byTestId, startPage } from "./session.js";
import { connectSignal } from "./signal.js";

let signal = null;
let presence = "away";
let offer = null;
let callId = null;
let lastEndedId = null;
let queue = { entries: [], experts: [] };
let countdownTimer = null;
let call = null;
const ringer = new Ringer();

function renderAvailability() {
  const button = byTestId("availability");
  const on = presence === "available" || presence === "busy";
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.disabled = presence === "busy";
  setText(button, presence === "busy" ? "expert.busy" : on ? "expert.available" : "expert.away");
}

function caseText(caseNumber) {
  return caseNumber ? { key: "expert.case", vars: { case: caseNumber } } : { key: "expert.no_case" };
}

function renderQueue() {
  const list = byTestId("queue-list");
  list.replaceChildren();
  if (queue.entries.length === 0) {
    list.append(textElement("li", "expert.queue_empty", null, "muted"));
    return;
  }
  const now = Date.now() / 1000;
  queue.entries.forEach((entry, index) => {
    const item = document.createElement("li");
    item.dataset.testid = "queue-entry";
    item.append(
      textElement("span", "expert.queue_entry", {
        n: index + 1,
        case: caseText(entry.case_number),
        wait: { duration: now - entry.waiting_since },
        state: { key: `expert.entry_state.${entry.state}` },
      }),
    );
    list.append(item);
  });
  // Long queues are cut at 50 entries: the rest is counted, not listed.
  if (queue.more > 0) {
    list.append(textElement("li", "expert.queue_more", { n: queue.more }, "muted"));
  }
}

function renderOffer() {
  const panel = document.getElementById("offer-panel");
  clearInterval(countdownTimer);
  if (!offer) {
    panel.hidden = true;
    ringer.stop();
    return;
  }
  const wasHidden = panel.hidden;
  panel.hidden = false;
  const caseLine = document.getElementById("offer-case");
  setText(caseLine, "expert.offer_case", { case: caseText(offer.case_number) });
  const tick = () => {
    const left = Math.max(0, Math.ceil(offer.expires_at - Date.now() / 1000));
    setText(document.getElementById("offer-countdown"), "expert.countdown", { seconds: left });
  };
  tick();
  countdownTimer = setInterval(tick, 500);
  if (wasHidden || !ringer.ringing) ringer.start(caseLine.textContent);
}

function showCall(view) {
  callId = view.consultation_id;
  offer = null;
  renderOffer();
  document.getElementById("call-view").hidden = false;
  document.body.classList.add("in-call");
  document.getElementById("outcome-view").hidden = true;
  setText(byTestId("call-status"), "expert.in_call_with", { case: caseText(view.case_number) });
  call.start(view);
}

function applyConsultation(view) {
  if (view.state === "active") {
    if (callId !== view.consultation_id) {
      call.clear();
    }
    showCall(view);
  } else if (view.state === "ended" && view.consultation_id === callId) {
    lastEndedId = callId;
    callId = null;
    call.clear();
    document.getElementById("call-view").hidden = true;
    document.body.classList.remove("in-call");
    document.getElementById("outcome-view").hidden = false;
    byTestId("outcome-saved").textContent = "";
    loadHistory();
  }
}

async function showHistoryFiles(record, row, button) {
  const existing = row.querySelector(".file-list");
  if (existing) {
    existing.remove();
    setText(button, "expert.history_files");
    return;
  }
  const list = document.createElement("ul");
  list.className = "file-list";
  row.append(list);
  setText(button, "expert.history_hide");
  const data = await api("GET", `/api/v1/consultations/${record.id}/files`).catch(() => ({ files: [] }));
  if (data.files.length === 0) list.append(textElement("li", "files.none", null, "muted"));
  for (const file of data.files) list.append(fileRow(file));
}

async function loadHistory() {
  const list = byTestId("history-list");
  let records = [];
  try {
    records = (await api("GET", "/api/v1/me/consultations")).consultations;
  } catch {
    return;
  }
  list.replaceChildren();
  if (records.length === 0) list.append(textElement("li", "expert.history_empty", null, "muted"));
  for (const record of records) {
    const row = document.createElement("li");
    row.dataset.testid = "history-row";
    const outcome = record.outcome ? { key: `outcome.${record.outcome}` } : { key: `end_reason.${record.end_reason ?? "open"}` };
    row.append(
      textElement("span", "expert.history_entry", {
        time: { time: record.waiting_at },
        case: caseText(record.case_number),
        outcome,
        duration: record.active_at && record.ended_at ? { duration: record.ended_at - record.active_at } : "—",
      }),
    );
    const files = textElement("button", "expert.history_files", null, "secondary small");
    files.type = "button";
    files.addEventListener("click", () => showHistoryFiles(record, row, files));
    row.append(files);
    list.append(row);
  }
}

async function onLogin() {
  call = new CallView({
    mySide: "expert",
    send: (event, payload) => signal.send(event, payload),
    consultation: () => callId,
    latestDocument: true,
  });
  onLanguageChange(() => renderQueue());
  signal = connectSignal({
    onConnect: async () => {
      const state = await signal.send("get_state");
      if (state.presence) presence = state.presence.status;
      offer = state.offer;
      if (state.consultation) applyConsultation(state.consultation);
      else if (callId) applyConsultation({ state: "ended", consultation_id: callId });
      if (callId) call.reconnectMedia();
      queue = await signal.send("get_queue");
      renderAvailability();
      renderQueue();
      renderOffer();
    },
    onDisconnect: () => {
      if (callId) setText(byTestId("call-status"), "expert.reconnecting");
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
  signal.on("chat_message", (message) => call.chat.add(message));
  signal.on("file_added", (view) => call.files.add(view));
  signal.on("peer_status", (status) => {
    if (!callId) return;
    if (status.status === "reconnecting") setText(byTestId("call-status"), "expert.kiosk_reconnecting");
    else setText(byTestId("call-status"), "expert.in_call");
  });

  byTestId("availability").addEventListener("click", async () => {
    ringer.askPermission();
    const next = presence === "available" ? "away" : "available";
    const view = await signal.send("set_presence", { status: next }).catch(() => null);
    if (view) presence = view.status;
    renderAvailability();
  });
  byTestId("accept-call").addEventListener("click", async () => {
    if (!offer) return;
    ringer.stop();
    const view = await signal.send("accept_offer", { consultation_id: offer.consultation_id }).catch(() => null);
    if (!view) {
      offer = null;
      renderOffer();
      return;
    }
    // applyConsultation clears the last call's view (the "consultation" event
    // may have done so already, with this call's first chat lines since).
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
      const view = await signal.send("end_consultation", { consultation_id: callId }).catch(() => null);
      if (view) applyConsultation(view);
    }
  });
  byTestId("save-outcome").addEventListener("click", async () => {
    if (!lastEndedId) return;
    const saved = byTestId("outcome-saved");
    try {
      await signal.send("save_outcome", {
        consultation_id: lastEndedId,
        outcome: byTestId("outcome").value,
        notes: byTestId("notes").value,
      });
      setText(saved, "expert.saved");
      byTestId("notes").value = "";
      loadHistory();
    } catch {
      setText(saved, "error.generic");
    }
  });
  document.addEventListener("pointerdown", () => ringer.unlock(), { once: true });
  setInterval(renderQueue, 15000);
  await loadHistory();
}

startPage({ roles: ["expert"], onLogin });
