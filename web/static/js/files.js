// Documents of a call: choosing a file uploads it at once (resumable parts, each
// with its SHA-256), with a progress bar; the list shows both sides' files with
// previews of images and PDFs (printable) and, where allowed, a download link.
import { api } from "./api.js";
import { setText, textElement } from "./i18n.js";
import { openPreview, thumbnail as previewThumbnail } from "./preview.js";

// Parts start at 1 MiB and grow (doubling, up to 8 MiB) while each takes under
// about two seconds: on a hall's LAN a 50 MiB scan is 9 parts instead of 50 (each
// part is a request, a commit and a stored segment), while on a slow or flaky
// uplink parts stay small and a lost one costs little to send again.
const PART_MIN = 1024 * 1024;
const PART_MAX = 8 * 1024 * 1024;
const PART_SECONDS = 2;
const MAX_ATTEMPTS = 5;

export function nextPartSize(current, sent, seconds) {
  const fits = (sent / Math.max(seconds, 0.001)) * PART_SECONDS;
  const size = Math.min(2 * current, PART_MAX, Math.floor(fits / PART_MIN) * PART_MIN);
  return Math.max(PART_MIN, size);
}

function base64(buffer) {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text);
}

async function sendPart(url, offset, blob, signal) {
  const body = await blob.arrayBuffer();
  const digest = await crypto.subtle.digest("SHA-256", body);
  return fetch(url, {
    method: "PATCH",
    headers: {
      "Upload-Offset": String(offset),
      "Upload-Checksum": `sha256 ${base64(digest)}`,
      "Content-Type": "application/offset+octet-stream",
    },
    body,
    signal,
  });
}

class Cancelled extends Error {}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

const BUSY = ["too_many_uploads", "account_upload_limit", "call_upload_limit", "uploads_busy"];

function failureKey(err) {
  if (err.code === "type_mismatch" || err.code === "unsupported_type") return "files.wrong_type";
  if (err.code === "too_large" || err.status === 413) return "files.too_large";
  if (err.code === "bad_name") return "files.bad_name";
  // Too much being sent at once (by this account, this call or everyone): wait for one.
  if (BUSY.includes(err.code) || err.status === 429) return "files.busy";
  return "files.failed";
}

// One row of a document: name (never interpreted), size, thumbnail, preview, download.
export function fileRow(view, { download = true, thumbnail = true } = {}) {
  const row = document.createElement("li");
  row.dataset.fileId = view.id;
  // Without a download link the name opens the preview (the kiosk: its contract).
  const name = document.createElement(download ? "a" : "button");
  name.className = "file-name";
  name.translate = false;
  name.textContent = view.name;
  const inline = `${view.url}?inline=1`;
  if (download) {
    name.href = view.url;
    name.setAttribute("download", "");
  } else {
    name.type = "button";
    name.addEventListener("click", () => openPreview(view, inline));
  }
  const size = document.createElement("span");
  size.className = "muted";
  // "2 KB", "1.5 MB": the same in both languages.
  size.translate = false;
  size.textContent = formatSize(view.size);
  row.append(name, size);
  if (thumbnail && view.media_type.startsWith("image/")) {
    row.append(previewThumbnail(view, inline, () => openPreview(view, inline)));
  }
  if (view.media_type.startsWith("image/") || view.media_type === "application/pdf") {
    const open = textElement("button", "files.preview", null, "secondary small");
    open.type = "button";
    open.dataset.testid = "file-preview";
    open.addEventListener("click", () => openPreview(view, inline));
    row.append(open);
  }
  return row;
}

export class FilePanel {
  // `latest` (optional): where the newest document from the other side (not
  // `mySide`) is shown large, an image or a PDF, as it arrives. `rowActions(view)`
  // (optional): more buttons for a document's row (an expert sharing it with the
  // call's interpreter), asked again by refreshActions().
  constructor({ input, list, consultation, download = true, latest = null, mySide = null, rowActions = null, myPosition = () => null }) {
    this.input = input;
    this.list = list;
    this.consultation = consultation; // () => current consultation id
    this.download = download;
    this.latest = latest;
    this.mySide = mySide;
    this.rowActions = rowActions;
    this.myPosition = myPosition; // this page's position in the call (null: a call of two)
    this.shown = new Set();
    this.rows = new Map(); // file id -> [view, row]
    input.addEventListener("change", () => {
      for (const file of input.files) this.upload(file);
      input.value = "";
    });
  }

  // A row while the file goes: its name, a bar with the share sent in words, and a
  // button that stops it (the server forgets what arrived).
  async upload(file) {
    const row = document.createElement("li");
    row.className = "uploading";
    row.dataset.testid = "upload-row";
    const label = document.createElement("span");
    label.className = "file-name";
    label.translate = false;
    label.textContent = file.name;
    const bar = document.createElement("progress");
    bar.dataset.testid = "upload-progress";
    bar.max = Math.max(1, file.size);
    bar.value = 0;
    const status = textElement("span", "files.progress", { percent: 0 }, "muted upload-percent");
    status.dataset.testid = "upload-percent";
    bar.setAttribute("aria-label", file.name);
    const cancel = textElement("button", "files.cancel", null, "secondary small");
    cancel.type = "button";
    cancel.dataset.testid = "upload-cancel";
    const progress = { aborter: new AbortController(), cancelled: false, url: null };
    const shown = (sent) => {
      bar.value = sent;
      setText(status, "files.progress", { percent: Math.floor((100 * sent) / Math.max(1, file.size)) });
    };
    cancel.addEventListener("click", () => {
      progress.cancelled = true;
      progress.aborter.abort();
      cancel.disabled = true;
    });
    row.append(label, bar, status, cancel);
    this.list.append(row);
    // An upload lives in the server process that began it: if that process is
    // gone (a restart, a lost node) the server no longer knows the upload (404)
    // and the file is sent again from its start, at most twice.
    for (let round = 0; ; round += 1) {
      try {
        shown(0);
        const view = await this.send(file, shown, progress);
        row.remove();
        this.add(view);
        return;
      } catch (err) {
        if (progress.cancelled || err instanceof Cancelled) {
          // What arrived is deleted; the row says so for a moment.
          if (progress.url) fetch(progress.url, { method: "DELETE" }).catch(() => {});
          row.className = "cancelled";
          setText(status, "files.cancelled");
          bar.remove();
          cancel.remove();
          setTimeout(() => row.remove(), 4000);
          return;
        }
        if (err.status === 404 && round < 2 && this.consultation()) continue;
        row.className = "failed";
        setText(status, failureKey(err));
        bar.remove();
        cancel.remove();
        return;
      }
    }
  }

