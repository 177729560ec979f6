// Call-backs and appointments on the kiosk: the booking-code entry of the start
// screen, and, while a citizen waits with nobody of the department online or a wait
// beyond the department's limit, the offers "call me back" and "book a time" (phone
// entry, slot chooser, the booking code shown once). The kiosk page wires it with
// initBookings() and tells it each new queue position (updateOffers); the privacy
// wipe replaces the whole page, these fields with it.
import { api } from "./api.js";
import { setText, textElement } from "./i18n.js";
import { keypad } from "./keypad.js";
import { line, printArrangement } from "./slip.js";

const MOBILE = /^1[3-9]\d{9}$/;
// A booking code's characters (storage/references.py: no 0/O/1/I/L look-alikes).
const CODE_KEYS = "23456789ACDEFHJKMNPRTWXY".split("");
const PHONE_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];
const SLOTS_SHOWN = 40;
const ADMIT_ERRORS = {
  unknown_code: "booking.code_unknown",
  too_early: "booking.code_early",
  too_late: "booking.code_late",
  used: "booking.code_used",
  cancelled: "booking.code_cancelled",
  too_many_requests: "booking.code_throttled",
};

let hooks = { onAdmitted: () => {}, onLeave: () => {}, departmentName: () => "—" };
let waiting = null; // { department, consultationId, caseNumber } while the citizen waits
let busy = false; // a flow (phone entry, slot chooser, a code shown) is on screen
const limits = new Map(); // department -> wait_limit_s

// The digits of a mainland mobile number as typed (spaces, dashes, +86), or null.
export function mobileDigits(text) {
  let digits = text.replace(/[\s-]/g, "");
  if (digits.startsWith("+86")) digits = digits.slice(3);
  return MOBILE.test(digits) ? digits : null;
}

function button(key, testid, className = "big-button secondary") {
  const el = textElement("button", key, null, className);
  el.type = "button";
  if (testid) el.dataset.testid = testid;
  return el;
}

function two(n) {
  return String(n).padStart(2, "0");
}

// A slot as the citizen reads it: "12-07 周一 09:15".
function slotVars(epochSeconds) {
  const at = new Date(epochSeconds * 1000);
  return {
    day: `${two(at.getMonth() + 1)}-${two(at.getDate())}`,
    weekday: { key: `weekday.${at.getDay() || 7}` },
    time: `${two(at.getHours())}:${two(at.getMinutes())}`,
  };
}

// ---- the start screen: a booking code ----------------------------------------

function renderCodeEntry() {
  const holder = document.getElementById("booking-entry");
  if (!holder) return;
  const label = document.createElement("label");
  label.className = "case";
  const input = document.createElement("input");
  input.dataset.testid = "booking-code-input";
  input.maxLength = 12;
  input.inputMode = "none";
  input.autocomplete = "off";
  input.spellcheck = false;
  input.setAttribute("autocapitalize", "characters");
  const go = button("booking.code_use", "booking-code-submit", "secondary");
  // The field and its button on one line: the keys below must fit a 1366 x 768 screen.
  const codeLine = document.createElement("div");
  codeLine.className = "code-line";
  codeLine.append(input, go);
  label.append(textElement("span", "booking.code_label"), codeLine);
  const status = textElement("p", "booking.code_hint", null, "muted");
  status.dataset.testid = "booking-code-status";
  status.setAttribute("role", "status");
  // Its keys open where the case number's would, in place of the case number.
  const pad = document.createElement("div");
  pad.className = "keypad";
  pad.dataset.testid = "booking-keypad";
  pad.hidden = true;
  const keys = keypad(pad, {
    pages: [[CODE_KEYS]],
    target: () => input,
    prefix: "code-key",
    onOpen: () => (holder.dataset.typing = ""),
    onClose: () => delete holder.dataset.typing,
  });
  input.addEventListener("focus", () => keys.open());
  input.addEventListener("click", () => keys.open());
  const submit = async () => {
    const code = input.value.trim();
    if (!code) return;
    go.disabled = true;
    try {
      const admitted = await api("POST", "/api/v1/appointments/admit", { code });
      status.dataset.result = "admitted";
      setText(status, "booking.code_ok", {
        department: { zh: admitted.name_zh, en: admitted.name_en },
        ...slotVars(admitted.slot_at),
      });
      hooks.onAdmitted(admitted);
    } catch (err) {
      status.dataset.result = "refused";
      setText(status, ADMIT_ERRORS[err.code] ?? "error.generic");
    } finally {
      // Whatever the answer, the code leaves the screen: a right one refused as too
      // early (or one a character off) must not wait there for the next citizen,
      // and nothing of this field arms the kiosk's idle wipe.
      input.value = "";
      go.disabled = false;
      // The whole start screen back, the answer beside the code; touching the
      // field again opens the keys.
      keys.close();
    }
  };
  go.addEventListener("click", submit);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") submit();
  });
  holder.replaceChildren(label, status, pad);
}

