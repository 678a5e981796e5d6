"""The Redis store's share of the team's quick replies (model/templates.py): three hashes
in one hash slot, changed by one script each, so that two masters saving at once never
leave two templates of one name.

    <p>:{templates}:all        template id -> serialized imsync.v1.Template
    <p>:{templates}:names      name -> template id (names are unique)
    <p>:{templates}:name_of    template id -> name

A change is announced on the event stream after it is committed (a crash in between loses
the announcement, not the template).
"""

from __future__ import annotations

from typing import Any

from imsync.v1 import entities_pb2 as e
from services.master.model import templates
from services.master.model.errors import AlreadyExists, NotFound, ResourceExhausted
from services.master.redis.base import _redis_errors
from services.master.redis.team import Team

# KEYS: all, names, name_of. ARGV: id, name, body, "1" to create ("0" to update), the most
# templates. Returns 1, or -1 the id exists, -2 no such id, -3 too many, -4 the name is taken.
_SAVE = """
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if ARGV[4] == '1' then
  if exists then return -1 end
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return -3 end
elseif not exists then
  return -2
end
local holder = redis.call('HGET', KEYS[2], ARGV[2])
if holder and holder ~= ARGV[1] then return -4 end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old and old ~= ARGV[2] then redis.call('HDEL', KEYS[2], old) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS: all, names, name_of. ARGV: id. Returns 1, or 0 when there is no such template.
_DELETE = """
local name = redis.call('HGET', KEYS[3], ARGV[1])
if not name then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], name)
return 1
"""


class Templates(Team):
    _save_script: Any = None
    _delete_script: Any = None

    def _template_keys(self) -> list[str]:
        tag = f"{self.prefix}:{{templates}}"
        return [f"{tag}:all", f"{tag}:names", f"{tag}:name_of"]

    @_redis_errors
    async def list_templates(self) -> list[e.Template]:
        raw: dict[Any, Any] = await self.redis.hgetall(self._template_keys()[0])
        return [e.Template.FromString(body) for body in raw.values()]

    @_redis_errors
    async def save_template(self, template: e.Template, *, create: bool) -> e.Template:
        if self._save_script is None:
            self._save_script = self.redis.register_script(_SAVE)
        body = template.SerializeToString()
        args = [template.template_id, template.name, body, "1" if create else "0", templates.MAX_TEMPLATES]
        result = int(await self._save_script(keys=self._template_keys(), args=args))
        if result == -1:
            raise AlreadyExists(f"template {template.template_id!r} exists", field="template_id")
        if result == -2:
            raise NotFound(f"template {template.template_id!r} not found")
        if result == -3:
            raise ResourceExhausted(f"the team has {templates.MAX_TEMPLATES} templates already; remove one first")
        if result == -4:
            raise AlreadyExists(f"a template is named {template.name!r} already", field="name")
        self.wrote()
        await self.publish(templates.event_of(template))
        return template

    @_redis_errors
    async def delete_template(self, template_id: str) -> None:
        if self._delete_script is None:
            self._delete_script = self.redis.register_script(_DELETE)
        if not int(await self._delete_script(keys=self._template_keys(), args=[template_id])):
            raise NotFound(f"template {template_id!r} not found")
        self.wrote()
        await self.publish(templates.event_of(e.Template(template_id=template_id)))
