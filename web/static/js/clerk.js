// The front window: today's consultations of the clerk's halls (filtered by hall,
// department and time), or one found by case number, by the short reference the
// kiosk showed the citizen, or by id; the documents exchanged in it, attached to the
// case record; the case's documents downloaded; a consultation that had no case
// number linked to one.
import { api } from "./api.js";
import { confirmDialog } from "./confirm.js";
import { idNumberProblem, normalizeIdNumber } from "./idnumber.js";
import { fileRow } from "./files.js";
import { setText, textElement } from "./i18n.js";
import { byTestId, startPage } from "./session.js";
import { watchStaffCalls } from "./staffcall.js";

const CATEGORIES = ["application", "supplementary", "reply"];
const CASE_PATTERN = /^[A-Za-z0-9-]{1,40}$/;
// The kiosk's short reference (storage/references.py): six of these, read aloud and
// typed in any case, with or without a space or dash in the middle.
const REFERENCE_ALPHABET = "23456789ACDEFHJKMNPRTWXY";
const TODAY_REFRESH_MS = 30000;
let departments = new Map();
let halls = new Map();
let ownHalls = [];
let current = null;

function departmentName(code) {
  const dept = departments.get(code);
  return dept ? { zh: dept.name_zh, en: dept.name_en } : code;
}

function hallName(code) {
  const hall = halls.get(code);
  return hall ? { zh: hall.name_zh, en: hall.name_en } : (code ?? "—");
}

function typedReference(text) {
  const value = text.toUpperCase().replace(/[\s-]/g, "");
  return value.length === 6 && [...value].every((c) => REFERENCE_ALPHABET.includes(c)) ? value : null;
}

// "K7M4XP" as the kiosk showed it: "K7M 4XP".
function spokenReference(reference) {
  return reference ? `${reference.slice(0, 3)} ${reference.slice(3)}` : "—";
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
  await showLegs(record.id);
  await showIdentity(record.id);
  await showAttachments();
  panel.dataset.loaded = "true";
}

const REVEAL_MS = 30000;
let revealTimer = null;

// The identity number the citizen gave, masked; in full only for a reason the
// clerk gives (audited), and masked again after half a minute.
async function showIdentity(id) {
  clearTimeout(revealTimer);
  const box = document.getElementById("identity-box");
  const shown = byTestId("id-number-masked");
  const given = await api("GET", `/api/v1/consultations/${id}/identity`).catch(() => null);
  box.hidden = !given?.masked;
  if (!given?.masked) return;
  setText(shown, "clerk.id_number", { number: given.masked });
  byTestId("id-reveal").onclick = async () => {
    const reason = await confirmDialog("clerk.id_reveal_question", {
      field: { labelKey: "clerk.id_reveal_reason" },
      validate: (value) => (value.trim().length < 2 ? "clerk.id_reveal_reason_needed" : null),
      yesKey: "clerk.id_reveal",
    });
    if (!reason || current?.id !== id) return;
    const revealed = await api("POST", `/api/v1/consultations/${id}/identity/reveal`, { reason: reason.trim() }).catch(() => null);
    if (!revealed?.id_number || current?.id !== id) return;
    setText(shown, "clerk.id_number", { number: revealed.id_number });
    revealTimer = setTimeout(() => setText(shown, "clerk.id_number", { number: given.masked }), REVEAL_MS);
  };
}

