// An account's health and its login: how its crawls go (per collection, when last read
// whole and what the last crawl missed), why it failed, and, while a login waits for an
// operator, the QR code to scan or the code the platform sent by SMS.

import { ApiError, api } from "./api.js";
import { bound, h, replace, time } from "./dom.js";
import { t } from "./i18n.js";

const COLLECTIONS = ["contents", "comments", "conversations", "messages", "notifications"];

// How an account is doing, in one word and one class: never "healthy" after a partial or
// failed crawl, nor while logged out or without its worker. A paused account runs nowhere
// by an operator's choice: said as such, not as an alarm (its last crawl's state is old).
export function health(account) {
  if (account.paused) return { label: t("health.paused"), tone: "muted", why: t("health.paused.why") };
  if (account.login_state === "logging_in") return { label: t("health.login_waiting"), tone: "warn", why: t("health.login_waiting.why") };
  if (account.login_state === "logged_out" || account.crawl_state === "needs_login")
    return { label: t("health.logged_out"), tone: "bad", why: account.last_error || t("health.logged_out.why") };
  if (!account.online) return { label: t("health.worker_offline"), tone: "bad", why: t("health.worker_offline.why") };
  if (account.crawl_state === "failing") return { label: t("health.failing"), tone: "bad", why: account.last_error };
  if (account.crawl_state === "partial") return { label: t("health.partial"), tone: "warn", why: account.last_error };
  if (account.crawl_state === "whole" && account.login_state === "logged_in") return { label: t("health.healthy"), tone: "ok", why: t("health.healthy.why") };
  return { label: t("health.crawling"), tone: "muted", why: t("health.crawling.why") };
}

// What the team calls the account (its fleet entry's display name), else the platform's
// name for it, else its id (an account not logged in yet has no platform name).
export function accountTitle(account) {
  return account.display_name || account.user_name || account.account_id;
}

export function healthBadge(account) {
  const { label, tone, why } = health(account);
  return h("span", { class: `health ${tone}`, title: why || label }, label);
}

function seconds(duration) {
  const value = Number.parseFloat(String(duration || "0").replace("s", ""));
  return Number.isFinite(value) ? t("unit.seconds", { value: value.toFixed(1) }) : "";
}

