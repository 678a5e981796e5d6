"use strict";
// What every page's script shares: GET and POST to the platform's JSON, logged-out handling.
async function platformGet(path, params) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(`${path}?${query}`, { credentials: "same-origin" });
  const data = await response.json();
  if (data.status_code === 8) { window.location.href = "/login"; throw new Error("logged out"); }
  return data;
}
async function platformPost(path, body) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  return response.json();
}
function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;  // platform text is data, never markup
  if (className) node.className = className;
  return node;
}
// Calls `load` again whenever the bottom of the page comes into view (scrolled to, or
// still in view after a page came), until it says it is done.
function pageOnScroll(load) {
  let busy = false, more = true;
  const nearBottom = () => window.innerHeight + window.scrollY >= document.body.offsetHeight - 40;
  async function next() {
    if (busy || !more) return;
    busy = true;
    try { more = await load(); } finally { busy = false; }
    document.body.dataset.loaded = more ? "partial" : "all";
    if (more && nearBottom()) setTimeout(next, 0);
  }
  window.addEventListener("scroll", () => { if (nearBottom()) next(); });
  return next;
}
// Every page shows who is logged in, as the creator center's header does.
platformGet("/aweme/v1/creator/user/info/", {}).then((data) => {
  const nav = document.querySelector("nav");
  if (nav) nav.append(element("span", data.user.nickname, "me"));
}).catch(() => {});
