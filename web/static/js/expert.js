// The expert's desk: availability, the department queue, ringing offers, the
// call, the outcome, and the expert's own history with its documents.
//
// The after-call form belongs to one consultation (it names it) and saves to that
// one whatever happens meanwhile. After a call the server offers the expert nobody
// (presence "wrap_up") until the record is saved or put off (稍后填写); records put
// off wait in "records to complete", with the notes written so far.
//
// More than two in a call (issue 21): an expert invites another department or an
// interpreter, hands the citizen to another department, leaves a call that goes on,
// shares a screen (callactions.js); a ringing invitation or transfer is answered as
// any offer. Interpreters use this desk too: they join and leave calls, nothing more
// (no invitations, transfers, screen or after-call record).
import { api } from "./api.js";
import { CitizenHistory } from "./citizenhistory.js";
import { chosenMaterials, renderMaterials } from "./materials.js";
import { CallActions } from "./callactions.js";
import { CallView } from "./call.js";
import { confirmDialog } from "./confirm.js";
import { initDeskBookings } from "./deskbookings.js";
import { fileRow } from "./files.js";
import { onLanguageChange, setText, textElement } from "./i18n.js";
import { Ringer } from "./ring.js";
import { byTestId, startPage } from "./session.js";
import { connectSignal } from "./signal.js";
import { describe } from "./tiles.js";

let signal = null;
let me = null;
let interpreter = false;
let actions = null;
let citizenHistory = null;
let callView = null; // the call's latest view
const sharedDocuments = new Set(); // this call's documents shared with its interpreters
let presence = "away";
let presenceView = null;
let offer = null;
let offerSeenAt = 0;
let askingDecline = false;
let callId = null;
let queue = { entries: [], experts: [] };
let countdownTimer = null;
let wrapUpTimer = null;
let call = null;
// The after-call form: null, or the consultation it is open for ({id, case_number,
// reference, hall, at, saved}).
let form = null;
let unfinished = [];
const halls = new Map(); // hall code -> {zh, en}
const drafts = new Map(); // consultation id -> notes not yet kept by the server
const ringer = new Ringer();

function renderAvailability() {
  const button = byTestId("availability");
  const on = presence === "available" || presence === "busy" || presence === "wrap_up";
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.disabled = presence === "busy";
  const key = { busy: "expert.busy", wrap_up: "expert.wrap_up" }[presence] ?? (on ? "expert.available" : "expert.away");
  setText(button, key);
  renderNotice();
  renderWrapUp();
}

// Set away by the server (missed offers, a wrap-up that ran out): said plainly,
// with the way back.
function renderNotice() {
  const notice = document.getElementById("presence-notice");
  const reason = presence === "away" ? presenceView?.away_reason : null;
  notice.hidden = !reason;
  if (reason === "missed_offers") {
    setText(notice.querySelector("[data-role=text]"), "expert.away_missed", { n: Math.max(2, presenceView.missed_in_a_row) });
  } else if (reason === "wrap_up_expired") {
    setText(notice.querySelector("[data-role=text]"), "expert.away_wrap_up");
  }
}

function applyPresence(view) {
  presenceView = view;
  presence = view.status;
  renderAvailability();
  // A wrap-up the page does not show yet (a reload, another tab's call): its form.
  if (view.wrap_up && form?.id !== view.wrap_up) openRecord(view.wrap_up);
}

function caseText(caseNumber) {
  return caseNumber ? { key: "expert.case", vars: { case: caseNumber } } : { key: "expert.no_case" };
}

function hallText(code, names = null) {
  if (names?.zh) return names;
  if (code && halls.has(code)) return halls.get(code);
  return code ? code : { key: "expert.no_hall" };
}

function grouped(reference) {
  return reference ? reference.replace(/^(.{3})(.+)$/, "$1 $2") : "—";
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
  // A citizen's request, an invitation into a call, or a citizen handed over.
  const kind = offer.kind ?? "consultation";
  panel.dataset.kind = kind;
  setText(document.getElementById("offer-title"), { invite: "expert.offer_invite", transfer: "expert.offer_transfer" }[kind] ?? "expert.offer");
  renderOfferBy(kind);
  const caseLine = document.getElementById("offer-case");
  setText(caseLine, "expert.offer_case", { case: caseText(offer.case_number) });
  const names = offer.hall_name_zh ? { zh: offer.hall_name_zh, en: offer.hall_name_en } : null;
  const tick = () => {
    const now = Date.now() / 1000;
    const left = Math.max(0, Math.ceil(offer.expires_at - now));
    setText(document.getElementById("offer-countdown"), "expert.countdown", { seconds: left });
    setText(document.getElementById("offer-from"), "expert.offer_from", {
      hall: hallText(offer.hall, names),
      wait: { duration: offer.waited_s + (now - offerSeenAt) },
    });
  };
  tick();
  countdownTimer = setInterval(tick, 500);
  if (wasHidden || !ringer.ringing) ringer.start(caseLine.textContent);
}

