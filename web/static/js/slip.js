// The citizen's slip, printed at the kiosk after the call (web/slip_api.py): the
// browser's print of this view, sized for an 80 mm receipt printer (app.css, @media
// print); a kiosk set up to print silently (Chromium --kiosk-printing) prints it
// without a dialog. Offered, never forced; the privacy wipe takes it with the page.
import { api } from "./api.js";
import { setText, textElement } from "./i18n.js";
import { drawQr } from "./phonelink.js";
import { byTestId } from "./session.js";

const QR_PIXELS = 160;

export function line(key, vars, testid) {
  const row = textElement("p", key, vars, "slip-line");
  if (testid) row.dataset.testid = testid;
  return row;
}

// ``extra``: what only this page knows (a booking code it just showed, a call-back
// time), printed too.
export async function printSlip(consultationId, extra = {}) {
  const view = byTestId("slip");
  const status = byTestId("slip-status");
  setText(status, "slip.preparing");
  let slip;
  try {
    slip = await api("GET", `/api/v1/consultations/${consultationId}/slip`);
  } catch {
    setText(status, "slip.failed");
    return false;
  }
  const body = view.querySelector(".slip-body");
  body.replaceChildren();
  const name = (n) => (n ? { zh: n.name_zh, en: n.name_en } : "—");
  body.append(
    textElement("h2", "slip.title", null, "slip-title"),
    line("slip.hall", { hall: name(slip.hall) }),
    line("slip.time", { time: { time: slip.started_at ?? slip.ended_at ?? Date.now() / 1000 } }),
    line("slip.department", { department: name(slip.department) }),
  );
  const experts = slip.experts.map((e) => e.name).join("、");
  if (experts) body.append(line("slip.experts", { experts }));
  body.append(
    line(
      "slip.outcome",
      { outcome: slip.outcome ? { key: `outcome.${slip.outcome}` } : { key: "slip.outcome_pending" } },
      "slip-outcome",
    ),
  );
  if (slip.materials.length) {
    body.append(textElement("p", "slip.materials", null, "slip-line slip-heading"));
    const list = document.createElement("ol");
    list.dataset.testid = "slip-materials";
    for (const item of slip.materials) {
      const li = document.createElement("li");
      li.translate = false;
      li.textContent = item;
      list.append(li);
    }
    body.append(list);
  }
  if (slip.case_number) body.append(line("slip.case", { case: slip.case_number }));
  if (slip.id_number) body.append(line("slip.id_number", { masked: slip.id_number }, "slip-id-number"));
  if (slip.reference) body.append(line("slip.reference", { reference: slip.reference.replace(/(\d{3})(?=\d)/g, "$1 ") }));
  if (extra.bookingCode) body.append(line("slip.booking", { code: extra.bookingCode, time: { time: extra.bookingAt } }));
  if (extra.callbackAt) body.append(line("slip.callback", { time: { time: extra.callbackAt } }));
  const canvas = document.createElement("canvas");
  canvas.className = "slip-qr";
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", slip.consultation_id);
  drawQr(canvas, slip.qr, QR_PIXELS);
  body.append(canvas, textElement("p", "slip.qr_hint", { id: slip.consultation_id }, "slip-line slip-small"));
  view.hidden = false;
  status.textContent = "";
  delete status.dataset.i18n;
  // After the view has been laid out; headless browsers return at once.
  setTimeout(() => window.print(), 0);
  return true;
}

// What was arranged without a call (a booking, a call-back), on paper, under the
// department's name and above when it was printed: printed from the waiting
// screen, where the page already shows it; on screen nothing changes.
// Everything on it is what the page was just told (no server round trip). The
// slip leaves the page once printed, and the privacy wipe takes the page anyway.
export function printArrangement(titleKey, department, lines) {
  document.querySelector("body > .arrangement-slip")?.remove();
  const view = document.createElement("section");
  view.className = "slip arrangement-slip";
  view.dataset.testid = "arrangement-slip";
  view.append(
    textElement("h2", titleKey, null, "slip-title"),
    line("slip.department", { department }),
    ...lines,
    line("slip.printed_at", { time: { time: Date.now() / 1000 } }),
  );
  document.body.append(view);
  window.addEventListener("afterprint", () => view.remove(), { once: true });
  // After the view has been laid out; headless browsers return at once.
  setTimeout(() => window.print(), 0);
}
