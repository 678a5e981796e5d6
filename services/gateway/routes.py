"""Routes read from the google.api.http annotations of service descriptors.

Nothing here names an RPC: every annotated method of every given service becomes one
route per binding (the rule and its additional_bindings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from .path_template import PathTemplate, parse

# Where every route of the IM services is (each google.api.http template starts so).
GATEWAY_PATHS = "/api/im/"


@dataclass(frozen=True)
class Route:
    http_method: str
    template: PathTemplate
    method: MethodDescriptor
    body: str
    response_body: str
    request_type: type[Message]
    response_type: type[Message]
    # 0 for the method's rule, 1... for its additional_bindings in order.
    binding: int = 0

    @property
    def grpc_path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def service(self) -> str:
        return str(self.method.containing_service.full_name)

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)


def _pattern(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise ValueError("HttpRule without a pattern")
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return kind.upper(), str(getattr(rule, kind))


def _message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def routes_of(services: Iterable[ServiceDescriptor]) -> list[Route]:
    routes: list[Route] = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
            for index, binding in enumerate((rule, *rule.additional_bindings)):
                http_method, path = _pattern(binding)
                routes.append(
                    Route(
                        http_method=http_method,
                        template=parse(path),
                        method=method,
                        body=binding.body,
                        response_body=binding.response_body,
                        request_type=_message_class(method.input_type),
                        response_type=_message_class(method.output_type),
                        binding=index,
                    )
                )
    # The most specific template first: more literal segments, then a custom verb.
    routes.sort(key=lambda route: (-route.template.literals, not route.template.verb))
    return routes
