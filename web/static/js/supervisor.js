// The service centre's supervisor: the calls going on in its scope (to listen in
// or step in), the follow-ups of bad 好差评 grades to answer before their deadline,
// and the recordings to play back.
import { api } from "./api.js";
import { applyTranslations, setText, textElement } from "./i18n.js";
import { byTestId, startPage } from "./session.js";

const LIVE_REFRESH_MS = 10000;
const NOTE_KINDS = ["contact", "finding", "remedy", "note"];
let departments = new Map();

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

function say(key, vars) {
  setText(byTestId("supervisor-message"), key, vars);
}

// ---- calls going on -----------------------------------------------------------

// Listening in and stepping in arrive later: a route that is not there yet (404) or
// not implemented (501) is said politely, not shown as a failure.
async function supervise(call, action) {
  try {
    await api("POST", `/api/v1/supervision/${call.consultation_id}/${action}`);
    say(action === "listen" ? "supervisor.listening" : "supervisor.joined");
  } catch (err) {
    say(err.status === 404 || err.status === 501 ? "supervisor.not_available" : "error.generic");
  }
}

function actionButton(testid, key, onClick) {
  const button = textElement("button", key, null, "secondary small");
  button.type = "button";
  button.dataset.testid = testid;
  button.addEventListener("click", onClick);
  return button;
}

async function loadLiveCalls() {
  let calls = [];
  try {
    calls = (await api("GET", "/api/v1/live-calls")).calls;
  } catch {
    return; // the next refresh tries again; the banner shows a lost connection
  }
  const body = byTestId("live-calls");
  body.replaceChildren();
  for (const call of calls) {
    const row = document.createElement("tr");
    row.dataset.testid = "live-call";
    row.dataset.consultation = call.consultation_id;
    const hall = call.hall ? textElement("span", "board.hall_name", { name: { zh: call.hall_zh ?? call.hall, en: call.hall_en ?? call.hall } }) : textElement("span", "supervisor.no_hall");
    const actions = document.createElement("span");
    actions.className = "row-actions";
    actions.append(
      actionButton("listen-call", "supervisor.listen", () => supervise(call, "listen")),
      actionButton("join-call", "supervisor.join", () => supervise(call, "join")),
    );
    row.append(
      cell(textElement("span", "board.department_name", { name: { zh: call.department_zh, en: call.department_en } })),
      cell(hall),
      cell(textElement("span", "board.duration", { d: { duration: call.duration_s } })),
      cell(textElement("span", call.grade ? `grade.${call.grade}` : "supervisor.no_grade")),
      cell(actions),
    );
    body.append(row);
  }
  document.getElementById("live-empty").hidden = calls.length > 0;
}

// ---- follow-ups -----------------------------------------------------------------

// What people typed (the citizen's words, the notes) stays as written in either
// language: marked so, and appended after the translated label.
function typed(text, testid) {
  const span = document.createElement("span");
  span.translate = false;
  span.textContent = text;
  if (testid) span.dataset.testid = testid;
  return span;
}

function followUpRow(item) {
  const row = document.createElement("li");
  row.dataset.testid = "follow-up";
  row.dataset.consultation = item.consultation_id;
  row.dataset.state = item.state;
  row.className = item.overdue ? "follow-up overdue" : "follow-up";
  const head = document.createElement("p");
  head.append(
    textElement("strong", "supervisor.follow_up_title", {
      grade: { key: `grade.${item.grade}` },
      department: departmentName(item.department),
      hall: item.hall ? { zh: item.hall_zh ?? item.hall, en: item.hall_en ?? item.hall } : "—",
    }),
    " ",
    textElement("span", `supervisor.state.${item.state}`, null, "tag"),
  );
  if (item.overdue) {
    const overdue = textElement("span", "supervisor.overdue", null, "tag off");
    overdue.dataset.testid = "follow-up-overdue";
    head.append(" ", overdue);
  }
  row.append(head);
  const facts = document.createElement("p");
  facts.className = "muted";
  if (item.reference) facts.append(textElement("span", "supervisor.reference", { reference: item.reference }), " ");
  facts.append(textElement("span", "supervisor.opened", { time: { time: item.opened_at } }), " ", textElement("span", "supervisor.due", { time: { time: item.due_at } }));
  row.append(facts);
  if (item.reason) row.append(textElement("p", "supervisor.reason", { reason: { key: `grade_reason.${item.reason}` } }));
  if (item.comment) {
    const comment = document.createElement("p");
    comment.append(textElement("span", "supervisor.comment"), typed(item.comment, "follow-up-comment"));
    row.append(comment);
  }
  if (item.notes.length) {
    const notes = document.createElement("ol");
    notes.className = "follow-up-notes";
    for (const note of item.notes) {
      const line = document.createElement("li");
      line.append(
        textElement("span", "supervisor.note_line", {
          time: { time: note.at },
          author: note.author,
          kind: { key: `supervisor.note_kind.${note.kind}` },
        }),
        typed(note.text),
      );
      notes.append(line);
    }
    row.append(notes);
  }
  if (item.state !== "closed") row.append(noteControls(item));
  return row;
}

