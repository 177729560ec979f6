// Documents of a call: choosing a file uploads it at once (resumable parts, each
// with its SHA-256), with a progress bar; the list shows both sides' files with
// download links and previews of images and PDFs.
import { api } from "./api.js";
import { t } from "./i18n.js";

const PART_SIZE = 1024 * 1024;

function base64(buffer) {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text);
}

async function sendPart(url, offset, blob) {
  const body = await blob.arrayBuffer();
  const digest = await crypto.subtle.digest("SHA-256", body);
  const response = await fetch(url, {
    method: "PATCH",
    headers: {
      "Upload-Offset": String(offset),
      "Upload-Checksum": `sha256 ${base64(digest)}`,
      "Content-Type": "application/offset+octet-stream",
    },
    body,
  });
  return response;
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export class FilePanel {
  constructor({ input, list, consultation }) {
    this.input = input;
    this.list = list;
    this.consultation = consultation; // () => current consultation id
    this.shown = new Set();
    input.addEventListener("change", () => {
      for (const file of input.files) this.upload(file);
      input.value = "";
    });
  }

  async upload(file) {
    const row = document.createElement("li");
    row.className = "uploading";
    const label = document.createElement("span");
    label.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = Math.max(1, file.size);
    bar.value = 0;
    const status = document.createElement("span");
    status.className = "muted";
    status.textContent = t("files.uploading");
    row.append(label, bar, status);
    this.list.append(row);
    try {
      const created = await api("POST", `/api/v1/consultations/${this.consultation()}/uploads`, {
        name: file.name,
        size: file.size,
      });
      let offset = 0;
      let attempts = 0;
      while (offset < file.size) {
        const response = await sendPart(created.url, offset, file.slice(offset, offset + PART_SIZE)).catch(
          () => null,
        );
        if (response && response.status === 204) {
          offset = Number(response.headers.get("Upload-Offset"));
          bar.value = offset;
          attempts = 0;
          continue;
        }
        // Resume from what the server has (a dropped connection or a bad part).
        attempts += 1;
        if (attempts > 5 || (response && response.status >= 400 && response.status !== 409 && response.status !== 400)) {
          throw new Error(response ? String(response.status) : "network");
        }
        const head = await fetch(created.url, { method: "HEAD" });
        offset = Number(head.headers.get("Upload-Offset") || offset);
      }
      const view = await api("POST", `${created.url}/finish`);
      row.remove();
      this.add(view);
    } catch (err) {
      row.className = "failed";
      status.dataset.i18n = err.code === "type_mismatch" || err.code === "unsupported_type" ? "files.wrong_type" : "files.failed";
      status.textContent = t(status.dataset.i18n);
      bar.remove();
    }
  }

  add(view) {
    if (this.shown.has(view.id)) return;
    this.shown.add(view.id);
    const row = document.createElement("li");
    row.dataset.fileId = view.id;
    const link = document.createElement("a");
    link.href = view.url;
    link.textContent = view.name;
    link.setAttribute("download", "");
    const size = document.createElement("span");
    size.className = "muted";
    size.textContent = ` ${formatSize(view.size)} `;
    row.append(link, size);
    const previewUrl = `${view.url}?inline=1`;
    if (view.media_type.startsWith("image/")) {
      const image = document.createElement("img");
      image.className = "preview";
      image.alt = view.name;
      image.src = previewUrl;
      row.append(image);
    } else if (view.media_type === "application/pdf") {
      const open = document.createElement("a");
      open.href = previewUrl;
      open.target = "_blank";
      open.rel = "noopener";
      open.dataset.i18n = "files.preview";
      open.textContent = t("files.preview");
      row.append(open);
    }
    this.list.append(row);
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
    this.list.replaceChildren();
  }
}
