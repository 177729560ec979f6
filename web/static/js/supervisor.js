// The service centre's supervisor: the calls going on in its scope (to listen in
// or step in), the follow-ups of bad 好差评 grades to answer before their deadline,
// and the recordings to play back.
import { api } from "./api.js";
import { applyTranslations, setText, textElement } from "./i18n.js";
import { ListenLink } from "./listen.js";
import { localMedia } from "./peer.js";
import { byTestId, startPage } from "./session.js";

const LIVE_REFRESH_MS = 10000;
const NOTE_KINDS = ["contact", "finding", "remedy", "note"];
let departments = new Map();
let supervises = false;

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

// ---- listening in, stepping in -------------------------------------------------

// One call at a time: listened to (receive only) or stepped into (camera and
// microphone sent, everyone in the call sees the supervisor).
const POLL_MS = 3000;
let session = null; // { id, mode: "listen" | "join", link, timer }

function tiles() {
  return [...document.querySelectorAll(".listen-tile")];
}

function showSlots(view) {
  for (const tile of tiles()) {
    if (tile.dataset.slot === "screen") continue;
    const slot = view.slots.find((s) => String(s.slot) === tile.dataset.slot);
    tile.hidden = !slot;
    const caption = tile.querySelector("figcaption");
    caption.textContent = slot ? slot.name : "";
    caption.setAttribute("translate", "no");
  }
}

function sessionStatus(key) {
  setText(byTestId("listen-status"), key);
}

function pathOf(current) {
  return `/api/v1/supervision/${current.id}/${current.mode}`;
}

// Ends this page's listening or part in a call: by the supervisor (told to the
// server), or because the server says it has ended (the call ended, was
// transferred, took a fourth person; the supervisor's media was lost).
async function endSession(key, tellServer) {
  const current = session;
  if (!current) return;
  session = null;
  clearInterval(current.timer);
  current.link.close();
  if (tellServer) await api("DELETE", pathOf(current)).catch(() => {});
  for (const tile of tiles()) tile.hidden = true;
  byTestId("listen-panel").hidden = key === null;
  byTestId("listen-stop").hidden = true;
  byTestId("step-out").hidden = true;
  if (key) sessionStatus(key);
}

async function poll() {
  const current = session;
  if (!current) return;
  try {
    const view = await api("GET", pathOf(current));
    if (session === current) showSlots(view);
  } catch (err) {
    if (err.status === 404 && session === current) {
      await endSession(current.mode === "listen" ? "listen.ended" : "step_in.ended", false);
    }
  }
}

const REFUSALS = {
  listened_already: "listen.taken",
  call_full: "listen.full",
  invalid_state: "listen.not_active",
};

async function begin(call, mode) {
  // Stepping into the call one listens to ends the listening (the server does).
  await endSession(null, !(mode === "join" && session?.id === call.consultation_id));
  let stream = null;
  if (mode === "join") {
    stream = await localMedia();
    if (!stream) {
      say("step_in.no_camera");
      return;
    }
  }
  let view;
  try {
    view = await api("POST", `/api/v1/supervision/${call.consultation_id}/${mode}`);
  } catch (err) {
    for (const track of stream?.getTracks() ?? []) track.stop();
    say(REFUSALS[err.code] ?? (err.status === 404 ? "listen.not_active" : "error.generic"));
    return;
  }
  byTestId("listen-panel").hidden = false;
  setText(document.getElementById("listen-title"), mode === "listen" ? "listen.title" : "step_in.title");
  byTestId("listen-stop").hidden = mode !== "listen";
  byTestId("step-out").hidden = mode !== "join";
  const videos = tiles()
    .filter((t) => t.dataset.slot !== "screen")
    .map((t) => t.querySelector("video"));
  const screenTile = tiles().find((t) => t.dataset.slot === "screen");
  const connected = mode === "listen" ? "listen.connected" : "step_in.connected";
  const link = new ListenLink({
    videos,
    screenVideo: screenTile.querySelector("video"),
    stream,
    onState: (state) => {
      if (state === "connected") sessionStatus(connected);
      else if (state === "failed") sessionStatus("listen.failed");
      else if (state === "connecting") sessionStatus("listen.connecting");
    },
  });
  const current = { id: call.consultation_id, mode, link, timer: null };
  session = current;
  showSlots(view);
  current.timer = setInterval(poll, POLL_MS);
  try {
    await link.connect(view);
  } catch {
    sessionStatus("listen.failed");
  }
  say(mode === "listen" ? "supervisor.listening" : "supervisor.joined");
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
    if (supervises) {
      actions.append(
        actionButton("listen-call", "supervisor.listen", () => begin(call, "listen")),
        actionButton("join-call", "supervisor.join", () => begin(call, "join")),
      );
    }
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

async function onLogin(me) {
  // The admin oversees everything here but supervises no call (docs/DECISIONS.md).
  supervises = me?.role === "supervisor";
  try {
    const data = await api("GET", "/api/v1/departments");
    departments = new Map(data.departments.map((d) => [d.code, d]));
  } catch {
    departments = new Map();
  }
  byTestId("supervisor-refresh").addEventListener("click", refresh);
  byTestId("listen-stop").addEventListener("click", () => endSession("listen.stopped", true));
  byTestId("step-out").addEventListener("click", () => endSession("step_in.left", true));
  // A page closed while listening or in a call ends that at once (the lost media
  // would too, later).
  window.addEventListener("pagehide", () => {
    if (session) fetch(pathOf(session), { method: "DELETE", keepalive: true, credentials: "same-origin" });
  });
  await refresh();
  // Only the calls move by themselves; the follow-ups are drawn again after each
  // change or on refresh, so that a note being typed is never wiped.
  setInterval(loadLiveCalls, LIVE_REFRESH_MS);
}

startPage({ roles: ["supervisor", "admin"], onLogin });
