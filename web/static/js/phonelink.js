// "Send from phone" on the kiosk: a one-time link to a small page on the citizen's
// own phone, shown as a QR code drawn onto a canvas (web/phone_upload_api.py makes
// the link and its modules). The panel follows the link: waiting for the phone,
// the phone sending, done; an expired code is replaced while the panel is open.
import { api } from "./api.js";
import { setText } from "./i18n.js";

const POLL_MS = 2000;
const DONE_MS = 4000;
const QUIET = 4; // modules of white around the code, as the standard asks

export function drawQr(canvas, qr, maxPixels) {
  const modules = qr.size + 2 * QUIET;
  const scale = Math.max(2, Math.floor(maxPixels / modules));
  canvas.width = modules * scale;
  canvas.height = modules * scale;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#000";
  qr.rows.forEach((row, y) => {
    for (let x = 0; x < row.length; x += 1) {
      if (row[x] === "1") ctx.fillRect((x + QUIET) * scale, (y + QUIET) * scale, scale, scale);
    }
  });
}

export class PhoneLinkPanel {
  constructor({ panel, canvas, status, close, consultation, onOpen }) {
    this.panel = panel;
    this.canvas = canvas;
    this.status = status;
    this.consultation = consultation; // () => the open consultation's id
    this.onOpen = onOpen ?? (() => {});
    this.token = null;
    this.timer = null;
    this.generation = 0;
    close.addEventListener("click", () => this.close());
  }

  async open() {
    this.onOpen();
    this.panel.hidden = false;
    await this.newLink();
  }

  async newLink() {
    const generation = ++this.generation;
    clearTimeout(this.timer);
    this.token = null;
    setText(this.status, "kiosk.phone_waiting");
    try {
      const link = await api("POST", `/api/v1/consultations/${this.consultation()}/phone-link`);
      if (generation !== this.generation || this.panel.hidden) return;
      this.token = new URL(link.url).pathname.split("/").pop();
      this.canvas.dataset.url = link.url;
      // As large as the panel allows: a phone held at arm's length reads it.
      const room = Math.min(this.panel.clientWidth - 32, window.innerHeight * 0.4, 520);
      drawQr(this.canvas, link.qr, Math.max(200, room));
      this.canvas.hidden = false;
      this.poll(generation);
    } catch {
      if (generation !== this.generation) return;
      this.canvas.hidden = true;
      setText(this.status, "kiosk.phone_failed");
    }
  }

  poll(generation) {
    this.timer = setTimeout(async () => {
      if (generation !== this.generation || !this.token) return;
      const state = await api("GET", `/api/v1/phone-links/${this.token}`).catch(() => null);
      if (generation !== this.generation) return;
      if (state?.state === "expired") return this.newLink();
      if (state?.state === "claimed") {
        this.canvas.hidden = true;
        setText(this.status, "kiosk.phone_claimed");
      } else if (state?.state === "used") {
        this.canvas.hidden = true;
        setText(this.status, "kiosk.phone_received");
        this.timer = setTimeout(() => generation === this.generation && this.close(), DONE_MS);
        return undefined;
      }
      return this.poll(generation);
    }, POLL_MS);
  }

  // The code and what it said go with the panel (and with the privacy wipe).
  close() {
    this.generation += 1;
    clearTimeout(this.timer);
    this.token = null;
    this.canvas.width = 0;
    this.canvas.height = 0;
    delete this.canvas.dataset.url;
    this.status.textContent = "";
    delete this.status.dataset.i18n;
    this.panel.hidden = true;
  }
}
