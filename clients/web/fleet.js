// The fleet (an API key with the admin scope): the accounts the masters assign to workers,
// added, paused, resumed and removed here; the workers with their load.

import { api } from "./api.js";
import { bound, h, panelHeader, replace } from "./dom.js";
import { t } from "./i18n.js";

const LOGINS = [
  ["LOGIN_METHOD_QR_CODE", "fleet.login_qr"],
  ["LOGIN_METHOD_PHONE_CODE", "fleet.login_phone"],
  ["LOGIN_METHOD_PASSWORD", "fleet.login_password"],
];

const COUNTED = new Intl.Collator("en", { numeric: true });

function labelsOf(text) {
  const labels = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [name, ...rest] = part.split("=");
    labels[name.trim()] = rest.join("=").trim();
  }
  return labels;
}

// What the form to add an account holds: kept across the panel's renders (an account moving
// redraws it, an error too), emptied once the account is added.
function emptyDraft() {
  return { id: "", adapter: "douyin", name: "", url: "", login: LOGINS[0][0], uid: "", password: "", labels: "" };
}

function shownLabels(labels) {
  return Object.entries(labels || {}).map(([name, value]) => `${name}=${value}`).join(", ");
}

export class FleetPanel {
  constructor(root, { onBack }) {
    Object.assign(this, { root, onBack });
    this.accounts = [];
    this.workers = [];
    this.problem = "";
    this.draft = emptyDraft();
    this.formProblem = "";
  }

  async open() {
    await this.reload();
  }

  // An account was given to a worker or taken from one (an event), or this panel changed one.
  async reload() {
    try {
      const [accounts, workers] = await Promise.all([api.fleetAccounts(), api.fleetWorkers()]);
      // shop-2 before shop-10: ids in the order a person counts them, not by character.
      this.accounts = (accounts.accounts || []).sort((a, b) => COUNTED.compare(a.account_id, b.account_id));
      this.workers = (workers.workers || []).sort((a, b) => COUNTED.compare(a.worker_id, b.worker_id));
    } catch (error) {
      this.problem = error.message || String(error);
    }
    if (this.root.isConnected) this.render();
  }

  async act(step) {
    try {
      await step();
      this.problem = "";
    } catch (error) {
      this.problem = error.message || String(error);
    }
    await this.reload();
  }

  async add(account) {
    try {
      await api.addFleetAccount(account);
      this.draft = emptyDraft();
      this.formProblem = "";
    } catch (error) {
      this.formProblem = error.message || String(error);
    }
    await this.reload();
  }