export class AccountPanel {
  constructor(root, { account }) {
    Object.assign(this, { root, account });
    this.login = null;
    this.loginError = "";
    this.ticker = 0;
    this.sending = false;
    this.codeMessage = "";
    // The code being typed: kept when the panel is drawn again (the account changed, a
    // code was refused), emptied once one is sent.
    this.code = "";
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
            ? t("login.no_scope")
            : t("login.unreadable", { error: error.message });
      }
    }
    this.render();
  }

  destroy() {
    clearInterval(this.ticker);
  }

  render() {
    clearInterval(this.ticker);
    const typing = document.activeElement && document.activeElement.name === "code" && this.root.contains(document.activeElement);
    this.draw();
    const input = typing && this.root.querySelector("input[name=code]");
    if (input) input.focus();
  }

  draw() {
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
          h("h2", {}, accountTitle(a)),
          h(
            "p",
            { class: "muted" },
            [
              a.platform !== "unspecified" ? a.platform : "",
              a.display_name && a.user_name ? a.user_name : "",
              a.account_id,
              t("account.worker", { worker: a.worker_id || t("account.no_worker") }),
            ]
              .filter(Boolean)
              .join(" · "),
          ),
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
          h(
            "caption",
            {},
            t("crawls.title"),
            a.last_crawl_at
              ? h("span", { class: "muted small" }, ` · ${t("crawls.last")} `, time(a.last_crawl_at), ` · ${seconds(a.last_crawl_duration)}`)
              : null,
          ),
          h(
            "thead",
            {},
            h("tr", {}, h("th", { scope: "col" }, t("crawls.collection")), h("th", { scope: "col" }, t("crawls.last_whole")), h("th", { scope: "col" }, t("crawls.last_crawl"))),
          ),
          h(
            "tbody",
            {},
            (a.collections || []).map((c) =>
              h(
                "tr",
                { class: c.missed ? "missed" : "" },
                h("th", { scope: "row" }, COLLECTIONS.includes(c.collection) ? t(`collection.${c.collection}`) : c.collection),
                h("td", {}, c.last_whole_time ? time(c.last_whole_time) : t("crawls.never")),
                h(
                  "td",
                  {},
                  c.missed ? h("span", { class: "missed-text" }, t("crawls.missed", { why: c.missed })) : c.last_whole_time ? t("crawls.whole") : t("crawls.not_yet"),
                ),
              ),
            ),
          ),
        ),
        a.last_error
          ? h("p", { class: "last-error" }, h("strong", {}, t("crawls.last_error", { reason: a.last_error_reason ? ` (${a.last_error_reason})` : "" })), " ", a.last_error)
          : null,
      ),
    );
  }

  loginSection() {
    if (this.loginError) return h("section", { class: "login-panel" }, h("p", { class: "login-error" }, this.loginError));
    const login = this.login;
    if (!login) return null;
    const challenge = login.challenge;
    const restart = h("button", { type: "button", class: "link", onclick: () => this.restart() }, t("login.restart"));
    if (!challenge || !challenge.kind || challenge.kind === "unspecified") {
      return h(
        "section",
        { class: "login-panel" },
        h("h3", {}, t("login.not_logged_in")),
        h("p", {}, login.last_error || t("login.will_start")),
        login.online ? restart : h("p", { class: "muted" }, t("login.worker_offline")),
      );
    }
    if (challenge.kind === "qr_code") {
      const expiry = h("span", { class: "expiry" });
      const tick = () => {
        const left = Math.round((new Date(challenge.expire_time).getTime() - Date.now()) / 1000);
        expiry.textContent = left > 0 ? t("login.expires_in", { left: `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` }) : t("login.expired");
      };
      tick();
      this.ticker = setInterval(tick, 1000);
      return h(
        "section",
        { class: "login-panel" },
        h("h3", {}, t("login.scan")),
        h("p", {}, t("login.scan_how")),
        h("img", { class: "qr-code", src: `data:image/png;base64,${challenge.qr_png}`, alt: t("login.qr_alt"), width: 200, height: 200 }),
        h(
          "p",
          { class: "muted" },
          expiry,
          ` · ${t("login.refreshes_left", { count: Number(challenge.refreshes_left || 0) })}`,
          challenge.scanned ? h("strong", { class: "scanned" }, ` · ${t("login.scanned")}`) : null,
        ),
        restart,
      );
    }
    const input = bound(
      h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, maxlength: 16, "aria-label": t("login.code") }),
      this,
      "code",
    );
    return h(
      "section",
      { class: "login-panel" },
      h("h3", {}, t("login.sms")),
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
        h("button", { type: "submit", class: "primary", disabled: this.sending }, t("login.send_code")),
      ),
      h("p", { class: "muted" }, t("login.tries_left", { count: Number(challenge.tries_left || 0) }), this.codeMessage ? ` · ${this.codeMessage}` : ""),
      restart,
    );
  }

  async sendCode(code) {
    this.sending = true;
    this.codeMessage = t("login.code_sent");
    this.render();
    try {
      await api.submitLoginCode(this.account.account_id, code);
      this.code = "";
    } catch (error) {
      this.codeMessage = t("login.code_not_sent", { error: error.message });
    }
    this.sending = false;
    this.render();
  }

  async restart() {
    try {
      await api.restartLogin(this.account.account_id);
      this.codeMessage = "";
      replace(this.root, h("p", { class: "loading" }, t("login.asking")));
    } catch (error) {
      this.loginError = t("login.ask_failed", { error: error.message });
      this.render();
    }
  }
}
