// Administration: the live board, departments, halls, accounts and the audit log.
import { api } from "./api.js";
import { hourlyChart } from "./chart.js";
import { confirmDialog } from "./confirm.js";
import { language, onLanguageChange, setText, t, textElement } from "./i18n.js";
import { byTestId, startPage } from "./session.js";

const BOARD_REFRESH_MS = 5000;
let departments = [];
let halls = [];
let accounts = [];
let editingHall = null;
let lastBoard = null;
let auditBefore = null;

// ---- tabs ---------------------------------------------------------------

function showTab(name) {
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.setAttribute("aria-selected", tab.dataset.tab === name ? "true" : "false");
    tab.classList.toggle("secondary", tab.dataset.tab !== name);
  }
  for (const panel of document.querySelectorAll(".tab-panel")) panel.hidden = panel.id !== `panel-${name}`;
  if (name === "board") loadBoard();
  if (name === "departments") loadDepartments();
  if (name === "halls") loadHalls();
  if (name === "accounts") loadAccounts();
  if (name === "audit") {
    verifyAudit();
    searchAudit(true);
  }
}

// ---- board --------------------------------------------------------------

function td(content, testid) {
  const cell = document.createElement("td");
  if (content instanceof Node) cell.append(content);
  else cell.textContent = content;
  if (testid) cell.dataset.testid = testid;
  return cell;
}

function duration(seconds) {
  return seconds === null || seconds === undefined
    ? textElement("span", "board.none")
    : textElement("span", "board.duration", { d: { duration: seconds } });
}

// 好差评 of the last 30 days, best grade first, those given at least once.
const GRADES = ["very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied"];
function gradeCounts(grades) {
  const given = GRADES.filter((grade) => grades?.[grade]);
  if (given.length === 0) return textElement("span", "board.none");
  const box = document.createElement("span");
  for (const grade of given) {
    const item = textElement("span", "board.grade_count", { grade: { key: `grade.${grade}` }, n: grades[grade] }, "tag");
    item.dataset.grade = grade;
    box.append(item, " ");
  }
  return box;
}

// Open follow-ups of bad grades, overdue ones marked.
function followUpCounts(row) {
  const text = textElement("span", "board.follow_up_counts", { open: row.follow_ups_open ?? 0, overdue: row.follow_ups_overdue ?? 0 });
  if (row.follow_ups_overdue) text.className = "overdue";
  return text;
}

function renderBoard() {
  if (!lastBoard) return;
  const body = byTestId("board-live");
  body.replaceChildren();
  for (const dept of lastBoard.departments) {
    const row = document.createElement("tr");
    row.dataset.testid = `board-row-${dept.code}`;
    row.append(
      td(textElement("span", "board.department_name", { name: { zh: dept.name_zh, en: dept.name_en } })),
      td(String(dept.queue_length), "queue-length"),
      td(duration(dept.longest_wait_s)),
      td(String(dept.experts_online), "experts-online"),
      td(String(dept.experts_busy), "experts-busy"),
      td(String(dept.active_calls), "active-calls"),
      td(gradeCounts(dept.grades), "grades"),
      td(followUpCounts(dept), "follow-ups"),
    );
    body.append(row);
  }
  const hallRows = byTestId("board-halls");
  hallRows.replaceChildren();
  for (const hall of lastBoard.halls) {
    const row = document.createElement("tr");
    row.dataset.testid = `board-hall-${hall.code}`;
    row.append(
      td(textElement("span", "board.hall_name", { name: { zh: hall.name_zh, en: hall.name_en } })),
      td(textElement("span", `hall.level.${hall.level}`)),
      td(String(hall.waiting), "hall-waiting"),
      td(String(hall.consultations_today), "hall-today"),
      td(String(hall.answered_today), "hall-answered"),
      td(gradeCounts(hall.grades), "grades"),
      td(followUpCounts(hall), "follow-ups"),
    );
    hallRows.append(row);
  }
  const today = lastBoard.today;
  const stats = byTestId("board-today");
  stats.replaceChildren();
  const percent = (value) => (value === null ? textElement("span", "board.none") : textElement("span", "board.percent", { p: (value * 100).toFixed(1) }));
  const rating = today.average_rating === null ? textElement("span", "board.none") : textElement("span", "board.rating", { r: today.average_rating.toFixed(2), n: today.ratings });
  for (const [key, value, testid] of [
    ["board.stat.consultations", String(today.consultations), "stat-consultations"],
    ["board.stat.median_wait", duration(today.median_wait_s), "stat-median-wait"],
    ["board.stat.p90_wait", duration(today.p90_wait_s), "stat-p90-wait"],
    ["board.stat.median_handle", duration(today.median_handle_s), "stat-median-handle"],
    ["board.stat.abandonment", percent(today.abandonment_rate), "stat-abandonment"],
    ["board.stat.rating", rating, "stat-rating"],
  ]) {
    const box = document.createElement("div");
    const dd = document.createElement("dd");
    dd.dataset.testid = testid;
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value;
    box.append(textElement("dt", key), dd);
    stats.append(box);
  }
  byTestId("board-chart").replaceChildren(hourlyChart(lastBoard.hourly, language()));
}

