// An account's health and its login: how its crawls go (per collection, when last read
// whole and what the last crawl missed), why it failed, and, while a login waits for an
// operator, the QR code to scan or the code the platform sent by SMS.

import { ApiError, api } from "./api.js";
import { h, replace, time } from "./dom.js";

const COLLECTIONS = {
  contents: "Works",
  comments: "Comments",
  conversations: "Conversations",
  messages: "Messages",
  notifications: "Notifications",
};

// How an account is doing, in one word and one class: never "healthy" after a partial or
// failed crawl, nor while logged out or without its worker.
export function health(account) {
  if (account.login_state === "logging_in") return { label: "Log in waiting", tone: "warn", why: "A login waits for an operator" };
  if (account.login_state === "logged_out" || account.crawl_state === "needs_login")
    return { label: "Logged out", tone: "bad", why: account.last_error || "The platform session is logged out" };
  if (!account.online) return { label: "Worker offline", tone: "bad", why: "No worker holds this account now" };
  if (account.crawl_state === "failing") return { label: "Crawls failing", tone: "bad", why: account.last_error };
  if (account.crawl_state === "partial") return { label: "Partial crawl", tone: "warn", why: account.last_error };
  if (account.crawl_state === "whole" && account.login_state === "logged_in") return { label: "Healthy", tone: "ok", why: "The last crawl read everything" };
  return { label: "Crawling…", tone: "muted", why: "No crawl has finished since the worker started or the account logged in" };
}

export function healthBadge(account) {
  const { label, tone, why } = health(account);
  return h("span", { class: `health ${tone}`, title: why || label }, label);
}

function seconds(duration) {
  const value = Number.parseFloat(String(duration || "0").replace("s", ""));
  return Number.isFinite(value) ? `${value.toFixed(1)} s` : "";
}

export class AccountPanel {
  constructor(root, { account }) {
    Object.assign(this, { root, account });
    this.login = null;
    this.loginError = "";
    this.ticker = 0;
    this.sending = false;
    this.codeMessage = "";
  }

  async open() {
    await this.refresh();
  }

  // The account changed (an event): shown again, with its login fetched anew.
  async update(account) {
    this.account = account;
    this.codeMessage = "";
    await this.refresh();
  }

  async refresh() {
    const state = this.account.login_state;
    this.login = null;
    this.loginError = "";
    if (state === "logging_in" || state === "logged_out") {
      try {
        this.login = (await api.login(this.account.account_id)).login;
      } catch (error) {
        this.loginError =
          error instanceof ApiError && error.status === 403
            ? "This API key may not see logins: ask for one with the login scope."
            : `The login could not be read: ${error.message}`;
      }
    }
    this.render();
  }

  destroy() {
    clearInterval(this.ticker);
  }

  render() {
    clearInterval(this.ticker);
    const a = this.account;
    const { label, tone, why } = health(a);
    replace(
      this.root,
      h(
        "header",
        { class: "detail-header" },
        h(
          "div",
          {},
          h("h2", {}, a.user_name || a.account_id),
          h("p", { class: "muted" }, [a.platform !== "unspecified" ? a.platform : "", a.account_id, `worker ${a.worker_id || "none"}`].filter(Boolean).join(" · ")),
        ),
      ),
      h(
        "div",
        { class: "account-panel" },
        h("p", { class: `health-line ${tone}` }, h("strong", {}, label), why ? ` — ${why}` : ""),
        this.loginSection(),
        h(
          "table",
          { class: "collections" },
          h("caption", {}, "Crawls", a.last_crawl_at ? h("span", { class: "muted small" }, " · last ", time(a.last_crawl_at), ` in ${seconds(a.last_crawl_duration)}`) : null),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Collection"), h("th", { scope: "col" }, "Last read whole"), h("th", { scope: "col" }, "Last crawl"))),
          h(
            "tbody",
            {},
            (a.collections || []).map((c) =>
              h(
                "tr",
                { class: c.missed ? "missed" : "" },
                h("th", { scope: "row" }, COLLECTIONS[c.collection] || c.collection),
                h("td", {}, c.last_whole_time ? time(c.last_whole_time) : "never"),
                h("td", {}, c.missed ? h("span", { class: "missed-text" }, `missed: ${c.missed}`) : c.last_whole_time ? "whole" : "not read yet"),
              ),
            ),
          ),
        ),
        a.last_error ? h("p", { class: "last-error" }, h("strong", {}, `Last error${a.last_error_reason ? ` (${a.last_error_reason})` : ""}: `), a.last_error) : null,
      ),
    );
  }