// Who invites or hands over, and their note (a transfer's reason): what they typed
// stays as typed (translate="no").
function renderOfferBy(kind) {
  const by = document.getElementById("offer-by");
  const note = document.getElementById("offer-note");
  by.hidden = !offer.inviter;
  by.replaceChildren();
  if (offer.inviter) {
    const who = document.createElement("span");
    const names = departmentNames(offer.inviter.department);
    describe(who, { department_name_zh: names?.zh, department_name_en: names?.en, ...offer.inviter, role: "expert" });
    by.append(textElement("span", kind === "transfer" ? "expert.offer_transferred_by" : "expert.offer_by", null, "label"), " ", who);
  }
  note.hidden = !offer.note;
  note.replaceChildren();
  if (offer.note) {
    const text = document.createElement("span");
    text.translate = false;
    text.textContent = offer.note;
    note.append(textElement("span", kind === "transfer" ? "expert.offer_reason" : "expert.offer_note", null, "label"), " ", text);
  }
}

function departmentNames(code) {
  const department = actions?.departments.get(code);
  return department ? { zh: department.name_zh, en: department.name_en } : null;
}

// An offer arrived now or (get_state) a while ago: when it rang first, on the page's
// clock, so that the citizen's wait counts up from the offer's waited_s.
function takeOffer(view) {
  offer = view;
  if (!view) return;
  const now = Date.now() / 1000;
  const rung = Math.min(view.ring_timeout_s, Math.max(0, view.ring_timeout_s - (view.expires_at - now)));
  offerSeenAt = now - rung;
  if (view.hall && view.hall_name_zh) halls.set(view.hall, { zh: view.hall_name_zh, en: view.hall_name_en });
}

function dropOffer() {
  offer = null;
  renderOffer();
  // The question about declining an offer that has gone answers itself.
  if (askingDecline) document.querySelector('#confirm-dialog [data-testid="confirm-no"]')?.click();
}

function showCall(view) {
  callId = view.consultation_id;
  offer = null;
  renderOffer();
  document.getElementById("call-view").hidden = false;
  document.body.classList.add("in-call");
  if (form?.saved) closeForm();
  document.getElementById("outcome-view").hidden = true;
  if (view.transfer && view.state !== "active") {
    // Handed to another department: those still in the call wait with the citizen.
    const department = departmentNames(view.transfer.department) ?? view.transfer.department;
    setText(byTestId("call-status"), "expert.transfer_waiting", { department });
  } else {
    setText(byTestId("call-status"), "expert.in_call_with", { case: caseText(view.case_number) });
  }
  const interpretersBefore = hasInterpreter(callView);
  callView = view;
  call.start(view);
  actions.update(view);
  if (hasInterpreter(view) !== interpretersBefore) call.files.refreshActions();
  renderUnfinished();
}

function hasInterpreter(view) {
  return Boolean(view?.participants?.some((p) => p.role === "interpreter"));
}

// An interpreter reads a document of the call only once an expert shows it to them
// (least privilege, enforced by the server): a button on each document's row while
// an interpreter takes part.
function documentActions(view) {
  if (interpreter || !hasInterpreter(callView)) return [];
  const shared = sharedDocuments.has(view.id) || view.shared_with_interpreters === true;
  const button = textElement("button", shared ? "expert.document_shared" : "expert.share_document", null, "secondary small");
  button.type = "button";
  button.dataset.testid = "share-document";
  button.disabled = shared;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await signal.send("share_document", { consultation_id: callId, file_id: view.id });
      sharedDocuments.add(view.id);
      setText(button, "expert.document_shared");
    } catch {
      button.disabled = false;
      actions.say("error.generic");
    }
  });
  return [button];
}

// Whether this desk takes part in the call the view describes. A view with
// `participants` says so with `you` (a position, or null once this desk left or
// handed the call over); one without (a call of two, as before) by its state.
function takesPart(view) {
  if (view.state === "ended") return false;
  if (Array.isArray(view.participants) && "you" in view) return Number.isInteger(view.you);
  return view.state === "active";
}