async function loadBoard() {
  try {
    lastBoard = await api("GET", "/api/v1/board");
    renderBoard();
  } catch {
    // Next refresh tries again; the banner shows a lost connection.
  }
}

// ---- departments ----------------------------------------------------------

function statusTag(disabled) {
  return textElement("span", disabled ? "admin.disabled" : "admin.enabled", null, disabled ? "tag off" : "tag on");
}

function departmentName(code) {
  const dept = departments.find((d) => d.code === code);
  return dept ? { zh: dept.name_zh, en: dept.name_en } : code;
}

// Languages as typed: one per comma, 、 or line ("手语 / sign language, 维吾尔语").
function parseLanguages(text) {
  return text
    .split(/[,，、;\n]/)
    .map((l) => l.trim())
    .filter(Boolean);
}

// The department whose editor is open: the list is drawn again under it (the tab
// reloads it, a toggle does), and the editor must stay open through that.
let editing = null;

async function loadDepartments() {
  departments = (await api("GET", "/api/v1/departments")).departments;
  const list = byTestId("department-list");
  list.replaceChildren();
  for (const dept of departments) {
    const row = document.createElement("li");
    row.dataset.testid = `department-row-${dept.code}`;
    const name = textElement("span", "admin.department_line", {
      code: dept.code,
      name: { zh: dept.name_zh, en: dept.name_en },
      hours: { hours: dept.hours },
    });
    const toggle = textElement("button", dept.disabled ? "admin.enable" : "admin.disable", null, "secondary small");
    toggle.type = "button";
    toggle.dataset.testid = "department-toggle";
    toggle.addEventListener("click", async () => {
      await api("PATCH", `/api/v1/departments/${dept.code}`, { disabled: !dept.disabled }).catch(() => {});
      loadDepartments();
    });
    row.append(name, statusTag(dept.disabled));
    if (dept.kind === "interpreter") row.append(textElement("span", "admin.kind.interpreter", null, "tag"));
    row.append(toggle, departmentDetails(dept));
    list.append(row);
  }
  fillDepartmentSelect();
}

// One department editor is open at a time: the one before goes, and the list's
// redraws open this one again (`editing`).
function takeEditorPlace(details, key) {
  editing = key;
  details.querySelector(".dept-editor")?.remove();
}

// An editor's frame, its legend (if given) asking about `dept`.
function editorFrame(dept, legendKey = null) {
  const editor = document.createElement("fieldset");
  editor.className = "dept-editor";
  if (legendKey) editor.append(textElement("legend", legendKey, { name: { zh: dept.name_zh, en: dept.name_en } }));
  return editor;
}

// What the admin decides for calls of more than two: an interpreting pool's
// languages; the departments a service's experts may hand a citizen to.
function departmentDetails(dept) {
  const details = document.createElement("div");
  details.className = "members";
  const line = document.createElement("p");
  if (dept.kind === "interpreter") {
    line.append(textElement("span", "admin.languages_line"));
    const languages = document.createElement("span");
    languages.translate = false;
    languages.dataset.testid = "department-languages-list";
    languages.textContent = (dept.languages ?? []).join("、") || "—";
    line.append(languages);
  } else {
    const targets = dept.transfers_to ?? [];
    line.append(textElement("span", targets.length ? "admin.transfers_to" : "admin.transfers_none"));
    for (const code of targets) line.append(textElement("span", "admin.department_option", { name: departmentName(code) }, "tag"));
  }
  const edit = textElement("button", dept.kind === "interpreter" ? "admin.edit_languages" : "admin.edit_transfers", null, "secondary small");
  edit.type = "button";
  edit.dataset.testid = dept.kind === "interpreter" ? "department-languages-edit" : "department-transfers";
  const open = () => {
    takeEditorPlace(details, dept.code);
    details.append(dept.kind === "interpreter" ? languagesEditor(dept) : transfersEditor(dept));
  };
  edit.addEventListener("click", open);
  line.append(edit);
  details.append(line);
  if (editing === dept.code) open();
  if (dept.kind !== "interpreter") details.append(materialsLine(dept, details), bookingLine(dept, details), recordingSwitch(dept));
  return details;
}

