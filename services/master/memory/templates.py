"""The memory store's share of the team's quick replies (model/templates.py): a dict,
each change journaled in the journal's `templates` table (a row per template, replaced
whole), announced, and every answer a gateway keeps dropped (a template list is no
account's)."""

from __future__ import annotations

from imsync.v1 import entities_pb2 as e
from services.master.memory.changes import Changes
from services.master.model import templates
from services.master.model.errors import AlreadyExists, NotFound, ResourceExhausted


class Templates(Changes):
    def restore_templates(self, found: list[e.Template]) -> None:
        """What the journal kept (open_data_dir)."""
        self._templates.update({t.template_id: t for t in found})

    async def list_templates(self) -> list[e.Template]:
        return list(self._templates.values())

    async def save_template(self, template: e.Template, *, create: bool) -> e.Template:
        book = self._templates
        if create:
            if template.template_id in book:
                raise AlreadyExists(f"template {template.template_id!r} exists", field="template_id")
            if len(book) >= templates.MAX_TEMPLATES:
                raise ResourceExhausted(f"the team has {templates.MAX_TEMPLATES} templates already; remove one first")
        elif template.template_id not in book:
            raise NotFound(f"template {template.template_id!r} not found")
        taken = next((t for t in book.values() if t.name == template.name), None)
        if taken is not None and taken.template_id != template.template_id:
            raise AlreadyExists(f"a template is named {template.name!r} already", field="name")
        book[template.template_id] = template
        if self.journal is not None:
            self.journal.put_template(template.template_id, template.SerializeToString)
        self._templates_changed(template)
        return template

    async def delete_template(self, template_id: str) -> None:
        if self._templates.pop(template_id, None) is None:
            raise NotFound(f"template {template_id!r} not found")
        if self.journal is not None:
            self.journal.forget_template(template_id)
        self._templates_changed(e.Template(template_id=template_id))

    def _templates_changed(self, template: e.Template) -> None:
        self._generation += 1
        if self.coherence is not None:
            self.coherence.changed_everything()
        self._emit(templates.event_of(template))