function applyConsultation(view) {
  if (takesPart(view)) {
    if (callId !== view.consultation_id) {
      callView = null;
      sharedDocuments.clear();
      call.clear();
      actions.clear();
      if (!interpreter && view.state === "active") citizenHistory.show(view.consultation_id);
    }
    showCall(view);
  } else if (view.consultation_id === callId) {
    leftCall(view);
  }
}

// The call ended, or this desk left it or handed it over: the record of this
// expert's part (interpreters write none).
function leftCall(view) {
  citizenHistory.clear();
  callId = null;
  callView = null;
  sharedDocuments.clear();
  call.clear();
  actions.clear();
  document.getElementById("call-view").hidden = true;
  document.body.classList.remove("in-call");
  if (!interpreter) {
    openForm(recordOfView(view));
    loadUnfinished();
  }
  loadHistory();
}

// ---- the after-call form: one consultation's outcome and notes ----------------

function recordOfView(view) {
  return {
    id: view.consultation_id,
    case_number: view.case_number,
    reference: view.reference,
    hall: view.hall,
    at: view.active_at ?? view.waiting_since,
  };
}

function recordOfRow(row) {
  return {
    id: row.id,
    case_number: row.case_number,
    reference: row.reference,
    hall: row.hall,
    at: row.active_at ?? row.waiting_at,
    notes: row.notes,
    outcome: row.outcome,
  };
}

function renderForm() {
  if (!form) return;
  setText(document.getElementById("outcome-for"), "expert.record_for", {
    case: caseText(form.case_number),
    reference: grouped(form.reference),
    hall: hallText(form.hall),
    time: { time: form.at },
  });
}

// Opens the form for `record` (what is known of it now); its notes so far (a draft
// kept by the server, or one this page holds) fill an empty notes field.
function openForm(record) {
  if (form?.id === record.id && !form.saved) {
    renderForm();
    return;
  }
  form = { ...record, saved: false };
  const notes = byTestId("notes");
  notes.value = drafts.get(record.id) ?? record.notes ?? "";
  byTestId("outcome").value = record.outcome ?? "answered";
  renderMaterials(byTestId("materials-required"), actions.departments.get(me.department)?.materials ?? []);
  const saved = byTestId("outcome-saved");
  saved.textContent = "";
  delete saved.dataset.i18n;
  byTestId("save-later").hidden = false;
  document.getElementById("outcome-view").hidden = false;
  renderForm();
  renderWrapUp();
  renderUnfinished();
  fillForm(record.id);
}

// What the view did not say (a reload: only the id is known), from the record.
async function fillForm(id) {
  const row = await api("GET", `/api/v1/consultations/${id}`).catch(() => null);
  if (!row || form?.id !== id) return;
  Object.assign(form, recordOfRow(row), { saved: form.saved });
  const notes = byTestId("notes");
  if (!notes.value && !drafts.has(id) && row.notes) notes.value = row.notes;
  if (row.outcome && !form.saved) byTestId("outcome").value = row.outcome;
  renderForm();
}

async function openRecord(id) {
  if (form && !form.saved && form.id !== id) await deferForm();
  openForm({ id, case_number: null, reference: null, hall: null, at: Date.now() / 1000 });
}

function closeForm() {
  form = null;
  byTestId("notes").value = "";
  document.getElementById("outcome-view").hidden = true;
  renderWrapUp();
  renderUnfinished();
}

// Whether this page's form is the record the server waits for before offering calls.
function wrappingUp() {
  return Boolean(form && presence === "wrap_up" && presenceView?.wrap_up === form.id);
}

function renderWrapUp() {
  const note = document.getElementById("wrap-up-note");
  clearInterval(wrapUpTimer);
  if (!wrappingUp()) {
    note.textContent = "";
    delete note.dataset.i18n;
    return;
  }
  const tick = () => {
    const left = Math.ceil((presenceView.wrap_up_until ?? 0) - Date.now() / 1000);
    if (left <= 60 && left >= 0) setText(note, "expert.wrap_up_left", { seconds: left });
    else if (note.dataset.i18n !== "expert.wrap_up_note") setText(note, "expert.wrap_up_note");
  };
  tick();
  wrapUpTimer = setInterval(tick, 1000);
}

async function saveForm() {
  if (!form) return;
  const id = form.id;
  const saved = byTestId("outcome-saved");
  const notes = byTestId("notes").value;
  try {
    const materials = chosenMaterials(byTestId("materials-required"));
    await signal.send("save_outcome", { consultation_id: id, outcome: byTestId("outcome").value, notes, materials });
    drafts.delete(id);
    if (form?.id === id) {
      form.saved = true;
      byTestId("save-later").hidden = true;
      setText(saved, "expert.saved");
    }
    renderWrapUp();
    loadHistory();
    loadUnfinished();
  } catch {
    setText(saved, "error.generic");
  }
}