// Call-backs and appointments: when a citizen may book and how (the kiosk offers
// both when nobody is online or the wait is long), and a day to cancel.
function bookingLine(dept, details) {
  const line = document.createElement("p");
  line.append(textElement("span", "admin.booking_line"));
  const edit = textElement("button", "admin.edit_booking", null, "secondary small");
  edit.type = "button";
  edit.dataset.testid = "department-booking";
  const close = textElement("button", "admin.close_day", null, "secondary small");
  close.type = "button";
  close.dataset.testid = "department-closure";
  // What the last change did, said where it was done.
  const result = document.createElement("span");
  result.dataset.testid = "department-booking-result";
  result.setAttribute("role", "status");
  const key = `${dept.code}:booking`;
  const open = async () => {
    takeEditorPlace(details, key);
    const editor = editorFrame(dept);
    details.append(editor);
    let settings;
    try {
      settings = await api("GET", `/api/v1/departments/${dept.code}/booking-settings`);
    } catch (err) {
      editor.append(textElement("p", errorKey(err), null, "error"));
      return;
    }
    editor.append(textElement("legend", "admin.booking_question", { name: { zh: dept.name_zh, en: dept.name_en } }));
    const field = (key, testid, element) => {
      const label = document.createElement("label");
      element.dataset.testid = testid;
      label.append(textElement("span", key), element);
      editor.append(label);
      return element;
    };
    const number = (value, min, max) => {
      const input = document.createElement("input");
      input.type = "number";
      input.min = String(min);
      input.max = String(max);
      input.step = "1";
      input.value = String(value);
      return input;
    };
    const spans = document.createElement("textarea");
    spans.rows = 3;
    spans.maxLength = 2000;
    spans.value = settings.availability.join("\n");
    field("admin.booking_availability", "booking-availability", spans);
    const minutes = field("admin.booking_slot_minutes", "booking-slot-minutes", number(settings.slot_minutes, 5, 120));
    const seats = field("admin.booking_slot_capacity", "booking-slot-capacity", number(settings.slot_capacity, 1, 50));
    // Seconds shown in minutes or hours as they are (90 s: 1.5 minutes, not 2), and
    // sent back as they were while the field keeps what it showed.
    const inUnit = (seconds, unit, min, max) => {
      const input = number(Math.round((seconds / unit) * 100) / 100, min, max);
      input.step = "any";
      const shown = input.value;
      return { input, seconds: () => (input.value === shown ? seconds : Number(input.value) * unit) };
    };
    const waitLimit = inUnit(settings.wait_limit_s, 60, 0, 480);
    const expiryTime = inUnit(settings.callback_expiry_s, 3600, 1, 72);
    field("admin.booking_wait_limit", "booking-wait-limit", waitLimit.input);
    const attempts = field("admin.booking_callback_attempts", "booking-callback-attempts", number(settings.callback_attempts, 1, 10));
    field("admin.booking_callback_expiry", "booking-callback-expiry", expiryTime.input);
    const numbers = [minutes, seats, waitLimit.input, attempts, expiryTime.input];
    const body = () => ({
      availability: spans.value.split("\n").map((l) => l.trim()).filter(Boolean),
      slot_minutes: Number(minutes.value),
      slot_capacity: Number(seats.value),
      wait_limit_s: waitLimit.seconds(),
      callback_attempts: Number(attempts.value),
      callback_expiry_s: expiryTime.seconds(),
    });
    const { buttons, message } = editorButtons(async () => {
      // An emptied field (or one a number field cannot read) is not 0.
      if (numbers.some((input) => input.value.trim() === "")) {
        message.className = "error";
        setText(message, "admin.invalid");
        return;
      }
      try {
        await api("PUT", `/api/v1/departments/${dept.code}/booking-settings`, body());
        editing = null;
        editor.remove();
        setText(result, "admin.booking_saved");
      } catch (err) {
        message.className = "error";
        setText(message, errorKey(err));
      }
    }, editor);
    editor.append(buttons);
  };
  const openClosure = () => {
    takeEditorPlace(details, `${dept.code}:closure`);
    const editor = editorFrame(dept, "admin.close_day_question");
    const dayLabel = document.createElement("label");
    const day = document.createElement("input");
    day.type = "date";
    day.dataset.testid = "closure-day";
    dayLabel.append(textElement("span", "admin.close_day_date"), day);
    const reasonLabel = document.createElement("label");
    const reason = document.createElement("input");
    reason.maxLength = 200;
    reason.dataset.testid = "closure-reason";
    reasonLabel.append(textElement("span", "admin.close_day_reason"), reason);
    editor.append(dayLabel, reasonLabel);
    const { buttons, message } = editorButtons(async () => {
      if (!day.value || reason.value.trim().length < 2) {
        message.className = "error";
        setText(message, "admin.close_day_missing");
        return;
      }
      const sure = await confirmDialog("admin.close_day_confirm", { vars: { day: day.value, name: { zh: dept.name_zh, en: dept.name_en } } });
      if (!sure) return;
      try {
        const done = await api("POST", `/api/v1/departments/${dept.code}/closures`, { day: day.value, reason: reason.value.trim() });
        editing = null;
        editor.remove();
        setText(result, "admin.close_day_done", { day: done.day, cancelled: done.cancelled, notified: done.notified });
      } catch (err) {
        message.className = "error";
        setText(message, errorKey(err));
      }
    }, editor);
    editor.append(buttons);
    details.append(editor);
  };
  edit.addEventListener("click", open);
  close.addEventListener("click", openClosure);
  line.append(edit, close, result);
  if (editing === key) queueMicrotask(open);
  if (editing === `${dept.code}:closure`) queueMicrotask(openClosure);
  return line;
}

