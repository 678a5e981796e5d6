// The console's languages: every word it shows comes from a message catalogue
// (locale-en.json, locale-zh-CN.json: the same keys, a test checks), and every time is
// written the locale's way. The language is the browser's unless the person chose one.

const KEY = "imsync.locale";
export const LOCALES = { en: "English", "zh-CN": "中文" };

let current = "en";
let messages = {};
let fallback = {};

export function preferredLocale() {
  const chosen = localStorage.getItem(KEY);
  if (chosen && chosen in LOCALES) return chosen;
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
  for (const tag of wanted) {
    if (tag.toLowerCase().startsWith("zh")) return "zh-CN";
    if (tag.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

async function catalogue(locale) {
  const response = await fetch(`/assets/locale-${locale}.json`);
  return response.ok ? response.json() : {};
}

// The language asked for last: a catalogue that arrives after a later choice's is dropped,
// so that choosing 中文 and then English at once ends in English whichever came first.
let asked = 0;

// Switches to `locale` once its catalogue is here; false when a later call superseded it
// (nothing changed then).
export async function useLocale(locale, { remember = false } = {}) {
  const wanted = locale in LOCALES ? locale : "en";
  const ask = ++asked;
  const [own, english] = await Promise.all([catalogue(wanted), wanted === "en" ? Promise.resolve(null) : catalogue("en")]);
  if (ask !== asked) return false;
  current = wanted;
  messages = own;
  fallback = english || own;
  if (remember) localStorage.setItem(KEY, current);
  document.documentElement.lang = current;
  translatePage(document);
  return true;
}

export function locale() {
  return current;
}

// The message `key` with {name} filled from `params`; with a `count`, the plural form the
// locale's rules pick ("key.one", "key.other").
export function t(key, params = {}) {
  let text;
  if (typeof params.count === "number") {
    const form = new Intl.PluralRules(current).select(params.count);
    text = messages[`${key}.${form}`] ?? messages[`${key}.other`] ?? fallback[`${key}.${form}`] ?? fallback[`${key}.other`];
  }
  text = text ?? messages[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

// The page's own words: data-i18n (text), data-i18n-label (aria-label), data-i18n-title,
// data-i18n-placeholder.
export function translatePage(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-label]")) node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  for (const node of root.querySelectorAll("[data-i18n-title]")) node.setAttribute("title", t(node.dataset.i18nTitle));
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
}

// ------------------------------------------------------------------- times

const DAY = 86_400_000;

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

// A time as the list and the thread show it, one form for all: "today 17:38",
// "yesterday 09:02", "Dec 3 00:17" (or "12月3日 00:17"), with the year when not this one.
export function when(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const clock = new Intl.DateTimeFormat(current, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(date);
  const days = Math.round((startOfDay(new Date()) - startOfDay(date)) / DAY);
  if (days === 0) return t("time.today", { time: clock });
  if (days === 1) return t("time.yesterday", { time: clock });
  const sameYear = date.getFullYear() === new Date().getFullYear();
  const day = new Intl.DateTimeFormat(current, { month: "short", day: "numeric", ...(sameYear ? {} : { year: "numeric" }) }).format(date);
  return t("time.day", { day, time: clock });
}

// The full date and time (a tooltip).
export function fullTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : new Intl.DateTimeFormat(current, { dateStyle: "full", timeStyle: "medium" }).format(date);
}

// How far off a time is: "in 3 hours", "5 minutes ago" (or "3小时后", "5分钟前").
export function relative(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  if (Number.isNaN(ms)) return "";
  const format = new Intl.RelativeTimeFormat(current, { numeric: "auto" });
  const abs = Math.abs(ms);
  if (abs < 60_000) return format.format(Math.round(ms / 1000), "second");
  if (abs < 3_600_000) return format.format(Math.round(ms / 60_000), "minute");
  if (abs < DAY) return format.format(Math.round(ms / 3_600_000), "hour");
  return format.format(Math.round(ms / DAY), "day");
}
