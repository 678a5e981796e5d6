// The team's quick replies: listed, added, changed and removed here; picked in any reply
// box by typing "/" (compose.js).

import { api } from "./api.js";
import { bound, h, panelHeader, replace } from "./dom.js";
import { t } from "./i18n.js";

const PLACEHOLDERS = ["{customer_name}", "{work_title}", "{account_name}", "{agent_name}"];

export class TemplatesPanel {
  constructor(root, { templates, onBack }) {
    Object.assign(this, { root, templates, onBack });
    this.editing = null; // the template being changed, or null for a new one
    // What the form holds: kept across renders (another console's change of a template
    // redraws the panel, a refusal too), emptied once saved or cancelled.
    this.draft = { name: "", text: "" };
    this.problem = "";
  }

  edit(template) {
    this.editing = template;
    this.draft = template ? { name: template.name, text: template.text } : { name: "", text: "" };
    this.render();
  }

  async open() {
    this.render();
  }

  // The list changed (an event, or this panel).
  update() {
    if (this.root.isConnected) this.render();
  }

  render() {
    const name = bound(h("input", { id: "template-name", required: true, maxlength: "40" }), this.draft, "name");
    const text = bound(h("textarea", { id: "template-text", rows: "3", required: true, maxlength: "2000" }), this.draft, "text");
    const form = h(
      "form",
      {
        class: "template-form",
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            if (this.editing) await api.updateTemplate(this.editing.template_id, name.value, text.value);
            else await api.createTemplate(name.value, text.value);
            this.problem = "";
            await this.templates.reload();
            this.edit(null);
          } catch (error) {
            this.problem = error.message || String(error);
            this.render();
          }
        },
      },
      h("h3", {}, this.editing ? t("templates.change_one", { name: this.editing.name }) : t("templates.new")),
      h("label", { for: "template-name" }, t("templates.name")),
      name,
      h("label", { for: "template-text" }, t("templates.text")),
      text,
      h("p", { class: "muted small" }, t("templates.placeholders", { list: PLACEHOLDERS.join(" ") })),
      this.problem ? h("p", { class: "error", role: "alert" }, this.problem) : null,
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit", class: "primary" }, this.editing ? t("templates.save") : t("templates.add")),
        this.editing ? h("button", { type: "button", class: "link", onclick: () => this.edit(null) }, t("cancel")) : null,
      ),
    );
    const all = this.templates.list();
    replace(
      this.root,
      panelHeader(t("templates.title"), t("templates.subtitle"), () => this.onBack()),
      h(
        "div",
        { class: "templates-panel" },
        all.length
          ? h(
              "ul",
              { class: "template-list" },
              all.map((template) =>
                h(
                  "li",
                  { class: "template", dataset: { templateId: template.template_id } },
                  h(
                    "p",
                    {},
                    h("strong", {}, `/${template.name}`),
                    template.updated_by ? h("span", { class: "muted small" }, ` · ${template.updated_by}`) : null,
                  ),
                  h("p", { class: "text" }, template.text),
                  h(
                    "div",
                    { class: "row" },
                    h("button", { type: "button", class: "link", onclick: () => this.edit(template) }, t("templates.change")),
                    h(
                      "button",
                      {
                        type: "button",
                        class: "link danger",
                        onclick: async () => {
                          try {
                            await api.deleteTemplate(template.template_id);
                            await this.templates.reload();
                          } catch (error) {
                            this.problem = error.message || String(error);
                          }
                          this.render();
                        },
                      },
                      t("templates.remove"),
                    ),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted" }, t("templates.none")),
        form,
      ),
    );
    this.root.setAttribute("aria-labelledby", "detail-title");
  }

  destroy() {}
}

// The team's templates as this console knows them: loaded at start, again on each change.
export class TeamTemplates {
  constructor(onChange) {
    this.onChange = onChange;
    this.items = [];
  }

  list() {
    return this.items;
  }

  async reload() {
    try {
      this.items = (await api.templates()).templates || [];
    } catch (error) {
      this.items = []; // a key without the reply scope has none
    }
    this.onChange();
  }

  // What a reply box needs to offer them for one target.
  source(accountId, target) {
    return {
      list: () => this.items,
      render: async (template) => (await api.renderTemplate(template.template_id, accountId, target)).text,
    };
  }
}
