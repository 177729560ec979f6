// The citizen's kiosk: pick a department, check camera and microphone, wait,
// talk, show documents, rate, and leave no trace for the next citizen.
import { api } from "./api.js";
import { initBookings, updateOffers } from "./bookings.js";
import { CallView } from "./call.js";
import { confirmDialog } from "./confirm.js";
import { openDevices, watchLevel } from "./devices.js";
import { idNumberProblem, normalizeIdNumber } from "./idnumber.js";
import { closeKeypad, keypad } from "./keypad.js";
import { PhoneLinkPanel } from "./phonelink.js";
import { printSlip } from "./slip.js";
import { drawInPage } from "./preview.js";
import { onLanguageChange, setText, textElement } from "./i18n.js";
import { byTestId, startPage } from "./session.js";
import { connectSignal } from "./signal.js";
import { initTextSize, resetTextSize } from "./textsize.js";

const screens = ["start-screen", "device-screen", "waiting-screen", "call-screen", "after-screen"];
const TILE_REFRESH_MS = 10000;
const IDLE_ANSWER_S = 30;
const THANKS_MS = 3000;
const NO_RATING_MS = 15000;
// Idle time before the wipe, from the kiosk's start URL (/kiosk?idle=120).
const IDLE_S = Math.min(3600, Math.max(10, Number(new URLSearchParams(location.search).get("idle")) || 120));
// The page a wipe loads is marked (?fresh) as the next citizen's: a consultation the
// server still holds open for this kiosk (the leaving citizen's cancel never arrived,
// the network being down) is ended there, never taken over. The mark leaves the
// address at once, so that a later reload (a crash during a call) resumes the call.
const startParams = new URLSearchParams(location.search);
let fresh = startParams.has("fresh");
if (fresh) {
  startParams.delete("fresh");
  history.replaceState(null, "", `/kiosk${startParams.size ? `?${startParams}` : ""}`);
}
let leftBehind = null;
const KEYPAD_DIGITS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "-", "0"];
const KEYPAD_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ".split("");

let signal = null;
let consultationId = null;
let lastPosition = null;
let lastState = null;
let lastReference = null;
let departments = [];
let noExpertWait = 120;
let screen = "start-screen";
let call = null;
let phoneLink = null;
let pendingDepartment = null;
// The citizen's booking code was admitted here: the next request is by appointment.
let byAppointment = false;
// The identity number the citizen agreed to use for this consultation (null: none).
let consentedIdNumber = null;
let deviceStream = null;
let stopLevel = () => {};
let idleTimer = null;
let idleCountdown = null;
let wiping = false;

function show(name) {
  screen = name;
  for (const id of screens) document.getElementById(id).hidden = id !== name;
  armIdle();
}

function departmentName(code) {
  const dept = departments.find((d) => d.code === code);
  return dept ? { zh: dept.name_zh, en: dept.name_en } : code;
}

// When a department next opens, as the citizen says it: "today 14:00", "tomorrow
// 09:00", "Monday 09:00" (the kiosk's clock; kiosk and server keep the city's time).
function whenText(epochSeconds) {
  const at = new Date(epochSeconds * 1000);
  const time = `${String(at.getHours()).padStart(2, "0")}:${String(at.getMinutes()).padStart(2, "0")}`;
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  const days = Math.round((new Date(at).setHours(0, 0, 0, 0) - today.getTime()) / 86400000);
  if (days === 0) return { key: "when.today", vars: { time } };
  if (days === 1) return { key: "when.tomorrow", vars: { time } };
  return { key: "when.weekday", vars: { day: { key: `weekday.${at.getDay() || 7}` }, time } };
}

// Who is there, plainly: a tile with experts online is blue and says how many; one
// without is grey, dashed, and says when the department next opens.
function tileStatus(dept) {
  if (dept.experts_online > 0) return textElement("span", "kiosk.online", { n: dept.experts_online }, "tile-status online");
  const key = dept.open_now ? "kiosk.offline_in_hours" : dept.next_opening ? "kiosk.offline_next" : "kiosk.offline_unknown";
  const vars = dept.next_opening ? { when: whenText(dept.next_opening) } : null;
  return textElement("span", key, vars, "tile-status offline");
}

