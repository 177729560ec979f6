// The front window: find a consultation by case number (or id), see the documents
// exchanged in it, attach them to the case record, download the case's documents.
import { api } from "./api.js";
import { t } from "./i18n.js";
import { byTestId, startPage } from "./session.js";

const CATEGORIES = ["application", "supplementary", "reply"];
let caseNumber = null;

function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (className) el.className = className;
  return el;
}

async function showAttachments() {
  const panel = document.getElementById("case-panel");
  const list = byTestId("case-attachments");
  list.replaceChildren();
  if (!caseNumber) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  document.getElementById("case-title").textContent = caseNumber;
  const data = await api("GET", `/api/v1/cases/${encodeURIComponent(caseNumber)}/attachments`);
  for (const item of data.attachments) {
    const row = document.createElement("li");
    const link = document.createElement("a");
    link.dataset.testid = "download-file";
    link.href = item.file.url;
    link.setAttribute("download", "");
    link.textContent = item.file.name;
    row.append(link, text("span", t(`category.${item.category}`), "muted"));
    list.append(row);
  }
}

async function openConsultation(record) {
  caseNumber = record.case_number;
  const panel = document.getElementById("consultation-panel");
  const list = byTestId("file-list");
  list.replaceChildren();
  panel.hidden = false;
  const data = await api("GET", `/api/v1/consultations/${record.id}/files`).catch(() => ({ files: [] }));
  for (const file of data.files) {
    const row = document.createElement("li");
    const link = document.createElement("a");
    link.href = file.url;
    link.setAttribute("download", "");
    link.textContent = file.name;
    const category = document.createElement("select");
    for (const name of CATEGORIES) {
      const option = text("option", t(`category.${name}`));
      option.value = name;
      category.append(option);
    }
    const attach = text("button", t("clerk.attach"));
    attach.type = "button";
    attach.dataset.testid = "attach-file";
    attach.addEventListener("click", async () => {
      if (!caseNumber) return;
      attach.disabled = true;
      try {
        await api("POST", `/api/v1/cases/${encodeURIComponent(caseNumber)}/attachments`, {
          file_id: file.id,
          category: category.value,
        });
        attach.textContent = t("clerk.attached");
      } catch (err) {
        attach.textContent = err.status === 409 ? t("clerk.attached") : t("error.generic");
      }
      await showAttachments();
    });
    row.append(link, category, attach);
    list.append(row);
  }
  await showAttachments();
}

async function search(query) {
  const list = byTestId("consultation-list");
  list.replaceChildren();
  let records = [];
  try {
    if (/^[0-9a-f]{16}$/.test(query)) {
      records = [await api("GET", `/api/v1/consultations/${query}`)];
    } else {
      records = (await api("GET", `/api/v1/consultations?case_number=${encodeURIComponent(query)}`)).consultations;
    }
  } catch {
    records = [];
  }
  if (records.length === 0) {
    list.append(text("li", t("clerk.none"), "muted"));
    return;
  }
  for (const record of records) {
    const row = document.createElement("li");
    row.dataset.testid = "consultation-row";
    row.tabIndex = 0;
    const when = new Date(record.waiting_at * 1000).toLocaleString(document.documentElement.lang);
    row.textContent = `${record.case_number ?? ""} · ${record.department} · ${when} · ${t(
      `clerk.state.${record.state}`,
    )}`;
    const open = () => {
      for (const other of list.children) other.classList.remove("selected");
      row.classList.add("selected");
      openConsultation(record);
    };
    row.addEventListener("click", open);
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") open();
    });
    list.append(row);
  }
}

startPage({
  roles: ["clerk", "admin"],
  onLogin: async () => {
    const input = byTestId("case-search");
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && input.value.trim()) search(input.value.trim());
    });
  },
});