  form() {
    const field = (id, label, input, key) => [h("label", { for: id }, label), bound(input, this.draft, key)];
    // "\-": a pattern is read with the v flag, where a bare "-" at a class's end is an error
    // (and the browser then checks nothing).
    const id = h("input", { id: "fleet-id", required: true, maxlength: "128", pattern: "[A-Za-z0-9._\\-]+" });
    const adapter = h("select", { id: "fleet-adapter" }, h("option", { value: "douyin" }, "douyin"), h("option", { value: "sample" }, "sample"));
    const name = h("input", { id: "fleet-name", maxlength: "80" });
    const url = h("input", { id: "fleet-url", type: "url", placeholder: "https://creator.douyin.com" });
    const login = h("select", { id: "fleet-login" }, LOGINS.map(([value, text]) => h("option", { value }, t(text))));
    const uid = h("input", { id: "fleet-uid", maxlength: "256" });
    const password = h("input", { id: "fleet-password", type: "password", maxlength: "256", autocomplete: "new-password" });
    const labels = h("input", { id: "fleet-labels", placeholder: "region=sh" });
    return h(
      "form",
      {
        class: "fleet-form",
        onsubmit: (event) => {
          event.preventDefault();
          const account = {
            account_id: id.value.trim(),
            adapter: adapter.value,
            display_name: name.value.trim(),
            base_url: url.value.trim(),
            login_method: login.value,
            worker_labels: labelsOf(labels.value),
          };
          if (login.value === "LOGIN_METHOD_PASSWORD") Object.assign(account, { login_uid: uid.value, login_password: password.value });
          this.add(account);
        },
      },
      h("h3", {}, t("fleet.new")),
      ...field("fleet-id", t("fleet.account_id"), id, "id"),
      ...field("fleet-adapter", t("fleet.adapter"), adapter, "adapter"),
      ...field("fleet-name", t("fleet.display_name"), name, "name"),
      ...field("fleet-url", t("fleet.base_url"), url, "url"),
      ...field("fleet-login", t("fleet.login"), login, "login"),
      ...field("fleet-uid", t("fleet.login_uid"), uid, "uid"),
      ...field("fleet-password", t("fleet.login_password_field"), password, "password"),
      ...field("fleet-labels", t("fleet.labels"), labels, "labels"),
      // Said where the person is looking: beside what they just sent.
      this.formProblem ? h("p", { class: "error", role: "alert" }, this.formProblem) : null,
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, t("fleet.add"))),
    );
  }

  render() {
    const rows = this.accounts.map((account) =>
      h(
        "tr",
        { dataset: { accountId: account.account_id } },
        h("td", {}, h("strong", {}, account.account_id), account.display_name ? h("span", { class: "muted small" }, ` ${account.display_name}`) : null),
        h("td", {}, account.adapter),
        h("td", { class: "fleet-state" }, account.paused ? t("fleet.paused") : account.worker_id || t("fleet.waiting")),
        h("td", {}, account.has_session ? t("fleet.session_kept") : t("fleet.no_session")),
        h("td", {}, shownLabels(account.worker_labels)),
        h(
          "td",
          {},
          h(
            "div",
            { class: "row" },
            h(
              "button",
              { type: "button", class: "link", onclick: () => this.act(() => api.pauseFleetAccount(account.account_id, !account.paused)) },
              account.paused ? t("fleet.resume") : t("fleet.pause"),
            ),
            h(
              "button",
              {
                type: "button",
                class: "link danger",
                onclick: () => {
                  if (window.confirm(t("fleet.remove_confirm", { account: account.account_id }))) {
                    this.act(() => api.removeFleetAccount(account.account_id));
                  }
                },
              },
              t("fleet.remove"),
            ),
          ),
        ),
      ),
    );
    replace(
      this.root,
      panelHeader(t("fleet.title"), t("fleet.subtitle"), () => this.onBack()),
      h(
        "div",
        { class: "fleet-panel" },
        this.problem ? h("p", { class: "error", role: "alert" }, this.problem) : null,
        this.accounts.length
          ? h(
              "table",
              { class: "fleet-accounts" },
              h(
                "thead",
                {},
                h("tr", {}, [t("fleet.account"), t("fleet.adapter"), t("fleet.worker"), t("fleet.session"), t("fleet.labels"), ""].map((text) => h("th", {}, text))),
              ),
              h("tbody", {}, rows),
            )
          : h("p", { class: "muted" }, t("fleet.none")),
        h("h3", {}, t("fleet.workers")),
        this.workers.length
          ? h(
              "ul",
              { class: "fleet-workers" },
              this.workers.map((worker) =>
                h(
                  "li",
                  { dataset: { workerId: worker.worker_id } },
                  h("strong", {}, worker.worker_id),
                  worker.master_id ? h("span", { class: "muted small" }, ` · ${t("fleet.on_master", { master: worker.master_id })}`) : null,
                  ` ${(worker.account_ids || []).length}/${worker.capacity}`,
                  worker.max_concurrent_crawls
                    ? h("span", { class: "muted small" }, ` · ${t("fleet.crawls", { count: worker.max_concurrent_crawls })}`)
                    : null,
                  worker.labels && Object.keys(worker.labels).length ? h("span", { class: "muted small" }, ` · ${shownLabels(worker.labels)}`) : null,
                  h("p", { class: "muted small" }, (worker.account_ids || []).join(", ")),
                ),
              ),
            )
          : h("p", { class: "muted" }, t("fleet.no_workers")),
        this.form(),
      ),
    );
    this.root.setAttribute("aria-labelledby", "detail-title");
  }

  destroy() {}
}