// ---- the waiting screen: the offers -------------------------------------------

function offersHolder() {
  return document.getElementById("booking-offers");
}

async function waitLimit(department) {
  if (!limits.has(department)) {
    try {
      const settings = await api("GET", `/api/v1/departments/${department}/booking-settings`);
      limits.set(department, settings.wait_limit_s);
    } catch {
      return null;
    }
  }
  return limits.get(department);
}

// Told every position while the citizen waits (null: no longer waiting). The offers
// show when nobody of the department is online or the estimate is beyond its limit;
// a flow the citizen began stays until they finish or go back.
export async function updateOffers(state) {
  waiting = state;
  const holder = offersHolder();
  if (!holder || busy) return;
  if (!state) {
    holder.replaceChildren();
    return;
  }
  const limit = await waitLimit(state.department);
  const long = state.estimatedWait != null && limit != null && state.estimatedWait > limit;
  if (state.expertsOnline === 0 || long) showOffers(state.expertsOnline === 0 ? "booking.offer_nobody" : "booking.offer_long");
  else if (!busy) holder.replaceChildren();
}

function showOffers(introKey) {
  busy = false;
  const holder = offersHolder();
  const intro = textElement("p", introKey, null, "big-status");
  const callBack = button("booking.callback", "callback-request");
  const book = button("booking.book", "book-appointment");
  callBack.addEventListener("click", () => showPhoneEntry("callback"));
  book.addEventListener("click", showSlots);
  const row = document.createElement("div");
  row.className = "big-buttons";
  row.append(callBack, book);
  holder.replaceChildren(intro, row);
}

function backToOffers() {
  busy = false;
  if (waiting) updateOffers(waiting);
}

// The phone number (and, for a call-back, a note): checked as typed, the rule said
// in words while it does not fit.
function showPhoneEntry(kind, slot = null) {
  busy = true;
  const holder = offersHolder();
  const title = slot
    ? textElement("h3", "booking.book_for", slotVars(slot))
    : textElement("h3", "booking.callback_title");
  const label = document.createElement("label");
  label.className = "case";
  const phone = document.createElement("input");
  phone.dataset.testid = kind === "callback" ? "callback-phone" : "booking-phone";
  phone.inputMode = "none";
  phone.maxLength = 16;
  phone.autocomplete = "off";
  label.append(textElement("span", "booking.phone_label"), phone);
  const error = textElement("p", "booking.phone_rule", null, "error");
  error.dataset.testid = "phone-error";
  error.setAttribute("role", "alert");
  error.hidden = true;
  const pad = document.createElement("div");
  pad.className = "keypad phone-keypad";
  pad.dataset.testid = "phone-keypad";
  const fields = document.createElement("div");
  fields.className = "phone-entry";
  fields.append(label);
  let note = null;
  if (kind === "callback") {
    const noteLabel = document.createElement("label");
    noteLabel.className = "case";
    note = document.createElement("textarea");
    note.dataset.testid = "callback-note";
    note.maxLength = 500;
    note.rows = 2;
    noteLabel.append(textElement("span", "booking.note_label"), note);
    fields.append(noteLabel);
  }
  const send = button(kind === "callback" ? "booking.callback_send" : "booking.book_send", `${kind}-submit`, "big-button");
  const back = button("booking.back", "booking-back");
  const failed = textElement("p", "booking.failed", null, "error");
  failed.setAttribute("role", "alert");
  failed.hidden = true;
  phone.addEventListener("input", () => (error.hidden = !phone.value.trim() || mobileDigits(phone.value) !== null));
  back.addEventListener("click", backToOffers);
  send.addEventListener("click", async () => {
    const digits = mobileDigits(phone.value);
    error.hidden = digits !== null;
    if (!digits || !waiting) return;
    send.disabled = true;
    try {
      if (kind === "callback") await requestCallback(digits, note.value.trim());
      else await book(digits, slot);
    } catch (err) {
      failed.hidden = false;
      setText(failed, err.status === 409 ? "booking.slot_gone" : "booking.failed");
      send.disabled = false;
    }
  });
  const row = document.createElement("div");
  row.className = "big-buttons";
  row.append(send, back);
  holder.replaceChildren(title, fields, error, pad, failed, row);
  keypad(pad, { pages: [[PHONE_KEYS]], target: () => phone, prefix: "phone-key", done: false }).open();
  phone.focus();
}

