import { fullTime, t, when } from "./i18n.js";

// Building the page without ever parsing text as markup: every string from the API
// (written by strangers on the platform) goes in as a text node or an attribute value.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

// The header of a side panel (templates, the fleet): back, its title and what it holds.
export function panelHeader(title, subtitle, onBack) {
  return h(
    "header",
    { class: "detail-header" },
    h("button", { type: "button", class: "back", onclick: onBack }, t("back")),
    h("div", { class: "grow" }, h("h2", { id: "detail-title" }, title), h("p", { class: "muted" }, subtitle)),
  );
}

// Times come as RFC 3339 instants; they are shown in the viewer's own time zone, the
// viewer's language's way (i18n.js).
export function time(iso) {
  if (!iso) return "";
  const label = when(iso);
  if (!label) return "";
  return h("time", { datetime: iso, title: fullTime(iso) }, label);
}

// An input showing draft[key] and keeping what is typed there: a form drawn again (an
// event, a refusal, a change of language) still holds what the person typed.
export function bound(input, draft, key) {
  input.value = draft[key];
  input.addEventListener("input", () => {
    draft[key] = input.value;
  });
  return input;
}

// Items of a thread in the order they happened: by instant, not by the text of their times
// (a note's "…:20.7436Z" is after a message's "…:20Z"); equal instants keep their order.
export function byInstant(items) {
  return items.map((item) => ({ ...item, ms: Date.parse(item.at) || 0 })).sort((a, b) => a.ms - b.ms);
}

// Where a list merged from several accounts' pages is cut, so that it never shows an item
// above one not loaded yet: at the newest of the oldest times reached by the accounts that
// have more pages (`cursors`: {hasMore, oldest}). An account with more pages that has shown
// nothing yet (its pages so far came back empty: the server looks at a bounded number of
// items a page and a filter passed none) may still have anything, so everything waits for
// it. "" when nothing is held back; times compare as RFC 3339 text, as the API writes them.
export function horizon(cursors) {
  let at = "";
  for (const c of cursors) {
    if (!c.hasMore) continue;
    if (!c.oldest) return "\uffff";
    if (c.oldest > at) at = c.oldest;
  }
  return at;
}

// Avatars are drawn from initials: a platform avatar URL would be a request to another host.
export function avatar(name, size = "") {
  const text = (name || "?").trim();
  const initial = Array.from(text)[0] || "?";
  let hash = 0;
  for (const char of text) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return h("span", { class: `avatar ${size}`, "aria-hidden": "true", dataset: { hue: String(hash % 8) } }, initial.toUpperCase());
}

// `label`: what the count is, said in full to a screen reader ("3 unread").
export function badge(count, label) {
  if (!count) return null;
  return h("span", { class: "badge", "aria-label": label }, count > 99 ? "99+" : String(count));
}

export function requestId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}