// Whether its experts may ask to record a call (each time with the citizen's consent).
function recordingSwitch(dept) {
  const label = document.createElement("label");
  label.className = "check";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = Boolean(dept.recording);
  box.dataset.testid = `department-recording-${dept.code}`;
  const message = document.createElement("span");
  message.setAttribute("role", "alert");
  box.addEventListener("change", () => patchDepartment(dept, { recording: box.checked }, message));
  label.append(box, textElement("span", "admin.recording"), message);
  return label;
}

// The checklist its experts tick after a call as still required (一次性告知),
// printed on the citizen's slip.
function materialsLine(dept, details) {
  const line = document.createElement("p");
  const items = dept.materials ?? [];
  line.append(textElement("span", "admin.materials_line", { n: items.length }));
  const edit = textElement("button", "admin.edit_materials", null, "secondary small");
  edit.type = "button";
  edit.dataset.testid = "department-materials";
  const key = `${dept.code}:materials`;
  const open = () => {
    takeEditorPlace(details, key);
    const editor = editorFrame(dept, "admin.materials_question");
    const label = document.createElement("label");
    const input = document.createElement("textarea");
    input.dataset.testid = "department-materials-input";
    input.rows = 5;
    input.maxLength = 6000;
    input.value = items.join("\n");
    label.append(textElement("span", "admin.materials_hint"), input);
    editor.append(label);
    const parse = () => [...new Set(input.value.split("\n").map((l) => l.trim()).filter(Boolean))].slice(0, 30);
    const { buttons, message } = editorButtons(() => patchDepartment(dept, { materials: parse() }, message), editor);
    editor.append(buttons);
    details.append(editor);
  };
  edit.addEventListener("click", open);
  line.append(edit);
  if (editing === key) queueMicrotask(open);
  return line;
}

async function patchDepartment(dept, body, message) {
  try {
    await api("PATCH", `/api/v1/departments/${dept.code}`, body);
    editing = null;
    await loadDepartments();
  } catch (err) {
    message.className = "error";
    setText(message, errorKey(err));
  }
}

function editorButtons(onSave, editor) {
  const buttons = document.createElement("p");
  const save = textElement("button", "admin.save", null, "small");
  save.type = "button";
  save.dataset.testid = "department-save";
  save.addEventListener("click", onSave);
  const cancel = textElement("button", "admin.cancel_edit", null, "secondary small");
  cancel.type = "button";
  cancel.addEventListener("click", () => {
    editing = null;
    editor.remove();
  });
  const message = document.createElement("span");
  message.setAttribute("role", "alert");
  buttons.append(save, cancel, message);
  return { buttons, message };
}

// Exactly the departments checked (none: no transfers from this department).
function transfersEditor(dept) {
  const editor = editorFrame(dept, "admin.transfers_question");
  const current = new Set(dept.transfers_to ?? []);
  const boxes = [];
  for (const other of departments.filter((d) => d.code !== dept.code && d.kind !== "interpreter")) {
    const label = document.createElement("label");
    label.className = "check";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = other.code;
    box.checked = current.has(other.code);
    box.dataset.testid = `transfer-target-${other.code}`;
    boxes.push(box);
    label.append(box, textElement("span", "admin.department_option", { name: { zh: other.name_zh, en: other.name_en } }));
    editor.append(label);
  }
  const { buttons, message } = editorButtons(
    () => patchDepartment(dept, { transfers_to: boxes.filter((b) => b.checked).map((b) => b.value) }, message),
    editor,
  );
  editor.append(buttons);
  return editor;
}