  loginSection() {
    if (this.loginError) return h("section", { class: "login-panel" }, h("p", { class: "login-error" }, this.loginError));
    const login = this.login;
    if (!login) return null;
    const challenge = login.challenge;
    const restart = h("button", { type: "button", class: "link", onclick: () => this.restart() }, "Ask for a new QR code");
    if (!challenge || !challenge.kind || challenge.kind === "unspecified") {
      return h(
        "section",
        { class: "login-panel" },
        h("h3", {}, "Not logged in"),
        h("p", {}, login.last_error || "The worker will start a login."),
        login.online ? restart : h("p", { class: "muted" }, "The account's worker is offline."),
      );
    }
    if (challenge.kind === "qr_code") {
      const expiry = h("span", { class: "expiry" });
      const tick = () => {
        const left = Math.round((new Date(challenge.expire_time).getTime() - Date.now()) / 1000);
        expiry.textContent = left > 0 ? `expires in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` : "expired: a new code is coming";
      };
      tick();
      this.ticker = setInterval(tick, 1000);
      return h(
        "section",
        { class: "login-panel" },
        h("h3", {}, "Scan to log in"),
        h("p", {}, "Open the platform's app on the account's phone and scan this code."),
        h("img", { class: "qr-code", src: `data:image/png;base64,${challenge.qr_png}`, alt: "QR code to log the account in", width: 200, height: 200 }),
        h(
          "p",
          { class: "muted" },
          expiry,
          ` · ${challenge.refreshes_left} new code${challenge.refreshes_left === 1 ? "" : "s"} after this one`,
          challenge.scanned ? h("strong", { class: "scanned" }, " · Scanned: confirm on the phone") : null,
        ),
        restart,
      );
    }
    const input = h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, maxlength: 16, "aria-label": "Code" });
    return h(
      "section",
      { class: "login-panel" },
      h("h3", {}, "Type the code sent by SMS"),
      h("p", {}, challenge.prompt),
      challenge.error ? h("p", { class: "login-error", role: "alert" }, challenge.error) : null,
      h(
        "form",
        {
          class: "code-form",
          onsubmit: async (event) => {
            event.preventDefault();
            await this.sendCode(input.value.trim());
          },
        },
        input,
        h("button", { type: "submit", class: "primary", disabled: this.sending }, "Send the code"),
      ),
      h("p", { class: "muted" }, `${challenge.tries_left} tr${challenge.tries_left === 1 ? "y" : "ies"} left`, this.codeMessage ? ` · ${this.codeMessage}` : ""),
      restart,
    );
  }

  async sendCode(code) {
    this.sending = true;
    this.codeMessage = "Sent to the worker…";
    this.render();
    try {
      await api.submitLoginCode(this.account.account_id, code);
    } catch (error) {
      this.codeMessage = `Not sent: ${error.message}`;
    }
    this.sending = false;
    this.render();
  }

  async restart() {
    try {
      await api.restartLogin(this.account.account_id);
      this.codeMessage = "";
      replace(this.root, h("p", { class: "loading" }, "Asking the worker for a new login…"));
    } catch (error) {
      this.loginError = `Could not ask for a new login: ${error.message}`;
      this.render();
    }
  }
}