function noteControls(item) {
  const box = document.createElement("div");
  box.className = "toolbar";
  const kind = document.createElement("select");
  kind.dataset.testid = "follow-up-kind";
  kind.dataset.i18nLabel = "supervisor.note_label";
  for (const name of NOTE_KINDS) {
    const option = textElement("option", `supervisor.note_kind.${name}`);
    option.value = name;
    kind.append(option);
  }
  const input = document.createElement("input");
  input.dataset.testid = "follow-up-note";
  input.maxLength = 2000;
  input.autocomplete = "off";
  input.dataset.i18nPlaceholder = "supervisor.note_placeholder";
  input.dataset.i18nLabel = "supervisor.note_label";
  const add = actionButton("follow-up-add", "supervisor.add_note", async () => {
    if (!input.value.trim()) return say("supervisor.note_needed");
    await write(item, "notes", { kind: kind.value, text: input.value.trim() });
  });
  const close = actionButton("follow-up-close", "supervisor.close", async () => {
    if (!input.value.trim()) return say("supervisor.close_needs_note");
    if (await write(item, "close", { text: input.value.trim() })) say("supervisor.closed_done");
  });
  close.classList.remove("secondary");
  box.append(kind, input, add, close);
  return box;
}

async function write(item, action, body) {
  try {
    await api("POST", `/api/v1/follow-ups/${item.consultation_id}/${action}`, body);
    await loadFollowUps();
    return true;
  } catch (err) {
    // Closed by a colleague meanwhile, or out of scope now: show the list as it is.
    say(err.status === 404 || err.status === 409 ? "supervisor.gone" : "error.generic");
    await loadFollowUps();
    return false;
  }
}

async function loadFollowUps() {
  let items = [];
  try {
    items = (await api("GET", "/api/v1/follow-ups")).follow_ups;
  } catch {
    return;
  }
  const list = byTestId("follow-ups");
  list.replaceChildren(...items.map(followUpRow));
  document.getElementById("follow-ups-empty").hidden = items.length > 0;
  // Placeholders and labels of the rows just drawn, in the page's language.
  applyTranslations(list);
}

// ---- recordings -------------------------------------------------------------------

// GET /api/v1/recordings: {recordings: [{id, url, department, hall, created_at}]},
// those in the supervisor's scope; each played in the page (every play audited).
async function loadRecordings() {
  let recordings = [];
  try {
    recordings = (await api("GET", "/api/v1/recordings")).recordings ?? [];
  } catch {
    recordings = [];
  }
  const list = byTestId("recordings");
  list.replaceChildren();
  const player = byTestId("recording-player");
  for (const recording of recordings) {
    const row = document.createElement("li");
    row.dataset.testid = "recording";
    row.append(
      textElement("span", "supervisor.recording_line", {
        department: departmentName(recording.department),
        hall: recording.hall ?? "—",
        time: { time: recording.created_at ?? recording.started_at ?? 0 },
      }),
      " ",
      actionButton("play-recording", "supervisor.play", () => {
        player.hidden = false;
        player.src = recording.url ?? `/api/v1/recordings/${recording.id}`;
        player.play().catch(() => {});
      }),
    );
    list.append(row);
  }
  document.getElementById("recordings-empty").hidden = recordings.length > 0;
}

async function refresh() {
  await Promise.all([loadLiveCalls(), loadFollowUps(), loadRecordings()]);
}

async function onLogin() {
  try {
    const data = await api("GET", "/api/v1/departments");
    departments = new Map(data.departments.map((d) => [d.code, d]));
  } catch {
    departments = new Map();
  }
  byTestId("supervisor-refresh").addEventListener("click", refresh);
  await refresh();
  // Only the calls move by themselves; the follow-ups are drawn again after each
  // change or on refresh, so that a note being typed is never wiped.
  setInterval(loadLiveCalls, LIVE_REFRESH_MS);
}

startPage({ roles: ["supervisor", "admin"], onLogin });