  async send(file, shown, progress) {
    const created = await api("POST", `/api/v1/consultations/${this.consultation()}/uploads`, {
      name: file.name,
      size: file.size,
    });
    progress.url = created.url;
    let offset = 0;
    let attempts = 0;
    let partSize = PART_MIN;
    while (offset < file.size) {
      if (progress.cancelled) throw new Cancelled();
      const started = performance.now();
      const part = file.slice(offset, offset + partSize);
      const response = await sendPart(created.url, offset, part, progress.aborter.signal).catch(() => null);
      if (progress.cancelled) throw new Cancelled();
      if (response && response.status === 204) {
        const reached = Number(response.headers.get("Upload-Offset"));
        partSize = nextPartSize(partSize, reached - offset, (performance.now() - started) / 1000);
        offset = reached;
        shown(offset);
        attempts = 0;
        continue;
      }
      // Resume from what the server has (a dropped connection or a bad part),
      // in small parts again.
      partSize = PART_MIN;
      attempts += 1;
      const retryable = !response || [400, 409].includes(response.status) || response.status >= 500;
      if (attempts > MAX_ATTEMPTS || !retryable) {
        const code = response ? (await response.json().catch(() => null))?.error?.code : undefined;
        throw Object.assign(new Error("upload"), { status: response ? response.status : 0, code });
      }
      await new Promise((resolve) => setTimeout(resolve, 500 * attempts));
      const head = await fetch(created.url, { method: "HEAD" }).catch(() => null);
      if (head?.status === 404) throw Object.assign(new Error("upload"), { status: 404 });
      if (head?.ok) offset = Number(head.headers.get("Upload-Offset") || offset);
    }
    if (progress.cancelled) throw new Cancelled();
    return api("POST", `${created.url}/finish`);
  }

  add(view) {
    if (this.shown.has(view.id)) return;
    this.shown.add(view.id);
    const row = fileRow(view, { download: this.download });
    this.rows.set(view.id, [view, row]);
    this.decorate(view, row);
    this.list.append(row);
    // Where the list scrolls inside its box (a call's side panel), the newest is
    // shown, also once a thumbnail has loaded and made the list taller.
    const box = this.list.closest(".files") ?? this.list;
    const showNewest = () => (box.scrollTop = box.scrollHeight);
    showNewest();
    for (const image of this.list.querySelectorAll("img")) image.addEventListener("load", showNewest, { once: true });
    if (this.latest && this.fromOthers(view)) this.showLatest(view);
  }

  fromOthers(view) {
    const mine = this.myPosition();
    if (Number.isInteger(view.uploaded_by_position) && Number.isInteger(mine)) return view.uploaded_by_position !== mine;
    return view.uploaded_by !== this.mySide;
  }

  decorate(view, row) {
    row.querySelector(".row-actions")?.remove();
    const buttons = this.rowActions?.(view) ?? [];
    if (buttons.length === 0) return;
    const holder = document.createElement("span");
    holder.className = "row-actions";
    holder.append(...buttons);
    row.append(holder);
  }

  // The rows' extra buttons again (who is in the call changed).
  refreshActions() {
    for (const [view, row] of this.rows.values()) this.decorate(view, row);
  }

  showLatest(view) {
    const body = this.latest.querySelector(".latest-body");
    const inline = `${view.url}?inline=1`;
    let shown;
    if (view.media_type.startsWith("image/")) {
      shown = document.createElement("img");
      shown.src = inline;
      shown.alt = view.name;
    } else if (view.media_type === "application/pdf") {
      shown = document.createElement("iframe");
      shown.src = inline;
      shown.title = view.name;
    } else {
      shown = textElement("p", "files.no_preview", null, "muted");
    }
    const name = document.createElement("button");
    name.type = "button";
    name.className = "latest-name secondary small";
    name.translate = false;
    name.textContent = view.name;
    name.addEventListener("click", () => openPreview(view, inline));
    body.replaceChildren(name, shown);
    this.latest.hidden = false;
  }

  async load() {
    const id = this.consultation();
    if (!id) return;
    try {
      const data = await api("GET", `/api/v1/consultations/${id}/files`);
      for (const view of data.files) this.add(view);
    } catch {
      // Not readable (any more): nothing to show.
    }
  }

  clear() {
    this.shown.clear();
    this.rows.clear();
    for (const image of this.list.querySelectorAll("img")) image.removeAttribute("src");
    this.list.replaceChildren();
    if (this.latest) {
      this.latest.querySelector(".latest-body").replaceChildren();
      this.latest.hidden = true;
    }
  }
}