function languagesEditor(dept) {
  const editor = editorFrame(dept, "admin.languages_question");
  const label = document.createElement("label");
  const input = document.createElement("input");
  input.dataset.testid = "department-languages-input";
  input.maxLength = 600;
  input.value = (dept.languages ?? []).join("、");
  label.append(textElement("span", "admin.languages"), input);
  editor.append(label);
  const { buttons, message } = editorButtons(() => patchDepartment(dept, { languages: parseLanguages(input.value) }, message), editor);
  editor.append(buttons);
  return editor;
}

// An expert belongs to a service department, an interpreter to an interpreting pool.
function fillDepartmentSelect() {
  const select = byTestId("account-department");
  const chosen = select.value;
  const kind = byTestId("account-role").value === "interpreter" ? "interpreter" : "service";
  select.replaceChildren();
  // A supervisor may oversee every department (the empty scope).
  if (byTestId("account-role").value === "supervisor") select.append(Object.assign(textElement("option", "admin.scope_all"), { value: "" }));
  for (const dept of departments.filter((d) => !d.disabled && (d.kind ?? "service") === kind)) {
    const option = textElement("option", "admin.department_option", { name: { zh: dept.name_zh, en: dept.name_en } });
    option.value = dept.code;
    select.append(option);
  }
  if (chosen) select.value = chosen;
}

function errorKey(err) {
  if (err.code === "weak_password") return "admin.password_weak";
  if (err.status === 409) return "admin.exists";
  if (err.status === 400) return "admin.invalid";
  return "error.generic";
}

async function createDepartment(event) {
  event.preventDefault();
  const message = document.getElementById("department-message");
  message.textContent = "";
  try {
    const kind = byTestId("department-kind").value;
    const body = {
      code: byTestId("department-code").value.trim(),
      name_zh: byTestId("department-name-zh").value.trim(),
      name_en: byTestId("department-name-en").value.trim(),
      hours: byTestId("department-hours").value.trim(),
      kind,
    };
    if (kind === "interpreter") body.languages = parseLanguages(byTestId("department-languages").value);
    await api("POST", "/api/v1/departments", body);
    for (const id of ["department-code", "department-name-zh", "department-name-en", "department-languages"]) byTestId(id).value = "";
    setText(message, "admin.created");
    message.className = "ok";
  } catch (err) {
    message.className = "error";
    setText(message, errorKey(err));
  }
  await loadDepartments();
}

// ---- halls ----------------------------------------------------------------

function hallName(code) {
  const hall = halls.find((h) => h.code === code);
  return hall ? { zh: hall.name_zh, en: hall.name_en } : code;
}

// A control's accessible name, from a message (renamed on a language switch).
function labelled(element, key) {
  element.dataset.i18nLabel = key;
  element.setAttribute("aria-label", t(key));
  return element;
}

// A <select> of accounts by username (names as they are: not translated).
function accountChooser(key, testid, choices) {
  const select = labelled(document.createElement("select"), key);
  select.dataset.testid = testid;
  select.translate = false;
  for (const account of choices) {
    const item = document.createElement("option");
    item.value = account.username;
    item.textContent = account.username;
    item.translate = false;
    select.append(item);
  }
  return select;
}

function smallButton(key, testid) {
  const button = textElement("button", key, null, "secondary small");
  button.type = "button";
  button.dataset.testid = testid;
  return button;
}

async function changeAccount(username, body) {
  const message = document.getElementById("hall-message");
  message.textContent = "";
  await api("PATCH", `/api/v1/accounts/${username}`, body).catch((err) => {
    message.className = "error";
    setText(message, errorKey(err));
  });
  await loadHalls();
}

