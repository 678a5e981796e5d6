"""TemplateService: the team's quick replies (model/templates.py), kept by the store."""

from __future__ import annotations

import secrets
import time

from imsync.v1 import entities_pb2 as e
from imsync.v1 import templates_pb2 as tpl
from imsync.v1 import templates_pb2_grpc
from services.master.api.queries import Context, Guarded
from services.master.auth.api_keys import Access
from services.master.model import templates
from services.master.model.errors import InvalidArgument, NotFound


class TemplateServicer(Guarded, templates_pb2_grpc.TemplateServiceServicer):
    async def ListTemplates(self, request: tpl.ListTemplatesRequest, context: Context) -> tpl.ListTemplatesResponse:
        found = await self._answer(context, lambda access: self._store.list_templates())
        return tpl.ListTemplatesResponse(templates=templates.matching(found, request.query))

    def _template(self, template_id: str, name: str, text: str, access: Access) -> e.Template:
        name, text = templates.check(name, text)
        template = e.Template(template_id=template_id, name=name, text=text, updated_by=access.agent)
        template.update_time.FromNanoseconds(time.time_ns())
        return template

    async def CreateTemplate(self, request: tpl.CreateTemplateRequest, context: Context) -> tpl.CreateTemplateResponse:
        async def compute(access: Access) -> e.Template:
            template = self._template(secrets.token_hex(6), request.name, request.text, access)
            return await self._store.save_template(template, create=True)

        return tpl.CreateTemplateResponse(template=await self._answer(context, compute))

    async def UpdateTemplate(self, request: tpl.UpdateTemplateRequest, context: Context) -> tpl.UpdateTemplateResponse:
        async def compute(access: Access) -> e.Template:
            if not request.template_id:
                raise InvalidArgument("required", field="template_id")
            template = self._template(request.template_id, request.name, request.text, access)
            return await self._store.save_template(template, create=False)

        return tpl.UpdateTemplateResponse(template=await self._answer(context, compute))

    async def DeleteTemplate(self, request: tpl.DeleteTemplateRequest, context: Context) -> tpl.DeleteTemplateResponse:
        async def compute(access: Access) -> None:
            if not request.template_id:
                raise InvalidArgument("required", field="template_id")
            await self._store.delete_template(request.template_id)

        await self._answer(context, compute)
        return tpl.DeleteTemplateResponse()

    async def RenderTemplate(self, request: tpl.RenderTemplateRequest, context: Context) -> tpl.RenderTemplateResponse:
        async def compute(access: Access) -> str:
            values = {"agent_name": access.agent}
            target = request.WhichOneof("target")
            if target == "conversation_id":
                holder = await self._holder(access, "conversation", request.conversation_id, request.account_id)
                conversation = await self._store.get_conversation(holder, request.conversation_id)
                values["customer_name"] = conversation.participant.user_name
            elif target == "comment_id":
                holder = await self._holder(access, "comment", request.comment_id, request.account_id)
                comment = await self._store.get_discussion(holder, request.comment_id)
                values["customer_name"] = comment.author.user_name
                values["work_title"] = (await self._store.get_content(holder, comment.content_id)).title
            else:
                raise InvalidArgument("one of conversation_id, comment_id is required", field="target")
            found = {t.template_id: t for t in await self._store.list_templates()}.get(request.template_id)
            if found is None:
                raise NotFound(f"template {request.template_id!r} not found")
            values["account_name"] = (await self._store.get_account(holder)).user_name
            if not access.agent:
                values.pop("agent_name")
            return templates.render(found.text, values)

        return tpl.RenderTemplateResponse(text=await self._answer(context, compute))