// 稍后填写: the server keeps the notes so far on this consultation (no outcome yet),
// and the record waits among those to complete. Without the server, the page holds
// the notes for when it is opened again.
async function deferForm() {
  if (!form || form.saved) return;
  const id = form.id;
  const notes = byTestId("notes").value;
  drafts.set(id, notes);
  try {
    const view = await signal.send("defer_outcome", { consultation_id: id, notes });
    drafts.delete(id);
    if (view) applyPresence(view);
    if (form?.id === id) closeForm();
    setText(document.getElementById("unfinished-status"), "expert.deferred");
  } catch (err) {
    if (form?.id === id) setText(byTestId("outcome-saved"), err.code === "invalid_state" ? "expert.already_saved" : "error.generic");
  }
  loadUnfinished();
}

async function loadUnfinished() {
  if (interpreter) return;
  const data = await api("GET", "/api/v1/me/consultations?unfinished=true").catch(() => null);
  if (!data) return;
  unfinished = data.consultations;
  renderUnfinished();
}

function renderUnfinished() {
  const list = byTestId("unfinished-list");
  list.replaceChildren();
  if (unfinished.length === 0) {
    list.append(textElement("li", "expert.unfinished_empty", null, "muted"));
    return;
  }
  // One record at a time, and none during a call: the open form is saved or put off first.
  const busy = Boolean(callId) || Boolean(form && !form.saved);
  for (const row of unfinished) {
    const item = document.createElement("li");
    item.dataset.testid = "unfinished-row";
    item.dataset.consultation = row.id;
    item.append(
      textElement("span", "expert.unfinished_entry", {
        time: { time: row.active_at ?? row.waiting_at },
        case: caseText(row.case_number),
        reference: grouped(row.reference),
        hall: hallText(row.hall),
      }),
    );
    if (row.notes) item.append(textElement("span", "expert.draft", null, "tag"));
    const open = textElement("button", "expert.complete", null, "secondary small");
    open.type = "button";
    open.dataset.testid = "complete-record";
    open.disabled = busy;
    open.addEventListener("click", () => openForm(recordOfRow(row)));
    item.append(open);
    list.append(item);
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
  if (interpreter) return;
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

async function onLogin(account) {
  me = account;
  interpreter = me.role === "interpreter";
  if (interpreter) {
    setText(document.querySelector(".topbar h1"), "page.interpreter");
    // An interpreter keeps no records of the calls (the experts' and the admin's
    // records name them): nothing to complete and no list of their own.
    document.getElementById("unfinished-section").hidden = true;
    document.getElementById("history-section").hidden = true;
    // Interpreters end nothing for the others and send no documents (they read
    // those an expert shows them).
    byTestId("end-call").hidden = true;
    // Stopping a recording is the citizen's and the experts'.
    byTestId("record-stop").hidden = true;
    byTestId("show-document").hidden = true;
    byTestId("file-input").closest("label").hidden = true;
  }
  initDeskBookings({ interpreter });
  citizenHistory = new CitizenHistory({ hallName: (code) => halls.get(code) ?? code });
  call = new CallView({
    mySide: "expert",
    send: (event, payload) => signal.send(event, payload),
    consultation: () => callId,
    latestDocument: true,
    departmentName: (code) => departmentNames(code) ?? code,
    myName: me.display_name,
    onScreenEnded: () => actions.stopScreen({ tell: true }),
    onView: (view) => applyConsultation(view),
    rowActions: documentActions,
  });
  actions = new CallActions({
    send: (event, payload) => signal.send(event, payload),
    callId: () => callId,
    me,
    call,
    onView: applyConsultation,
    onLeft: (view) => {
      if (view && takesPart(view)) applyConsultation(view);
      else leftCall(view ?? { consultation_id: callId, state: "ended" });
    },
  });
  onLanguageChange(() => {
    renderQueue();
    renderUnfinished();
  });
  // Hall names for the records' lists (an interpreter has none; its offers carry
  // the hall's names themselves).
  const known = interpreter ? { halls: [] } : await api("GET", "/api/v1/halls").catch(() => ({ halls: [] }));
  for (const hall of known.halls) halls.set(hall.code, { zh: hall.name_zh, en: hall.name_en });
  signal = connectSignal({
    onConnect: async () => {
      const state = await signal.send("get_state");
      takeOffer(state.offer);
      if (state.consultation) applyConsultation(state.consultation);
      else if (callId) applyConsultation({ state: "ended", consultation_id: callId });
      if (state.presence) applyPresence(state.presence);
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
  signal.on("presence", applyPresence);
  signal.on("queue_updated", (update) => {
    queue = update;
    renderQueue();
  });
  signal.on("offer", (view) => {
    takeOffer(view);
    renderOffer();
  });
  signal.on("offer_revoked", (view) => {
    if (!offer) return;
    const same = view.invitation_id ? offer.invitation_id === view.invitation_id : offer.consultation_id === view.consultation_id;
    if (same) dropOffer();
  });
  signal.on("consultation", applyConsultation);
  signal.on("invitation", (invitation) => actions.invitationEvent(invitation));
  signal.on("chat_message", (message) => call.chat.add(message));
  signal.on("file_added", (view) => call.files.add(view));
  signal.on("document_shared", (view) => call.files.add(view));
  signal.on("peer_status", (status) => {
    if (!callId) return;
    call.tiles.peerStatus(status.position, status.status === "reconnecting");
    // The line under the call speaks of the citizen; other staff's tiles say it themselves.
    if (status.side !== "kiosk" && status.position !== 0) return;
    if (status.status === "reconnecting") setText(byTestId("call-status"), "expert.kiosk_reconnecting");
    else setText(byTestId("call-status"), "expert.in_call");
  });

  const setPresence = async (status) => {
    ringer.askPermission();
    const view = await signal.send("set_presence", { status }).catch(() => null);
    if (view) applyPresence(view);
    else renderAvailability();
  };
  // Wrapping up counts as taking calls: a click pauses (the record waits in the list).
  byTestId("availability").addEventListener("click", () =>
    setPresence(presence === "available" || presence === "wrap_up" ? "away" : "available"),
  );
  byTestId("resume-calls").addEventListener("click", () => setPresence("available"));
  byTestId("accept-call").addEventListener("click", async () => {
    if (!offer) return;
    ringer.stop();
    const id = offer.consultation_id;
    // A record left open (not the wrap-up: no offer comes then) keeps its notes on its
    // own consultation before the next call takes the screen.
    await deferForm();
    const answer = offer.invitation_id ? { invitation_id: offer.invitation_id } : { consultation_id: id };
    const view = await signal.send("accept_offer", answer).catch(() => null);
    if (!view) {
      offer = null;
      renderOffer();
      return;
    }
    // applyConsultation clears the last call's view (the "consultation" event
    // may have done so already, with this call's first chat lines since).
    applyConsultation(view);
  });
  // Declining is final for that citizen (never offered to this expert again): asked.
  byTestId("decline-call").addEventListener("click", async () => {
    if (!offer || askingDecline) return;
    const id = offer.consultation_id;
    const answer = offer.invitation_id ? { invitation_id: offer.invitation_id } : { consultation_id: id };
    askingDecline = true;
    const invite = offer.kind === "invite";
    const sure = await confirmDialog(invite ? "expert.decline_invite_confirm" : "expert.decline_confirm", {
      yesKey: invite ? "expert.decline_invite_yes" : "expert.decline_yes",
      noKey: "expert.decline_no",
    });
    askingDecline = false;
    if (!sure || offer?.consultation_id !== id) return;
    await signal.send("decline_offer", answer).catch(() => {});
    if (offer?.consultation_id === id) dropOffer();
  });
  byTestId("end-call").addEventListener("click", async () => {
    // An interpreter ends nothing for the others: "end" (the no-picture notice's) leaves.
    if (interpreter) {
      if (callId) await actions.leave();
      return;
    }
    if (callId && (await confirmDialog("call.end_confirm"))) {
      const view = await signal.send("end_consultation", { consultation_id: callId }).catch(() => null);
      if (view) applyConsultation(view);
    }
  });
  byTestId("save-outcome").addEventListener("click", saveForm);
  byTestId("save-later").addEventListener("click", deferForm);
  // What is typed stays with its consultation, also if the page cannot reach the
  // server at the moment it is put off.
  byTestId("notes").addEventListener("input", () => {
    if (form && !form.saved) drafts.set(form.id, byTestId("notes").value);
  });
  document.addEventListener("pointerdown", () => ringer.unlock(), { once: true });
  setInterval(renderQueue, 15000);
  await Promise.all([loadHistory(), loadUnfinished()]);
}

startPage({ roles: ["expert", "interpreter"], onLogin });