// Who is in a hall: its kiosks (moved here from another hall with the chooser) and
// its clerks (added or removed; a clerk may work at several halls).
function hallMembers(hall) {
  const box = document.createElement("div");
  box.className = "members";
  const kiosks = accounts.filter((a) => a.role === "kiosk" && a.hall === hall.code);
  const clerks = accounts.filter((a) => a.role === "clerk" && a.halls.includes(hall.code));
  const kioskLine = document.createElement("p");
  kioskLine.dataset.testid = "hall-kiosks";
  kioskLine.append(textElement("span", "admin.hall_kiosks", { n: kiosks.length }));
  for (const kiosk of kiosks) {
    const chip = document.createElement("span");
    chip.className = "tag";
    chip.dataset.testid = "hall-kiosk";
    chip.translate = false;
    chip.textContent = kiosk.username;
    kioskLine.append(" ", chip);
  }
  const moveKiosk = accountChooser(
    "admin.hall_move_kiosk",
    "hall-kiosk-select",
    accounts.filter((a) => a.role === "kiosk" && a.hall !== hall.code),
  );
  const move = smallButton("admin.hall_move_kiosk", "hall-kiosk-add");
  moveKiosk.hidden = move.hidden = moveKiosk.options.length === 0;
  move.addEventListener("click", () => changeAccount(moveKiosk.value, { hall: hall.code }));
  kioskLine.append(" ", moveKiosk, move);

  const clerkLine = document.createElement("p");
  clerkLine.dataset.testid = "hall-clerks";
  clerkLine.append(textElement("span", "admin.hall_clerks", { n: clerks.length }));
  for (const clerk of clerks) {
    const chip = document.createElement("span");
    chip.className = "tag";
    chip.dataset.testid = "hall-clerk";
    const name = document.createElement("span");
    name.translate = false;
    name.textContent = clerk.username;
    const remove = smallButton("admin.hall_remove_clerk", "hall-clerk-remove");
    remove.addEventListener("click", () => changeAccount(clerk.username, { halls: clerk.halls.filter((c) => c !== hall.code) }));
    chip.append(name, " ", remove);
    clerkLine.append(" ", chip);
  }
  const addClerk = accountChooser(
    "admin.hall_add_clerk",
    "hall-clerk-select",
    accounts.filter((a) => a.role === "clerk" && !a.halls.includes(hall.code)),
  );
  const add = smallButton("admin.hall_add_clerk", "hall-clerk-add");
  addClerk.hidden = add.hidden = addClerk.options.length === 0;
  add.addEventListener("click", () => {
    const clerk = accounts.find((a) => a.username === addClerk.value);
    if (clerk) changeAccount(clerk.username, { halls: [...clerk.halls, hall.code] });
  });
  clerkLine.append(" ", addClerk, add);
  box.append(kioskLine, clerkLine);
  return box;
}

async function loadHalls() {
  [halls, accounts] = await Promise.all([
    api("GET", "/api/v1/halls").then((r) => r.halls),
    api("GET", "/api/v1/accounts").then((r) => r.accounts),
  ]);
  const list = byTestId("hall-list");
  list.replaceChildren();
  for (const hall of halls) {
    const row = document.createElement("li");
    row.dataset.testid = `hall-row-${hall.code}`;
    const name = textElement("span", "admin.hall_line", {
      code: hall.code,
      name: { zh: hall.name_zh, en: hall.name_en },
      level: { key: `hall.level.${hall.level}` },
    });
    // The district as the admin wrote it (one language only).
    const district = document.createElement("span");
    district.className = "muted";
    district.translate = false;
    district.textContent = hall.district;
    const chooser = textElement(
      "span",
      hall.allow_file_chooser ? "admin.hall_chooser_on" : "admin.hall_chooser_off",
      null,
      hall.allow_file_chooser ? "tag on" : "tag off",
    );
    chooser.dataset.testid = "hall-file-chooser-state";
    const toggle = smallButton(hall.allow_file_chooser ? "admin.hall_chooser_forbid" : "admin.hall_chooser_allow", "hall-file-chooser-toggle");
    toggle.addEventListener("click", async () => {
      await api("PATCH", `/api/v1/halls/${hall.code}`, { allow_file_chooser: !hall.allow_file_chooser }).catch(() => {});
      await loadHalls();
    });
    const edit = smallButton("admin.hall_edit", "hall-edit");
    edit.addEventListener("click", () => editHall(hall));
    row.append(name, district, chooser, toggle, edit, hallMembers(hall));
    list.append(row);
  }
  fillHallSelect();
}

// The form creates a hall, or (after "edit" on a row) changes that one: its code stays.
function editHall(hall) {
  editingHall = hall;
  const form = document.getElementById("hall-form");
  byTestId("hall-code").value = hall?.code ?? "";
  byTestId("hall-code").disabled = hall !== null;
  byTestId("hall-name-zh").value = hall?.name_zh ?? "";
  byTestId("hall-name-en").value = hall?.name_en ?? "";
  byTestId("hall-level").value = hall?.level ?? "street";
  byTestId("hall-district").value = hall?.district ?? "";
  byTestId("hall-allow-file-chooser").checked = hall?.allow_file_chooser ?? false;
  setText(document.getElementById("hall-form-title"), hall ? "admin.edit_hall" : "admin.new_hall", hall ? { code: hall.code } : undefined);
  setText(byTestId("hall-save"), hall ? "admin.save" : "admin.create");
  byTestId("hall-cancel-edit").hidden = hall === null;
  if (hall) form.scrollIntoView({ block: "nearest" });
}

