// The expert desk's call-backs and today's appointments (issue 22): the department's
// open call-back requests in the order their citizens queued (numbers masked); taking
// one shows the number in full to this expert only (the server audits it), then each
// call's result is recorded. Today's appointments of the department, by time.
import { api } from "./api.js";
import { setText, textElement } from "./i18n.js";

const REFRESH_MS = 30000;
const RESULTS = ["reached", "no_answer", "wrong_number"];

let taken = new Map(); // callback id -> the full number, while this expert holds it

function row(testid) {
  const li = document.createElement("li");
  li.dataset.testid = testid;
  return li;
}

function recordForm(callback, status, refresh) {
  const form = document.createElement("div");
  form.className = "callback-record";
  const phone = document.createElement("p");
  phone.className = "big";
  phone.dataset.testid = "callback-phone-full";
  phone.translate = false;
  phone.textContent = taken.get(callback.id) ?? "";
  const note = document.createElement("input");
  note.dataset.testid = "callback-result-note";
  note.maxLength = 500;
  note.autocomplete = "off";
  const label = document.createElement("label");
  label.append(textElement("span", "desk.callback_note"), note);
  const buttons = document.createElement("div");
  buttons.className = "outcome-buttons";
  for (const result of RESULTS) {
    const button = textElement("button", `desk.callback_${result}`, null, result === "reached" ? "" : "secondary");
    button.type = "button";
    button.dataset.testid = `callback-result-${result}`;
    button.addEventListener("click", async () => {
      try {
        await api("POST", `/api/v1/callbacks/${callback.id}/attempts`, { result, note: note.value.trim() });
        taken.delete(callback.id);
        refresh();
      } catch {
        setText(status, "error.generic");
      }
    });
    buttons.append(button);
  }
  form.append(phone, label, buttons);
  return form;
}

function callbackRow(callback, status, refresh) {
  const li = row("callback");
  li.dataset.id = callback.id;
  li.dataset.state = callback.state;
  const what = textElement("p", "desk.callback_row", {
    case: callback.case_number ?? "—",
    phone: callback.phone_masked,
    since: { time: callback.queued_at },
    attempts: callback.attempts,
    max: callback.max_attempts,
  });
  const note = document.createElement("p");
  note.className = "muted";
  note.textContent = callback.note;
  li.append(what, note);
  if (callback.state === "taken" && !callback.taken_by_me) {
    li.append(textElement("p", "desk.callback_taken_other", null, "muted"));
  } else if (callback.taken_by_me && taken.has(callback.id)) {
    li.append(recordForm(callback, status, refresh));
  } else {
    const take = textElement("button", "desk.callback_take");
    take.type = "button";
    take.dataset.testid = "callback-take";
    take.addEventListener("click", async () => {
      try {
        const answer = await api("POST", `/api/v1/callbacks/${callback.id}/take`);
        taken.set(callback.id, answer.phone);
        refresh();
      } catch (err) {
        setText(status, err.status === 409 ? "desk.callback_gone" : "error.generic");
        refresh();
      }
    });
    li.append(take);
  }
  return li;
}

async function refreshCallbacks() {
  const list = document.querySelector('[data-testid="callback-list"]');
  const status = document.getElementById("callbacks-status");
  if (!list) return;
  try {
    const answer = await api("GET", "/api/v1/callbacks");
    const refresh = () => refreshCallbacks();
    list.replaceChildren(...answer.callbacks.map((c) => callbackRow(c, status, refresh)));
    if (!answer.callbacks.length) setText(status, "desk.callbacks_none");
    else status.textContent = "";
  } catch {
    // Keep the last list; the connection banner tells about the network.
  }
}

async function refreshAppointments() {
  const list = document.querySelector('[data-testid="appointments"]');
  if (!list) return;
  try {
    const answer = await api("GET", "/api/v1/appointments/today");
    const rows = answer.appointments.map((a) => {
      const li = row("appointment");
      li.dataset.state = a.state;
      li.append(
        textElement("span", "desk.appointment_row", {
          time: { time: a.slot_at },
          state: { key: `desk.appointment_${a.state}` },
          phone: a.phone_masked ?? a.id_number_masked ?? "—",
        }),
      );
      return li;
    });
    if (!rows.length) rows.push(textElement("li", "desk.appointments_none", null, "muted"));
    list.replaceChildren(...rows);
  } catch {
    // As above.
  }
}

// Experts only: an interpreting pool takes no call-backs and keeps no appointments.
export function initDeskBookings({ interpreter }) {
  const sections = ["callbacks-section", "appointments-section"].map((id) => document.getElementById(id));
  if (interpreter) {
    for (const section of sections) if (section) section.hidden = true;
    return;
  }
  taken = new Map();
  refreshCallbacks();
  refreshAppointments();
  setInterval(() => {
    // A number being called stays on screen: the list is not redrawn under it.
    if (!taken.size) refreshCallbacks();
    refreshAppointments();
  }, REFRESH_MS);
}
