// An incoming offer rings: a two-tone chime repeated (Web Audio, no sound file)
// and, when the tab is in the background, a system notification where allowed.
import { t } from "./i18n.js";

const RING_EVERY_MS = 2000;

export class Ringer {
  constructor() {
    this.context = null;
    this.timer = null;
    this.notification = null;
  }

  // Ask once, on a click (browsers only allow it from a user gesture).
  askPermission() {
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
    this.unlock();
  }

  // Audio may only start after a user gesture: create the context on one.
  unlock() {
    if (!this.context && window.AudioContext) this.context = new AudioContext();
    this.context?.resume().catch(() => {});
  }

  chime() {
    const ctx = this.context;
    if (!ctx || ctx.state !== "running") return;
    const now = ctx.currentTime;
    [880, 660].forEach((frequency, index) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, now + index * 0.35);
      gain.gain.exponentialRampToValueAtTime(0.3, now + index * 0.35 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + index * 0.35 + 0.3);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + index * 0.35);
      osc.stop(now + index * 0.35 + 0.32);
    });
  }

  start(bodyText) {
    this.stop();
    this.ringing = true;
    this.chime();
    this.timer = setInterval(() => this.chime(), RING_EVERY_MS);
    if (document.hidden && "Notification" in window && Notification.permission === "granted") {
      this.notification = new Notification(t("expert.offer"), { body: bodyText, tag: "windowlink-offer", requireInteraction: true });
      this.notification.onclick = () => window.focus();
    }
  }

  stop() {
    this.ringing = false;
    clearInterval(this.timer);
    this.timer = null;
    this.notification?.close();
    this.notification = null;
  }
}
