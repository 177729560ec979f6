// The front window: find a consultation by case number (or id), see the documents
// exchanged in it, attach them to the case record, download the case's documents,
// and link a consultation that had no case number to one.
import { api } from "./api.js";
import { fileRow } from "./files.js";
import { setText, textElement } from "./i18n.js";
import { byTestId, startPage } from "./session.js";

const CATEGORIES = ["application", "supplementary", "reply"];
const CASE_PATTERN = /^[A-Za-z0-9-]{1,40}$/;
let departments = new Map();
let current = null;

function departmentName(code) {
  const dept = departments.get(code);
  return dept ? { zh: dept.name_zh, en: dept.name_en } : code;
}

function cell(content) {
  const td = document.createElement("td");
  if (typeof content === "string") td.textContent = content;
  else td.append(content);
  return td;
}

async function showAttachments() {
  const panel = document.getElementById("case-panel");
  const list = byTestId("case-attachments");
  list.replaceChildren();
  const caseNumber = current?.case_number;
  if (!caseNumber) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  document.getElementById("case-title").textContent = caseNumber;
  const data = await api("GET", `/api/v1/cases/${encodeURIComponent(caseNumber)}/attachments`).catch(() => ({ attachments: [] }));
  if (data.attachments.length === 0) list.append(textElement("li", "clerk.no_attachments", null, "muted"));
  for (const item of data.attachments) {
    const row = fileRow(item.file, { download: false, thumbnail: false });
    const link = textElement("a", "clerk.download", null, "button-link");
    link.dataset.testid = "download-file";
    link.href = item.file.url;
    link.setAttribute("download", "");
    row.append(textElement("span", `category.${item.category}`, null, "tag"), link);
    list.append(row);
  }
}

function attachControls(file) {
  const box = document.createElement("span");
  box.className = "attach";
  const category = document.createElement("select");
  category.dataset.testid = "attach-category";
  category.setAttribute("aria-label", "category");
  for (const name of CATEGORIES) {
    const option = textElement("option", `category.${name}`);
    option.value = name;
    category.append(option);
  }
  // What the expert sent is usually the department's reply; the citizen's, application material.
  category.value = file.uploaded_by === "expert" ? "reply" : "application";
  const attach = textElement("button", "clerk.attach");
  attach.type = "button";
  attach.dataset.testid = "attach-file";
  attach.disabled = !current.case_number;
  attach.addEventListener("click", async () => {
    if (!current.case_number) return;
    attach.disabled = true;
    try {
      await api("POST", `/api/v1/cases/${encodeURIComponent(current.case_number)}/attachments`, {
        file_id: file.id,
        category: category.value,
      });
      setText(attach, "clerk.attached");
    } catch (err) {
      // Refused for another case or none: the server checks the consultation's case.
      const refusal = ["other_case", "no_case_number"].includes(err.code) ? "clerk.not_this_case" : "error.generic";
      setText(attach, err.code === "already_attached" ? "clerk.attached" : refusal);
      attach.disabled = err.status === 409;
    }
    await showAttachments();
  });
  box.append(category, attach);
  return box;
}

async function openConsultation(record) {
  current = record;
  const panel = document.getElementById("consultation-panel");
  const list = byTestId("file-list");
  // Set once the files and attachments are shown, so a reader knows the panel is complete.
  delete panel.dataset.loaded;
  list.replaceChildren();
  panel.hidden = false;
  document.getElementById("link-case").hidden = Boolean(record.case_number);
  document.getElementById("link-message").textContent = "";
  const data = await api("GET", `/api/v1/consultations/${record.id}/files`).catch(() => ({ files: [] }));
  if (data.files.length === 0) list.append(textElement("li", "files.none", null, "muted"));
  for (const file of data.files) {
    const row = fileRow(file);
    row.append(textElement("span", `files.from.${file.uploaded_by}`, null, "tag"), attachControls(file));
    list.append(row);
  }
  await showAttachments();
  panel.dataset.loaded = "true";
}

async function linkCase() {
  const input = byTestId("link-case-input");
  const reasonInput = byTestId("link-reason-input");
  const message = document.getElementById("link-message");
  const value = input.value.trim();
  const reason = reasonInput.value.trim();
  if (!CASE_PATTERN.test(value)) {
    setText(message, "clerk.bad_case");
    return;
  }
  // A consultation is linked once, and the reason is kept in the audit log.
  if (reason.length < 2) {
    setText(message, "clerk.no_reason");
    return;
  }
  try {
    await api("POST", `/api/v1/consultations/${current.id}/case`, { case_number: value, reason });
  } catch (err) {
    setText(message, err.status === 409 ? "clerk.already_linked" : "error.generic");
    return;
  }
  input.value = "";
  reasonInput.value = "";
  const record = await api("GET", `/api/v1/consultations/${current.id}`);
  await search(record.case_number);
  byTestId("case-search").value = record.case_number;
}

async function search(query) {
  const list = byTestId("consultation-list");
  const message = document.getElementById("search-message");
  list.replaceChildren();
  message.textContent = "";
  document.getElementById("consultation-panel").hidden = true;
  document.getElementById("case-panel").hidden = true;
  let records = [];
  if (/^[0-9a-f]{16}$/.test(query)) {
    records = await api("GET", `/api/v1/consultations/${query}`).then((r) => [r]).catch(() => []);
  } else if (CASE_PATTERN.test(query)) {
    records = await api("GET", `/api/v1/consultations?case_number=${encodeURIComponent(query)}`)
      .then((r) => r.consultations)
      .catch(() => []);
  } else {
    setText(message, "clerk.bad_query");
    return;
  }
  if (records.length === 0) {
    setText(message, "clerk.none");
    return;
  }
  for (const record of records) {
    const row = document.createElement("tr");
    row.dataset.testid = "consultation-row";
    row.tabIndex = 0;
    const caseCell = cell(record.case_number ?? "");
    if (!record.case_number) setText(caseCell, "clerk.no_case_short");
    caseCell.translate = false;
    const expert = cell(record.expert_name ?? "—");
    expert.translate = false;
    const outcome = record.outcome ? `outcome.${record.outcome}` : record.end_reason ? `end_reason.${record.end_reason}` : `clerk.state.${record.state}`;
    row.append(
      caseCell,
      cell(textElement("span", "clerk.department", { name: departmentName(record.department) })),
      expert,
      cell(textElement("span", "clerk.time", { time: { time: record.waiting_at } })),
      cell(textElement("span", outcome)),
    );
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
    const data = await api("GET", "/api/v1/departments").catch(() => ({ departments: [] }));
    departments = new Map(data.departments.map((d) => [d.code, d]));
    const input = byTestId("case-search");
    const go = () => input.value.trim() && search(input.value.trim());
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") go();
    });
    byTestId("search-button").addEventListener("click", go);
    byTestId("link-case").addEventListener("click", linkCase);
  },
});