async function requestCallback(phone, note) {
  const body = { department: waiting.department, phone, note, consultation_id: waiting.consultationId };
  if (waiting.caseNumber) body.case_number = waiting.caseNumber;
  const made = await api("POST", "/api/v1/callbacks", body);
  const done = textElement("p", "booking.callback_done", { phone: made.phone_masked, ...slotVars(made.expires_at) }, "big-status");
  done.dataset.testid = "callback-done";
  const department = hooks.departmentName(waiting.department);
  finish([done], () =>
    printArrangement("slip.callback_title", department, [
      line("slip.callback_phone", { phone: made.phone_masked }),
      line("slip.callback_by", { time: { time: made.expires_at } }),
    ]),
  );
}

async function showSlots() {
  busy = true;
  const holder = offersHolder();
  let answer;
  try {
    answer = await api("GET", `/api/v1/departments/${waiting.department}/slots`);
  } catch {
    holder.replaceChildren(textElement("p", "booking.failed", null, "error"), backButton());
    return;
  }
  if (!answer.slots.length) {
    holder.replaceChildren(textElement("p", "booking.no_slots", null, "big-status"), backButton());
    return;
  }
  const list = document.createElement("div");
  list.className = "tiles slots";
  for (const slot of answer.slots.slice(0, SLOTS_SHOWN)) {
    const choice = textElement("button", "booking.slot", slotVars(slot.at), "tile");
    choice.type = "button";
    choice.dataset.testid = "slot";
    choice.dataset.at = String(slot.at);
    choice.addEventListener("click", () => showPhoneEntry("booking", slot.at));
    list.append(choice);
  }
  holder.replaceChildren(textElement("h3", "booking.choose_slot"), list, backButton());
}

function backButton() {
  const back = button("booking.back", "booking-back");
  back.addEventListener("click", backToOffers);
  return back;
}

async function book(phone, slot) {
  const made = await api("POST", "/api/v1/appointments", { department: waiting.department, slot_at: slot, phone });
  const code = document.createElement("p");
  code.className = "reference-code";
  code.dataset.testid = "booking-code";
  code.translate = false;
  code.textContent = made.booking_code;
  const department = hooks.departmentName(waiting.department);
  finish(
    [
      textElement("p", "booking.booked", slotVars(made.appointment.slot_at), "big-status"),
      textElement("p", "booking.code_is"),
      code,
      textElement("p", "booking.code_how", null, "muted"),
    ],
    () => {
      const shown = line("slip.booking_code", { code: made.booking_code }, "slip-booking-code");
      shown.translate = false;
      shown.classList.add("slip-code");
      printArrangement("slip.booking_title", department, [
        line("slip.booking_time", { time: { time: made.appointment.slot_at } }),
        shown,
        line("slip.booking_how"),
        line("slip.phone", { phone: made.appointment.phone_masked ?? "—" }),
      ]);
    },
  );
}

// Done: what the citizen must know stays on screen until they leave the queue (the
// kiosk then cancels the waiting consultation and wipes the page).
function finish(parts, print) {
  busy = true;
  const leave = button("booking.done", "booking-done", "big-button");
  leave.addEventListener("click", () => hooks.onLeave());
  // On paper too, for a citizen who cannot write it down or photograph it.
  const paper = button("slip.print", "arrangement-print");
  paper.addEventListener("click", print);
  const row = document.createElement("div");
  row.className = "big-buttons";
  row.append(leave, paper);
  offersHolder().replaceChildren(...parts, row);
}

export function initBookings({ onAdmitted, onLeave, departmentName }) {
  hooks = { onAdmitted, onLeave, departmentName };
  renderCodeEntry();
}