function renderDepartments() {
  const holder = document.getElementById("departments");
  holder.replaceChildren();
  // An interpreting pool is invited into calls by experts: citizens do not queue for it.
  for (const dept of departments.filter((d) => d.kind !== "interpreter")) {
    const tile = document.createElement("button");
    tile.type = "button";
    tile.className = dept.experts_online > 0 ? "tile" : "tile tile-offline";
    tile.dataset.testid = `department-${dept.code}`;
    tile.dataset.online = String(dept.experts_online);
    const name = textElement("span", "kiosk.department_name", { name: { zh: dept.name_zh, en: dept.name_en } }, "tile-name");
    tile.append(name, tileStatus(dept));
    tile.addEventListener("click", () => chooseDepartment(dept.code));
    holder.append(tile);
  }
}

// Nobody online: say so before the queue starts, with the usual hours and how long
// the wait may last, and let the citizen choose. (Call-back and appointments of a
// later issue are offered here too, as other answers to the same question.)
async function chooseDepartment(code) {
  byAppointment = false;
  hideKeypad();
  if (!(await askIdNumberConsent())) return;
  const dept = departments.find((d) => d.code === code);
  if (dept && dept.experts_online === 0) {
    const key = dept.open_now ? "kiosk.offline_confirm_in_hours" : "kiosk.offline_confirm";
    const wait = await confirmDialog(key, {
      vars: {
        department: { zh: dept.name_zh, en: dept.name_en },
        hours: { hours: dept.hours },
        when: dept.next_opening ? whenText(dept.next_opening) : "",
        minutes: Math.max(1, Math.round(noExpertWait / 60)),
      },
      yesKey: "kiosk.offline_wait",
      noKey: "kiosk.offline_back",
    });
    if (!wait) return;
  }
  openDeviceCheck(code);
}

async function refreshDepartments() {
  try {
    const status = await api("GET", "/api/v1/departments/status");
    departments = status.departments;
    if (status.no_expert_wait_s) noExpertWait = status.no_expert_wait_s;
    renderDepartments();
  } catch {
    // Keep the last tiles; the connection banner tells about the network.
  }
}

// The keypad opens beside the field when the field is touched, and closes with
// "done" or when a department is chosen.
// While the keypad is open, only the field it types into stays (with its error):
// the keypad must fit beside the departments on a 1366 x 768 screen too.
let caseKeypad = null;

function showKeypad(field = "case") {
  document.querySelector(".case-entry").dataset.field = field;
  caseKeypad.open();
}

// Whichever keys are open: the case number's or the booking code's.
function hideKeypad() {
  closeKeypad();
}

function renderKeypad() {
  // The keys type into the field touched last: the case number or the identity number.
  let input = byTestId("case-number");
  caseKeypad = keypad(document.getElementById("keypad"), {
    pages: [
      [KEYPAD_DIGITS, "keypad.letters"],
      [KEYPAD_LETTERS, "keypad.digits"],
    ],
    target: () => input,
    onClose: () => delete document.querySelector(".case-entry").dataset.field,
  });
  for (const field of [byTestId("case-number"), byTestId("id-number")]) {
    const use = () => {
      input = field;
      showKeypad(field === byTestId("id-number") ? "id" : "case");
    };
    field.addEventListener("focus", use);
    field.addEventListener("click", use);
  }
}

// ---- recording ------------------------------------------------------------

// The version of the words the citizen is shown before a recording (kept with
// their answer on the record): a new text is a new version.
const RECORDING_TEXT_VERSION = "rec-2026-12";

// An expert asked to record: the citizen reads what, why, who may watch it and for
// how long, and answers with one tap; the question goes away if the request does.
function askRecordingConsent(view) {
  const dialog = document.getElementById("record-consent");
  if (view.recording !== "asked") {
    if (dialog.open) dialog.close();
    return;
  }
  if (dialog.open) return;
  const id = view.consultation_id;
  const answer = async (accept) => {
    dialog.close();
    const after = await signal
      .send("answer_recording", { consultation_id: id, accept, text_version: RECORDING_TEXT_VERSION })
      .catch(() => null);
    if (after) applyConsultation(after);
  };
  byTestId("record-consent-yes").onclick = () => answer(true);
  byTestId("record-consent-no").onclick = () => answer(false);
  dialog.oncancel = (event) => {
    event.preventDefault();
    answer(false);
  };
  dialog.showModal();
}

// ---- the identity number --------------------------------------------------

