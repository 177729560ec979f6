// The board's chart in plain SVG: hourly consultations as bars, median wait as
// a line on its own scale, day boundaries marked. No library needed for this.
import { t } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 960;
const HEIGHT = 260;
const PAD = { left: 44, right: 52, top: 16, bottom: 36 };

function node(name, attrs, text) {
  const el = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

export function hourlyChart(buckets, lang) {
  const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "chart-svg" });
  svg.append(node("title", {}, t("board.chart_title")));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  // At least 2, so that the middle gridline is a whole number of consultations.
  const maxCount = niceMax(Math.max(2, ...buckets.map((b) => b.consultations)));
  const waits = buckets.map((b) => b.median_wait_s).filter((w) => w !== null);
  const maxWait = niceMax(Math.max(0, ...waits) / 60);
  const step = plotW / Math.max(1, buckets.length);
  const y = (fraction) => PAD.top + plotH * (1 - fraction);
  // Axes and gridlines.
  for (const fraction of [0, 0.5, 1]) {
    svg.append(node("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(fraction), y2: y(fraction), class: "grid" }));
    svg.append(node("text", { x: PAD.left - 6, y: y(fraction) + 4, class: "axis count", "text-anchor": "end" }, String(Math.round(maxCount * fraction))));
    svg.append(node("text", { x: WIDTH - PAD.right + 6, y: y(fraction) + 4, class: "axis wait" }, `${+(maxWait * fraction).toFixed(1)}`));
  }
  svg.append(node("text", { x: PAD.left, y: HEIGHT - 4, class: "legend count" }, t("board.legend_count")));
  svg.append(node("text", { x: WIDTH - PAD.right, y: HEIGHT - 4, class: "legend wait", "text-anchor": "end" }, t("board.legend_wait")));
  const points = [];
  buckets.forEach((bucket, index) => {
    const x = PAD.left + index * step;
    const date = new Date(bucket.start * 1000);
    if (date.getHours() === 0 || index === 0) {
      svg.append(node("line", { x1: x, x2: x, y1: PAD.top, y2: PAD.top + plotH, class: "day" }));
      const label = date.toLocaleDateString(lang, { month: "numeric", day: "numeric" });
      svg.append(node("text", { x: x + 2, y: PAD.top + plotH + 14, class: "axis" }, label));
    }
    if (bucket.consultations > 0) {
      const h = (plotH * bucket.consultations) / maxCount;
      const bar = node("rect", { x: x + 0.5, y: PAD.top + plotH - h, width: Math.max(1, step - 1), height: h, class: "bar" });
      bar.append(node("title", {}, t("board.bar_title", { time: { time: bucket.start }, n: bucket.consultations })));
      svg.append(bar);
    }
    if (bucket.median_wait_s !== null) points.push(`${x + step / 2},${y(bucket.median_wait_s / 60 / maxWait)}`);
  });
  if (points.length) svg.append(node("polyline", { points: points.join(" "), class: "wait-line" }));
  return svg;
}
