// Calls for staff from the kiosks of the clerk's halls (web/staff_call_api.py): an
// alert at the top of the clerk's page naming the kiosk, with "on my way"; the
// alert goes from every clerk's page once one of them has taken it.
import { api } from "./api.js";
import { setText, textElement } from "./i18n.js";
import { connectSignal } from "./signal.js";

function alertFor(call, holder, onAnswer) {
  const box = document.createElement("div");
  box.className = "staff-alert";
  box.dataset.testid = "staff-alert";
  box.dataset.callId = call.id;
  box.dataset.kiosk = call.kiosk;
  box.setAttribute("role", "alert");
  const title = textElement("span", "staff.alert_title", null, "staff-alert-title");
  const kiosk = document.createElement("strong");
  kiosk.translate = false;
  kiosk.textContent = call.kiosk_name;
  const at = textElement("span", "staff.at", { time: { time: call.at } }, "muted");
  const answer = textElement("button", "staff.ack");
  answer.type = "button";
  answer.dataset.testid = "staff-ack";
  answer.addEventListener("click", () => onAnswer(call, box, answer));
  box.append(title, kiosk, at, answer);
  holder.prepend(box);
}

export function watchStaffCalls() {
  const holder = document.createElement("section");
  holder.id = "staff-calls";
  holder.className = "staff-alerts";
  holder.dataset.testid = "staff-calls";
  document.getElementById("app-view").prepend(holder);
  const remove = (id) => holder.querySelector(`[data-call-id="${CSS.escape(id)}"]`)?.remove();
  const answer = async (call, box, button) => {
    button.disabled = true;
    try {
      await api("POST", "/api/v1/staff-calls/answer", { id: call.id, kiosk: call.kiosk });
      box.remove();
    } catch (err) {
      // Taken by a colleague a moment before (their answer reaches this page too),
      // or no longer open: nothing to go to.
      if (err.status === 409) return box.remove();
      button.disabled = false;
      setText(button, "error.generic");
    }
  };
  const signal = connectSignal();
  signal.on("staff_call", (call) => {
    remove(call.id);
    alertFor(call, holder, answer);
  });
  signal.on("staff_call_answered", (answered) => remove(answered.id));
  return signal;
}