async function saveHall(event) {
  event.preventDefault();
  const message = document.getElementById("hall-message");
  message.textContent = "";
  const body = {
    name_zh: byTestId("hall-name-zh").value.trim(),
    name_en: byTestId("hall-name-en").value.trim(),
    level: byTestId("hall-level").value,
    district: byTestId("hall-district").value.trim(),
    allow_file_chooser: byTestId("hall-allow-file-chooser").checked,
  };
  try {
    if (editingHall) await api("PATCH", `/api/v1/halls/${editingHall.code}`, body);
    else await api("POST", "/api/v1/halls", { code: byTestId("hall-code").value.trim(), ...body });
    message.className = "ok";
    setText(message, editingHall ? "admin.saved" : "admin.created");
    editHall(null);
  } catch (err) {
    message.className = "error";
    setText(message, err.status === 409 ? "admin.hall_exists" : errorKey(err));
  }
  await loadHalls();
}

function fillHallSelect() {
  const select = byTestId("account-hall");
  const chosen = select.value;
  select.replaceChildren();
  if (byTestId("account-role").value === "supervisor") select.append(Object.assign(textElement("option", "admin.scope_all"), { value: "" }));
  for (const hall of halls) {
    const item = textElement("option", "admin.hall_option", { name: { zh: hall.name_zh, en: hall.name_en } });
    item.value = hall.code;
    select.append(item);
  }
  if (chosen) select.value = chosen;
}

// ---- accounts -------------------------------------------------------------

async function loadAccounts() {
  if (departments.length === 0) await loadDepartments();
  if (halls.length === 0) await loadHalls();
  accounts = (await api("GET", "/api/v1/accounts")).accounts;
  const list = byTestId("account-list");
  list.replaceChildren();
  for (const account of accounts) {
    const row = document.createElement("li");
    row.dataset.testid = `account-row-${account.username}`;
    const name = document.createElement("span");
    name.translate = false;
    name.textContent = account.display_name ? `${account.username} · ${account.display_name}` : account.username;
    const role = textElement("span", `role.${account.role}`, null, "tag");
    row.append(name, role);
    if (account.department) row.append(textElement("span", "admin.in_department", { code: account.department }, "muted"));
    for (const code of account.departments ?? []) row.append(textElement("span", "admin.in_department", { code }, "muted"));
    for (const code of account.hall ? [account.hall] : account.halls) {
      row.append(textElement("span", "admin.in_hall", { name: hallName(code) }, "muted"));
    }
    row.append(statusTag(account.disabled));
    const toggle = textElement("button", account.disabled ? "admin.enable" : "admin.disable", null, "secondary small");
    toggle.type = "button";
    toggle.dataset.testid = "account-toggle";
    toggle.addEventListener("click", async () => {
      const message = document.getElementById("account-message");
      message.textContent = "";
      await api("PATCH", `/api/v1/accounts/${account.username}`, { disabled: !account.disabled }).catch((err) => {
        message.className = "error";
        setText(message, err.status === 409 ? "admin.last_admin" : "error.generic");
      });
      loadAccounts();
    });
    const reset = textElement("button", "admin.reset_password", null, "secondary small");
    reset.type = "button";
    reset.dataset.testid = "account-reset";
    reset.addEventListener("click", async () => {
      const password = await confirmDialog("admin.reset_question", {
        vars: { name: account.username },
        field: { labelKey: "admin.new_password", type: "password" },
        validate: (value) => (value.length < 8 ? "admin.password_short" : null),
      });
      if (password === null) return;
      await api("PATCH", `/api/v1/accounts/${account.username}`, { password })
        .then(() => setText(document.getElementById("account-message"), "admin.password_reset_done"))
        .catch((err) => setText(document.getElementById("account-message"), errorKey(err)));
    });
    row.append(toggle, reset);
    list.append(row);
  }
}

function roleChanged() {
  const role = byTestId("account-role").value;
  const supervisor = role === "supervisor";
  document.getElementById("account-department-field").hidden = role !== "expert" && role !== "interpreter" && !supervisor;
  fillDepartmentSelect();
  fillHallSelect();
  // A kiosk stands in one hall; a clerk starts at one (more on the halls tab); a
  // supervisor oversees one department and/or hall, or all of them.
  document.getElementById("account-hall-field").hidden = role !== "kiosk" && role !== "clerk" && !supervisor;
}

