// The connection-quality indicator: getStats figures in, a level and a message a
// citizen understands out. Thresholds follow common guidance for interactive
// video (ITU-T G.114 one-way delay; loss above a few percent is visible).
import { setText } from "./i18n.js";

export function classify(figures) {
  if (figures.connection && figures.connection !== "connected") {
    return figures.connection === "new" || figures.connection === "connecting"
      ? { level: "unknown", key: "quality.connecting" }
      : { level: "poor", key: "quality.reconnecting" };
  }
  if (figures.stalled) return { level: "poor", key: "quality.stalled" };
  const loss = figures.loss ?? 0;
  const rtt = figures.rtt ?? 0;
  const fps = figures.fps;
  if (loss > 0.08 || rtt > 0.6 || (fps !== null && fps < 8)) return { level: "poor", key: "quality.poor" };
  if (loss > 0.02 || rtt > 0.3 || (fps !== null && fps < 15)) return { level: "fair", key: "quality.fair" };
  if (figures.loss === null) return { level: "unknown", key: "quality.unknown" };
  return { level: "good", key: "quality.good" };
}

export class QualityIndicator {
  constructor(element) {
    this.element = element;
    this.text = element.querySelector(".quality-text");
  }

  update(figures) {
    const { level, key } = classify(figures);
    this.element.dataset.level = level;
    this.element.dataset.loss = figures.loss === null ? "" : figures.loss.toFixed(3);
    this.element.dataset.rtt = figures.rtt === null ? "" : String(figures.rtt);
    this.element.dataset.fps = figures.fps === null ? "" : String(figures.fps);
    if (this.text.dataset.i18n !== key) setText(this.text, key);
  }

  reset() {
    this.element.dataset.level = "unknown";
    setText(this.text, "quality.unknown");
  }
}
