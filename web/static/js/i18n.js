// One message table per language; zh-CN first. Every visible string comes from here.
// Elements carry their key (data-i18n) and arguments (data-i18n-vars), so that a
// language switch re-renders every string on the page, dynamic ones included.
import { MESSAGES } from "./messages.js";

const LANG_KEY = "wl_lang";
let current = "zh-CN";
const listeners = new Set();

export function language() {
  return current;
}

// "1-5 09:00-17:00" (ISO weekdays, time span) in the reader's language.
function formatHours(hours) {
  const match = /^([1-7])-([1-7]) (\d\d:\d\d)-(\d\d:\d\d)$/.exec(hours ?? "");
  if (!match) return "";
  const from = t(`weekday_short.${match[1]}`);
  const days = match[1] === match[2] ? from : t("hours.days", { from, to: t(`weekday_short.${match[2]}`) });
  return t("hours.line", { days, start: match[3], end: match[4] });
}

export function formatDuration(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const minutes = Math.floor(total / 60);
  const rest = total % 60;
  if (minutes === 0) return t("time.seconds", { s: rest });
  if (minutes < 60) return t("time.minutes_seconds", { m: minutes, s: rest });
  return t("time.hours_minutes", { h: Math.floor(minutes / 60), m: minutes % 60 });
}

export function formatTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString(current, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
}

// A variable is plain text, or chosen by language: {zh, en} (names in both
// languages), {key, vars} (a message), {time} (a date), {duration} (seconds),
// {hours} (usual hours).
function resolve(value) {
  if (value === null || typeof value !== "object") return String(value ?? "");
  if ("key" in value) return t(value.key, value.vars ?? {});
  if ("time" in value) return formatTime(value.time);
  if ("duration" in value) return formatDuration(value.duration);
  if ("hours" in value) return formatHours(value.hours);
  return current === "en" ? value.en : value.zh;
}

export function t(key, vars = {}) {
  const table = MESSAGES[current];
  const text = table[key] ?? MESSAGES["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => resolve(vars[name]));
}

// Set an element's text from a message, remembering key and arguments for a switch.
export function setText(el, key, vars) {
  el.dataset.i18n = key;
  if (vars) el.dataset.i18nVars = JSON.stringify(vars);
  else delete el.dataset.i18nVars;
  el.textContent = t(key, vars ?? {});
  return el;
}

// A new element whose text is a message.
export function textElement(tag, key, vars, className) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  return setText(el, key, vars);
}

export function applyTranslations(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) {
    const vars = el.dataset.i18nVars ? JSON.parse(el.dataset.i18nVars) : {};
    el.textContent = t(el.dataset.i18n, vars);
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) {
    el.setAttribute("title", t(el.dataset.i18nTitle));
  }
}

export function setLanguage(lang, { remember = true } = {}) {
  current = MESSAGES[lang] ? lang : "zh-CN";
  if (remember) {
    try {
      localStorage.setItem(LANG_KEY, current);
    } catch {
      // Storage may be unavailable (private mode); the choice then lasts for this page.
    }
  }
  applyTranslations();
  for (const listener of listeners) listener(current);
}

export function onLanguageChange(listener) {
  listeners.add(listener);
}

export function initLanguage(toggle) {
  let saved = null;
  try {
    saved = localStorage.getItem(LANG_KEY);
  } catch {
    saved = null;
  }
  setLanguage(saved || "zh-CN", { remember: false });
  toggle?.addEventListener("click", () => setLanguage(current === "zh-CN" ? "en" : "zh-CN"));
}