// Who took part, in order (issue 21): each staff member's part of the call, why it
// ended (left, handed over to another department, the call's end), who invited
// them and with what note, and the outcome each expert recorded.
async function showLegs(id) {
  const box = document.getElementById("legs-box");
  const list = byTestId("consultation-legs");
  list.replaceChildren();
  const record = await api("GET", `/api/v1/consultations/${id}`).catch(() => null);
  const legs = record?.legs ?? [];
  box.hidden = legs.length === 0;
  for (const leg of legs) {
    const item = document.createElement("li");
    item.dataset.testid = "consultation-leg";
    item.dataset.department = leg.department;
    item.dataset.reason = leg.reason ?? "";
    const name = document.createElement("span");
    name.translate = false;
    name.className = "leg-name";
    name.textContent = leg.name || leg.username;
    item.append(
      textElement("span", "clerk.department", { name: departmentName(leg.department) }),
      name,
      textElement("span", `role.${leg.role}`, null, "tag"),
      textElement("span", "clerk.leg_time", { from: { time: leg.joined_at }, to: leg.left_at ? { time: leg.left_at } : "…" }),
      textElement("span", `clerk.leg_reason.${leg.reason ?? "open"}`, null, "tag"),
    );
    if (leg.outcome) item.append(textElement("span", `outcome.${leg.outcome}`, null, "tag"));
    if (leg.invited_by) {
      const by = document.createElement("span");
      by.translate = false;
      by.textContent = leg.invited_by;
      item.append(textElement("span", "clerk.leg_invited_by"), by);
    }
    if (leg.note) {
      const note = document.createElement("span");
      note.translate = false;
      note.className = "leg-note";
      note.textContent = leg.note;
      item.append(textElement("span", "clerk.leg_note"), note);
    }
    list.append(item);
  }
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

// One consultation as a row of either list (today's, or a search's); opens it on
// click or Enter.
function consultationRow(record) {
  const row = document.createElement("tr");
  row.dataset.testid = "consultation-row";
  row.dataset.id = record.id;
  row.tabIndex = 0;
  if (current?.id === record.id) row.classList.add("selected");
  const reference = cell(spokenReference(record.reference));
  reference.translate = false;
  reference.className = "reference";
  const caseCell = cell(record.case_number ?? "");
  if (record.case_number) caseCell.translate = false;
  else setText(caseCell, "clerk.no_case_short");
  const expert = cell(record.expert_name ?? "—");
  expert.translate = false;
  const outcome = record.outcome ? `outcome.${record.outcome}` : record.end_reason ? `end_reason.${record.end_reason}` : `clerk.state.${record.state}`;
  row.append(
    cell(textElement("span", "clerk.time", { time: { time: record.waiting_at } })),
    reference,
    caseCell,
    cell(textElement("span", "clerk.hall", { name: hallName(record.hall) })),
    cell(textElement("span", "clerk.department", { name: departmentName(record.department) })),
    expert,
    cell(textElement("span", outcome)),
  );
  const open = () => {
    for (const other of document.querySelectorAll("[data-testid=consultation-row]")) other.classList.remove("selected");
    row.classList.add("selected");
    openConsultation(record);
  };
  row.addEventListener("click", open);
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter") open();
  });
  return row;
}

function closePanels() {
  current = null;
  document.getElementById("consultation-panel").hidden = true;
  document.getElementById("case-panel").hidden = true;
}

// Either today's list or a search's results is shown, never both: rows of a list
// out of sight are removed, not hidden.
function showSearch(searching) {
  document.getElementById("search-section").hidden = !searching;
  document.getElementById("today-section").hidden = searching;
  byTestId("today-show").hidden = !searching;
  if (searching) byTestId("today-list").replaceChildren();
  else byTestId("consultation-list").replaceChildren();
}

async function search(query) {
  const list = byTestId("consultation-list");
  const message = document.getElementById("search-message");
  showSearch(true);
  message.textContent = "";
  closePanels();
  const reference = typedReference(query);
  let lookups = [];
  if (/^[0-9a-f]{16}$/.test(query)) {
    lookups = [api("GET", `/api/v1/consultations/${query}`).then((r) => [r])];
  } else if (CASE_PATTERN.test(query) || reference) {
    if (CASE_PATTERN.test(query)) {
      lookups.push(api("GET", `/api/v1/consultations?case_number=${encodeURIComponent(query)}`).then((r) => r.consultations));
    }
    // The reference finds a consultation of the clerk's halls only.
    if (reference) lookups.push(api("GET", `/api/v1/hall-consultations?reference=${reference}`).then((r) => r.consultations));
  } else {
    setText(message, "clerk.bad_query");
    return;
  }
  const found = await Promise.all(lookups.map((lookup) => lookup.catch(() => [])));
  const records = [...new Map(found.flat().map((r) => [r.id, r])).values()];
  records.sort((a, b) => b.waiting_at - a.waiting_at);
  list.replaceChildren(...records.map(consultationRow));
  if (records.length === 0) setText(message, "clerk.none");
}

// Every consultation of a citizen, at every hall, by identity number (in the
// request's body, never its address; the server audits the search).
async function searchIdNumber(number) {
  const list = byTestId("consultation-list");
  const message = document.getElementById("search-message");
  showSearch(true);
  message.textContent = "";
  closePanels();
  const problem = idNumberProblem(number);
  if (problem) {
    setText(message, `kiosk.id_error.${problem}`, { n: normalizeIdNumber(number).length });
    list.replaceChildren();
    return;
  }
  const found = await api("POST", "/api/v1/identity/search", { id_number: normalizeIdNumber(number) }).catch(() => null);
  const records = found ? found.consultations.map((entry) => entry.record) : [];
  list.replaceChildren(...records.map(consultationRow));
  if (records.length === 0) setText(message, "clerk.none");
  else setText(message, "clerk.id_found", { masked: found.masked, n: records.length });
}