// Shown while the typed number is wrong, saying which part (an ID-card reader types
// into the field like a keyboard: the same check runs on what it types).
function checkIdNumber() {
  const field = byTestId("id-number");
  const error = byTestId("id-number-error");
  const problem = field.value.trim() ? idNumberProblem(field.value) : null;
  error.hidden = !problem;
  field.setAttribute("aria-invalid", String(Boolean(problem)));
  if (problem) setText(error, `kiosk.id_error.${problem}`, { n: normalizeIdNumber(field.value).length });
  return problem;
}

// Before a department is chosen with a number typed: a wrong number is pointed out;
// a right one is used only if the citizen agrees (what for, who sees it, how long).
// False: stay on the start screen.
async function askIdNumberConsent() {
  consentedIdNumber = null;
  const field = byTestId("id-number");
  if (!field.value.trim()) return true;
  if (checkIdNumber()) {
    field.focus();
    return false;
  }
  const dialog = document.getElementById("id-consent");
  const agreed = await new Promise((resolve) => {
    const yes = byTestId("id-consent-yes");
    const no = byTestId("id-consent-no");
    const done = (value) => {
      yes.removeEventListener("click", onYes);
      no.removeEventListener("click", onNo);
      dialog.removeEventListener("cancel", onNo);
      dialog.close();
      resolve(value);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    yes.addEventListener("click", onYes);
    no.addEventListener("click", onNo);
    dialog.addEventListener("cancel", onNo);
    dialog.showModal();
  });
  if (agreed) consentedIdNumber = normalizeIdNumber(field.value);
  else {
    // Declined: the number is not used, nor left on the screen.
    field.value = "";
    checkIdNumber();
  }
  return true;
}

async function giveIdNumber(id) {
  if (!consentedIdNumber) return;
  const number = consentedIdNumber;
  consentedIdNumber = null;
  try {
    await api("POST", `/api/v1/consultations/${id}/identity`, { id_number: number, history_consent: true });
  } catch {
    showNotice("kiosk.id_not_kept");
  }
}

// ---- device check ---------------------------------------------------------

async function openDeviceCheck(code) {
  pendingDepartment = code;
  const message = byTestId("device-message");
  setText(message, "device.checking");
  message.dataset.state = "checking";
  show("device-screen");
  releaseDevices();
  const result = await openDevices();
  if (screen !== "device-screen" || pendingDepartment !== code) {
    for (const track of result.stream?.getTracks() ?? []) track.stop();
    return;
  }
  deviceStream = result.stream;
  document.getElementById("device-video").srcObject = deviceStream;
  const meter = byTestId("mic-level");
  stopLevel = watchLevel(deviceStream, (level) => (meter.value = level));
  let key = "device.ok";
  if (result.camera !== "ok" && result.microphone !== "ok") key = `device.none_${result.camera === "denied" ? "denied" : "missing"}`;
  else if (result.camera !== "ok") key = `device.camera_${result.camera}`;
  else if (result.microphone !== "ok") key = `device.mic_${result.microphone}`;
  message.dataset.state = key === "device.ok" ? "ok" : "problem";
  message.dataset.camera = result.camera;
  message.dataset.microphone = result.microphone;
  setText(message, key);
}

function stopLevelMeter() {
  stopLevel();
  stopLevel = () => {};
}

function releaseDevices() {
  stopLevelMeter();
  for (const track of deviceStream?.getTracks() ?? []) track.stop();
  deviceStream = null;
  document.getElementById("device-video").srcObject = null;
}

async function requestConsultation() {
  const code = pendingDepartment;
  const caseNumber = byTestId("case-number").value.trim();
  const payload = { department: code };
  if (caseNumber) payload.case_number = caseNumber;
  if (byAppointment) payload.appointment = true;
  stopLevelMeter();
  document.getElementById("device-video").srcObject = null;
  try {
    const view = await signal.send("request_consultation", payload);
    applyConsultation(view);
    await giveIdNumber(view.consultation_id);
  } catch (err) {
    releaseDevices();
    show("start-screen");
    showNotice(err.code === "invalid_payload" ? "kiosk.bad_case" : "error.generic");
  }
}

function showNotice(key) {
  setText(document.getElementById("notice"), key);
}

// ---- the consultation -----------------------------------------------------

// The big line and the small one say the same thing: while an expert's screen
// rings there is no place or wait to tell; with nobody online neither means
// anything, and the wait may end without an expert.
function renderPosition() {
  updateOffers(lastState === "waiting" && consultationId ? { department: pendingDepartment, consultationId, caseNumber: byTestId("case-number").value.trim(), expertsOnline: lastPosition?.experts_online, estimatedWait: lastPosition?.estimated_wait_s } : null);
  const target = byTestId("queue-position");
  const wait = document.getElementById("wait-estimate");
  if (lastState === "offered") {
    setText(target, "kiosk.ringing");
    wait.textContent = "";
    delete wait.dataset.i18n;
    return;
  }
  if (lastPosition && lastPosition.experts_online === 0) {
    setText(target, "kiosk.nobody_now");
    setText(wait, "kiosk.nobody_wait", { minutes: Math.max(1, Math.round(noExpertWait / 60)) });
    return;
  }
  if (!lastPosition) {
    setText(target, "kiosk.waiting");
    wait.textContent = "";
    return;
  }
  setText(target, "kiosk.position", { ahead: lastPosition.position - 1, position: lastPosition.position });
  if (lastPosition.estimated_wait_s === null) setText(wait, "kiosk.wait_unknown");
  else setText(wait, "kiosk.wait", { minutes: Math.max(1, Math.ceil(lastPosition.estimated_wait_s / 60)) });
}

function setStatus(key, vars) {
  setText(byTestId("call-status"), key, vars);
}

function applyConsultation(view) {
  // A fresh page takes over nothing (its connection's resync may come first).
  if (fresh || view.consultation_id === leftBehind) return;
  if (consultationId && view.consultation_id !== consultationId) return;
  consultationId = view.consultation_id;
  lastState = view.state;
  if (view.reference) lastReference = view.reference;
  const transferring = view.transfer || screen === "call-screen";
  if ((view.state === "waiting" || view.state === "offered") && transferring) {
    showTransfer(view);
  } else if (view.state === "waiting" || view.state === "offered") {
    if (screen !== "waiting-screen") show("waiting-screen");
    // After an expert let it ring out or declined, the citizen is told so, and that
    // an expert is being called again (rung_unanswered: how often it happened).
    const again = view.rung_unanswered > 0;
    const waitingKey = again ? "kiosk.rang_out" : "kiosk.waiting_for";
    const offeredKey = again ? "kiosk.offered_again" : "kiosk.offered";
    setText(document.getElementById("waiting-state"), view.state === "offered" ? offeredKey : waitingKey, {
      department: departmentName(view.department),
    });
    renderPosition();
  } else if (view.state === "active") {
    closeIdleDialog();
    if (screen !== "call-screen") show("call-screen");
    setStatus("kiosk.in_call");
    call.showNote(null);
    const stream = deviceStream;
    deviceStream = null;
    call.start(view, stream);
    watchForNoPicture();
    askRecordingConsent(view);
  } else if (view.state === "ended") {
    showEnded(view.end_reason);
  }
}

// Handed to another department (a transfer): the citizen stays on the call screen,
// keeps the picture of anyone still in the call (an interpreter) and is told, in
// plain words, what is happening until the new expert answers.
function showTransfer(view) {
  closeIdleDialog();
  if (screen !== "call-screen") show("call-screen");
  const department = departmentName(view.transfer?.department ?? view.department);
  setStatus("kiosk.transferring", { department });
  call.showNote(view.state === "offered" ? "kiosk.transfer_offered" : "kiosk.transfer_note", { department });
  const stream = deviceStream;
  deviceStream = null;
  call.start(view, stream);
}

function showEnded(reason) {
  clearTimeout(mediaNoticeTimer);
  byTestId("media-notice")?.remove();
  phoneLink?.close();
  call.stop();
  releaseDevices();
  closeIdleDialog();
  show("after-screen");
  const rating = document.getElementById("rating");
  rating.hidden = reason !== "completed" && reason !== "dropped" && reason !== null;
  const message = reason === "no_expert" ? "kiosk.no_expert" : reason === "cancelled" ? "kiosk.cancelled" : "kiosk.ended";
  setText(document.getElementById("after-message"), message);
  showReference();
  // Nothing to rate: the message stays long enough to be read, then the wipe.
  if (rating.hidden) setTimeout(wipe, NO_RATING_MS);
}

// 好差评: five grades, one tap each. A good grade is sent at once; a bad one asks,
// optionally, why (a short list) and for the citizen's own words, then is sent with
// them, or alone on "skip", on "finish", or when nobody answers within
// REASON_WAIT_MS (the grade must not be lost to a citizen who walks away).
const BAD_GRADES = new Set(["dissatisfied", "very_dissatisfied"]);
const REASON_WAIT_MS = 45000;
let pendingGrade = null;
let pendingTimer = null;
let gradeSent = false;

async function sendGrade({ reason = null, comment = "" }) {
  if (gradeSent || !pendingGrade) return;
  gradeSent = true;
  clearTimeout(pendingTimer);
  for (const button of document.querySelectorAll("#rating button")) button.disabled = true;
  const payload = { consultation_id: consultationId, grade: pendingGrade };
  if (reason) payload.reason = reason;
  if (comment.trim()) payload.comment = comment.trim().slice(0, 500);
  pendingGrade = null;
  await signal.send("rate_consultation", payload).catch(() => {});
  document.getElementById("grade-reason").hidden = true;
  setText(document.getElementById("after-message"), "kiosk.thanks");
  setTimeout(wipe, THANKS_MS);
}

function wireGrades() {
  const panel = document.getElementById("grade-reason");
  let reason = null;
  for (const button of document.querySelectorAll("#rating [data-grade]")) {
    button.addEventListener("click", () => {
      if (gradeSent || pendingGrade) return;
      pendingGrade = button.dataset.grade;
      for (const other of document.querySelectorAll("#rating [data-grade]")) {
        other.disabled = other !== button;
        other.setAttribute("aria-pressed", String(other === button));
      }
      if (!BAD_GRADES.has(pendingGrade)) {
        sendGrade({});
        return;
      }
      panel.hidden = false;
      pendingTimer = setTimeout(() => sendGrade({ reason }), REASON_WAIT_MS);
    });
  }
  for (const button of panel.querySelectorAll("[data-reason]")) {
    button.addEventListener("click", () => {
      reason = reason === button.dataset.reason ? null : button.dataset.reason;
      for (const other of panel.querySelectorAll("[data-reason]")) {
        other.setAttribute("aria-pressed", String(other.dataset.reason === reason));
      }
    });
  }
  byTestId("grade-send").addEventListener("click", () => sendGrade({ reason, comment: byTestId("grade-comment").value }));
  byTestId("grade-skip").addEventListener("click", () => sendGrade({}));
}

// The consultation's short reference (from the view; the clerk types it), grouped
// in threes for reading aloud.
function showReference() {
  const box = document.getElementById("reference-box");
  box.hidden = !lastReference;
  if (lastReference) document.getElementById("reference").textContent = lastReference.replace(/^(.{3})(.+)$/, "$1 $2");
}

// ---- Firefox on the server's own machine ------------------------------------

// Firefox pairs no loopback ICE candidates (not even with its
// media.peerconnection.ice.loopback preference, as observed with ESR 153), so a
// Firefox kiosk opened on 127.0.0.1 / localhost never gets a picture from a relay
// that listens there. A real kiosk reaches the server over the network (HTTPS),
// where Firefox works. If the picture has not come after a while in exactly that
// case, the kiosk says why instead of showing a black picture.
const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;
const MEDIA_NOTICE_MS = 12000;
let mediaNoticeTimer = null;

function firefoxOnLoopback() {
  return /\bFirefox\//.test(navigator.userAgent) && LOOPBACK_HOST.test(location.hostname);
}

function watchForNoPicture() {
  clearTimeout(mediaNoticeTimer);
  if (!firefoxOnLoopback()) return;
  mediaNoticeTimer = setTimeout(() => {
    if (screen !== "call-screen" || Number(byTestId("remote-video").dataset.framesDecoded || 0) > 0) return;
    let notice = byTestId("media-notice");
    if (!notice) {
      notice = document.createElement("p");
      notice.className = "video-note media-notice";
      notice.dataset.testid = "media-notice";
      notice.setAttribute("role", "alert");
      document.querySelector("#call-screen .videos").append(notice);
    }
    setText(notice, "kiosk.firefox_loopback", { host: location.host });
  }, MEDIA_NOTICE_MS);
}

// ---- calling the hall's staff ----------------------------------------------

const STAFF_RESET_MS = 60000;
let staffTimer = null;

async function callStaff() {
  const button = byTestId("call-staff");
  const status = document.getElementById("staff-status");
  button.disabled = true;
  try {
    const call = await api("POST", "/api/v1/staff-calls");
    setText(status, call.clerks > 0 ? "kiosk.staff_called" : "kiosk.staff_none");
  } catch (err) {
    setText(status, err.status === 429 ? "kiosk.staff_wait" : "error.generic");
  }
  clearTimeout(staffTimer);
  staffTimer = setTimeout(() => {
    button.disabled = false;
    status.textContent = "";
    delete status.dataset.i18n;
  }, STAFF_RESET_MS);
}

// ---- idle and wipe --------------------------------------------------------

// Something of the citizen is on screen: on the start screen only once they typed.
function holdsCitizenData() {
  if (screen === "start-screen") {
    return ["case-number", "id-number", "booking-code-input"].some((id) => byTestId(id)?.value);
  }
  return screen !== "call-screen";
}

function armIdle() {
  clearTimeout(idleTimer);
  if (wiping || !holdsCitizenData()) return;
  idleTimer = setTimeout(onIdle, IDLE_S * 1000);
}

function onIdle() {
  if (screen === "waiting-screen") {
    askStillThere();
  } else {
    wipe();
  }
}

// Waiting needs no touching, so ask before giving the place up.
function askStillThere() {
  const dialog = document.getElementById("idle-dialog");
  const countdown = document.getElementById("idle-countdown");
  let left = IDLE_ANSWER_S;
  setText(countdown, "idle.countdown", { seconds: left });
  dialog.showModal();
  clearInterval(idleCountdown);
  idleCountdown = setInterval(async () => {
    left -= 1;
    setText(countdown, "idle.countdown", { seconds: Math.max(0, left) });
    if (left <= 0) {
      closeIdleDialog();
      await leave();
    }
  }, 1000);
}

function closeIdleDialog() {
  clearInterval(idleCountdown);
  const dialog = document.getElementById("idle-dialog");
  if (dialog.open) dialog.close();
}

async function leave() {
  if (consultationId && (screen === "waiting-screen" || screen === "call-screen")) {
    await signal?.send("cancel_request", { consultation_id: consultationId }).catch(() => {});
  }
  wipe();
}

// Everything of this citizen goes: videos, previews, object URLs, chat, files,
// form fields, storage (the language choice too); then the page is loaded anew.
// The kiosk's own login is an HttpOnly cookie and stays.
function wipe() {
  if (wiping) return;
  wiping = true;
  clearTimeout(idleTimer);
  closeIdleDialog();
  phoneLink?.close();
  call?.clear();
  releaseDevices();
  resetTextSize();
  // Every text, field and preview of the page goes with its elements.
  document.getElementById("app-view").replaceChildren();
  try {
    localStorage.clear();
    sessionStorage.clear();
  } catch {
    // Storage unavailable: nothing was kept there.
  }
  const cleared = window.caches ? caches.keys().then((keys) => Promise.all(keys.map((k) => caches.delete(k)))) : Promise.resolve();
  signal?.close();
  const next = new URLSearchParams(location.search);
  next.set("fresh", "1");
  cleared.catch(() => {}).finally(() => window.location.replace(`/kiosk?${next}`));
}

// The previous citizen's consultation, still open on the server when this fresh
// page connects: ended (abandoned in the queue, completed if an expert answered),
// and nothing of it shown.
async function endLeftBehind(open) {
  if (!open || open.state === "ended") return;
  leftBehind = open.consultation_id;
  consultationId = null;
  lastPosition = null;
  lastState = null;
  await signal.send("end_consultation", { consultation_id: leftBehind }).catch(() => {});
}

// ---- wiring -------------------------------------------------------------

// The hall decides whether its kiosks offer the file chooser (GET /api/v1/me: hall
// {allow_file_chooser}); a kiosk without a hall offers none.
function fileChooserAllowed(me) {
  return me.hall?.allow_file_chooser === true;
}

// Off: the chooser and its button leave the page, so nothing on the kiosk can open
// the operating system's file dialog. The phone takes its place.
function setUpDocuments(me) {
  const controls = document.querySelector("#call-screen .call-controls");
  const chooser = byTestId("file-input").closest("label");
  const phone = textElement("button", "kiosk.phone_open", null, "secondary");
  phone.type = "button";
  phone.dataset.testid = "phone-upload";
  controls.insertBefore(phone, chooser);
  if (!fileChooserAllowed(me)) chooser.remove();
  phoneLink = new PhoneLinkPanel({
    panel: byTestId("phone-panel"),
    canvas: byTestId("phone-qr"),
    status: byTestId("phone-status"),
    close: byTestId("phone-close"),
    consultation: () => consultationId,
    onOpen: () => call.capture.close(),
  });
  phone.addEventListener("click", () => phoneLink.open());
  byTestId("show-document").addEventListener("click", () => phoneLink.close());
}

async function onLogin(me) {
  await refreshDepartments();
  setInterval(() => {
    if (screen === "start-screen") refreshDepartments();
  }, TILE_REFRESH_MS);
  renderKeypad();
  byTestId("id-number").addEventListener("input", checkIdNumber);
  onLanguageChange(() => {
    armIdle();
    checkIdNumber();
  });
  call = new CallView({
    mySide: "kiosk",
    send: (event, payload) => signal.send(event, payload),
    consultation: () => consultationId,
    download: false,
    departmentName,
    onView: (view) => applyConsultation(view),
  });
  setUpDocuments(me);
  initBookings({
    onAdmitted: (admitted) => {
      openDeviceCheck(admitted.department);
      byAppointment = true;
    },
    onLeave: leave,
    departmentName: (code) => {
      const dept = departments.find((d) => d.code === code);
      return dept ? { zh: dept.name_zh, en: dept.name_en } : code;
    },
  });
  signal = connectSignal({
    onConnect: async () => {
      if (wiping) return;
      const state = await signal.send("get_state").catch(() => null);
      if (!state) return;
      if (fresh) {
        fresh = false;
        await endLeftBehind(state.consultation);
        return;
      }
      if (state.consultation) applyConsultation(state.consultation);
      else if (consultationId && (screen === "waiting-screen" || screen === "call-screen")) showEnded(null);
      if (screen === "call-screen") call.reconnectMedia();
    },
    onDisconnect: () => {
      if (screen === "call-screen" && !wiping) setStatus("kiosk.reconnecting");
    },
  });
  signal.on("consultation", applyConsultation);
  signal.on("queue_position", (position) => {
    if (fresh || position.consultation_id === leftBehind) return;
    // The first position can arrive before the request's answer does.
    if (consultationId && position.consultation_id !== consultationId) return;
    consultationId = position.consultation_id;
    lastPosition = position;
    renderPosition();
  });
  signal.on("chat_message", (message) => call.chat.add(message));
  signal.on("file_added", (view) => call.files.add(view));
  signal.on("peer_status", (status) => {
    call.tiles.peerStatus(status.position, status.status === "reconnecting");
    // With more than one member of staff, the tile of the one reconnecting says so.
    if (call.tiles.present > 1 || lastState !== "active") return;
    setStatus(status.status === "reconnecting" ? "kiosk.expert_reconnecting" : "kiosk.in_call");
  });
  signal.on("staff_call_answered", () => setText(document.getElementById("staff-status"), "kiosk.staff_coming"));
  byTestId("call-staff").addEventListener("click", callStaff);
  byTestId("device-check-continue").addEventListener("click", requestConsultation);
  byTestId("device-check-back").addEventListener("click", () => {
    releaseDevices();
    pendingDepartment = null;
    show("start-screen");
  });
  byTestId("cancel-request").addEventListener("click", async () => {
    await signal.send("cancel_request", { consultation_id: consultationId }).catch(() => {});
    wipe();
  });
  byTestId("idle-stay").addEventListener("click", () => {
    closeIdleDialog();
    armIdle();
  });
  byTestId("end-call").addEventListener("click", async () => {
    if (await confirmDialog("call.end_confirm")) {
      const view = await signal.send("end_consultation", { consultation_id: consultationId }).catch(() => null);
      if (view) applyConsultation(view);
    }
  });
  wireGrades();
  byTestId("finish").addEventListener("click", async () => {
    // A bad grade chosen but not yet sent is sent as it is before the wipe.
    if (pendingGrade) await sendGrade({});
    wipe();
  });
  byTestId("print-slip").addEventListener("click", () => {
    if (consultationId) printSlip(consultationId);
  });
  for (const kind of ["pointerdown", "keydown", "input"]) {
    document.addEventListener(kind, () => armIdle(), { capture: true, passive: true });
  }
  show("start-screen");
}

// Nothing of a document may be saved onto the shared kiosk: previews are drawn by
// the page (no browser PDF viewer), and no context menu offers "save image as".
drawInPage();
document.addEventListener("contextmenu", (event) => event.preventDefault());
initTextSize(byTestId("text-size-toggle"));
startPage({ roles: ["kiosk"], onLogin });