async function createAccount(event) {
  event.preventDefault();
  const message = document.getElementById("account-message");
  message.textContent = "";
  const role = byTestId("account-role").value;
  const body = {
    username: byTestId("account-username").value.trim(),
    password: byTestId("account-password").value,
    role,
    display_name: byTestId("account-display-name").value.trim(),
  };
  if (role === "expert" || role === "interpreter") body.department = byTestId("account-department").value;
  const hall = byTestId("account-hall").value;
  if (role === "kiosk") body.hall = hall;
  if (role === "clerk" && hall) body.halls = [hall];
  if (role === "supervisor") {
    const department = byTestId("account-department").value;
    body.departments = department ? [department] : [];
    body.halls = hall ? [hall] : [];
  }
  try {
    await api("POST", "/api/v1/accounts", body);
    for (const id of ["account-username", "account-password", "account-display-name"]) byTestId(id).value = "";
    message.className = "ok";
    setText(message, "admin.created");
  } catch (err) {
    message.className = "error";
    setText(message, errorKey(err));
  }
  await loadAccounts();
}

// ---- audit ---------------------------------------------------------------

async function verifyAudit() {
  const status = byTestId("audit-status");
  status.dataset.state = "checking";
  setText(status, "audit.checking");
  try {
    const result = await api("GET", "/api/v1/audit/verify");
    status.dataset.state = result.intact ? "intact" : "broken";
    if (result.intact) setText(status, "audit.intact", { n: result.entries, time: { time: result.checked_at } });
    else setText(status, "audit.broken", { seq: result.broken_seq, reason: result.reason, time: { time: result.checked_at } });
  } catch {
    status.dataset.state = "unknown";
    setText(status, "error.generic");
  }
}

async function searchAudit(fresh) {
  const list = byTestId("audit-list");
  const message = document.getElementById("audit-message");
  message.textContent = "";
  if (fresh) {
    auditBefore = null;
    list.replaceChildren();
  }
  const params = new URLSearchParams();
  for (const name of ["actor", "action", "subject"]) {
    const value = byTestId(`audit-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  if (auditBefore) params.set("before", String(auditBefore));
  let entries = [];
  try {
    entries = (await api("GET", `/api/v1/audit?${params}`)).entries;
  } catch (err) {
    setText(message, err.status === 400 ? "audit.bad_filter" : "error.generic");
    return;
  }
  for (const entry of entries) {
    const row = document.createElement("tr");
    row.dataset.testid = "audit-row";
    const detail = td(Object.entries(entry.detail).map(([k, v]) => `${k}=${v}`).join(" "));
    detail.translate = false;
    const actor = td(entry.actor);
    actor.translate = false;
    const subject = td(entry.subject);
    subject.translate = false;
    const action = td(entry.action);
    action.translate = false;
    row.append(td(String(entry.seq)), td(textElement("span", "audit.at", { time: { time: entry.at } })), actor, action, subject, detail);
    list.append(row);
  }
  if (fresh && entries.length === 0) {
    const row = document.createElement("tr");
    const cell = textElement("td", "audit.none", null, "muted");
    cell.colSpan = 6;
    row.append(cell);
    list.append(row);
  }
  auditBefore = entries.length ? entries[entries.length - 1].seq : auditBefore;
  byTestId("audit-more").hidden = entries.length < 50;
}

startPage({
  roles: ["admin"],
  onLogin: async () => {
    for (const tab of document.querySelectorAll("[data-tab]")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
    document.getElementById("department-form").addEventListener("submit", createDepartment);
    document.getElementById("account-form").addEventListener("submit", createAccount);
    document.getElementById("hall-form").addEventListener("submit", saveHall);
    byTestId("hall-cancel-edit").addEventListener("click", () => editHall(null));
    byTestId("account-role").addEventListener("change", roleChanged);
    byTestId("department-kind").addEventListener("change", () => {
      document.getElementById("department-languages-field").hidden = byTestId("department-kind").value !== "interpreter";
    });
    document.getElementById("audit-form").addEventListener("submit", (event) => {
      event.preventDefault();
      searchAudit(true);
    });
    byTestId("audit-more").addEventListener("click", () => searchAudit(false));
    byTestId("audit-verify").addEventListener("click", verifyAudit);
    onLanguageChange(() => renderBoard());
    roleChanged();
    // The board first, before anything is loaded: a tab the admin picks while the
    // lists load is not taken away from them when the loading ends.
    showTab("board");
    await loadDepartments();
    await loadHalls();
    setInterval(() => {
      if (!document.getElementById("panel-board").hidden) loadBoard();
    }, BOARD_REFRESH_MS);
  },
});
