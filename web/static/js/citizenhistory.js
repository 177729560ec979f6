// The expert's view of the citizen's earlier consultations with their own
// department, during the call: only when the citizen gave an identity number on the
// kiosk and agreed (the server answers nothing otherwise), so that a second visit
// starts where the first ended. The number is shown masked.
import { api } from "./api.js";
import { setText, textElement } from "./i18n.js";
import { byTestId } from "./session.js";

const RETRY_MS = 3000;

export class CitizenHistory {
  // ``hallName(code)``: the hall's names ({zh, en}) or the code.
  constructor({ hallName }) {
    this.hallName = hallName;
    this.panel = byTestId("history");
    this.list = this.panel.querySelector("ul");
    this.title = this.panel.querySelector("h2");
    this.callId = null;
    this.retry = null;
  }

  // A new call: what the citizen let the expert see (asked again once a moment
  // later: the kiosk gives the number just after its request reaches the queue).
  async show(callId) {
    this.clear();
    this.callId = callId;
    const found = await this.fetch(callId);
    if (!found && this.callId === callId) {
      this.retry = setTimeout(() => this.fetch(callId), RETRY_MS);
    }
  }

  async fetch(callId) {
    const seen = await api("GET", `/api/v1/consultations/${callId}/history`).catch(() => null);
    if (!seen || this.callId !== callId || !seen.consented) return false;
    setText(this.title, "history.title", { masked: seen.masked });
    this.list.replaceChildren();
    if (seen.consultations.length === 0) this.list.append(textElement("li", "history.none", null, "muted"));
    for (const { record, documents } of seen.consultations) {
      const row = document.createElement("li");
      row.dataset.testid = "history-entry";
      row.dataset.consultation = record.id;
      const outcome = record.outcome ? { key: `outcome.${record.outcome}` } : { key: `end_reason.${record.end_reason ?? "open"}` };
      row.append(
        textElement("p", "history.entry", {
          time: { time: record.waiting_at },
          hall: record.hall ? this.hallName(record.hall) : "—",
          outcome,
          expert: record.expert_name ?? "—",
        }),
      );
      if (record.notes) {
        const notes = document.createElement("p");
        notes.className = "history-notes";
        notes.textContent = record.notes;
        row.append(notes);
      }
      if (documents.length) {
        const files = document.createElement("ul");
        files.className = "history-files";
        for (const document_ of documents) {
          const item = document.createElement("li");
          const link = document.createElement("a");
          link.href = document_.url;
          link.target = "_blank";
          link.rel = "noopener";
          link.textContent = document_.name;
          item.append(link);
          files.append(item);
        }
        row.append(files);
      }
      this.list.append(row);
    }
    this.panel.hidden = false;
    return true;
  }

  clear() {
    clearTimeout(this.retry);
    this.callId = null;
    this.panel.hidden = true;
    this.list.replaceChildren();
  }
}