// The part of today the time filter names, as local clock times (HH:MM).
function timeSpan(choice) {
  if (choice === "morning") return { until: "12:00" };
  if (choice === "afternoon") return { since: "12:00" };
  if (choice === "hour") {
    const hourAgo = new Date(Date.now() - 3600 * 1000);
    if (hourAgo.getDate() !== new Date().getDate()) return {};
    const pad = (n) => String(n).padStart(2, "0");
    return { since: `${pad(hourAgo.getHours())}:${pad(hourAgo.getMinutes())}` };
  }
  return {};
}

async function loadToday() {
  const list = byTestId("today-list");
  const message = document.getElementById("today-message");
  const params = new URLSearchParams();
  const hall = byTestId("today-hall").value;
  const department = byTestId("today-department").value;
  if (hall) params.set("hall", hall);
  if (department) params.set("department", department);
  for (const [name, value] of Object.entries(timeSpan(byTestId("today-time").value))) params.set(name, value);
  let records;
  try {
    records = (await api("GET", `/api/v1/hall-consultations?${params}`)).consultations;
  } catch {
    setText(message, "error.generic");
    return;
  }
  if (document.getElementById("today-section").hidden) return;
  list.replaceChildren(...records.map(consultationRow));
  if (ownHalls.length === 0) setText(message, "clerk.no_halls");
  else if (records.length === 0) setText(message, "clerk.today_none");
  else message.textContent = "";
  list.dataset.loaded = "true";
}

function option(value, key, vars) {
  const element = textElement("option", key, vars);
  element.value = value;
  return element;
}

// The hall filter offers the clerk's halls (an admin: every hall); a clerk of one
// hall has nothing to choose.
function fillFilters(me) {
  const hallSelect = byTestId("today-hall");
  hallSelect.replaceChildren(option("", me.role === "admin" ? "clerk.all_halls" : "clerk.my_halls"));
  for (const code of ownHalls) hallSelect.append(option(code, "clerk.hall", { name: hallName(code) }));
  hallSelect.closest("label").hidden = me.role !== "admin" && ownHalls.length < 2;
  const departmentSelect = byTestId("today-department");
  departmentSelect.replaceChildren(option("", "clerk.all_departments"));
  for (const [code] of departments) departmentSelect.append(option(code, "clerk.department", { name: departmentName(code) }));
}

startPage({
  roles: ["clerk", "admin"],
  onLogin: async (me) => {
    // Kiosks of the clerk's halls calling for staff (an alert on top of the page).
    if (me.role === "clerk") watchStaffCalls();
    // The names the page shows (departments; every hall, as a consultation found
    // by case number may be of another; the filter offers the clerk's own). The
    // page is on screen while they load: what the clerk types meanwhile waits for
    // them rather than being lost (its listeners are there from the start).
    const named = (async () => {
      const data = await api("GET", "/api/v1/departments").catch(() => ({ departments: [] }));
      departments = new Map(data.departments.map((d) => [d.code, d]));
      const all = await api("GET", "/api/v1/halls").catch(() => ({ halls: [] }));
      halls = new Map([...me.halls, ...all.halls].map((h) => [h.code, h]));
      ownHalls = me.role === "admin" ? [...halls.keys()] : me.halls.map((h) => h.code);
      fillFilters(me);
    })();
    const input = byTestId("case-search");
    const go = async () => {
      const query = input.value.trim();
      if (!query) return;
      await named;
      search(query);
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") go();
    });
    byTestId("search-button").addEventListener("click", go);
    const idInput = byTestId("id-search");
    idInput.addEventListener("keydown", async (event) => {
      if (event.key === "Enter" && idInput.value.trim()) {
        const number = idInput.value;
        // Not left on the screen of a window others walk past.
        idInput.value = "";
        await named;
        searchIdNumber(number);
      }
    });
    byTestId("link-case").addEventListener("click", async () => {
      await named;
      linkCase();
    });
    byTestId("today-show").addEventListener("click", async () => {
      input.value = "";
      closePanels();
      showSearch(false);
      await named;
      loadToday();
    });
    await named;
    for (const id of ["today-hall", "today-department", "today-time"]) byTestId(id).addEventListener("change", loadToday);
    byTestId("today-refresh").addEventListener("click", loadToday);
    setInterval(() => {
      if (!document.hidden && !document.getElementById("today-section").hidden) loadToday();
    }, TODAY_REFRESH_MS);
    await loadToday();
  },
});
