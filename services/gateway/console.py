"""The IM web console (clients/web): plain files the gateway serves at `/`.

The console is data from strangers shown to the team, so its responses carry a strict
Content-Security-Policy: scripts, styles and requests only from the gateway itself, no
inline script, no frames; together with the console never parsing text as markup, a
comment holding `<script>` stays text.
"""

from __future__ import annotations

from pathlib import Path

from google.rpc import code_pb2, status_pb2
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from .marshalers import GRPC_GATEWAY

# The console's files in a checkout (and an editable install).
CONSOLE_DIR = Path(__file__).resolve().parents[2] / "clients" / "web"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json; charset=utf-8",  # the message catalogues
}


def console_routes(directory: Path) -> list[BaseRoute]:
    """`/` and `/assets/<file>` for the files of `directory` (read once: nothing else is served)."""
    files = {path.name: path for path in directory.iterdir() if path.is_file() and path.suffix in _TYPES}
    if "index.html" not in files:
        raise FileNotFoundError(f"{directory} has no index.html")

    async def index(_request: Request) -> Response:
        return FileResponse(files["index.html"], media_type=_TYPES[".html"], headers=SECURITY_HEADERS)

    async def asset(request: Request) -> Response:
        path = files.get(request.path_params["name"])
        if path is None:  # answered as the gateway answers any unknown path
            body = GRPC_GATEWAY.error_body(status_pb2.Status(code=code_pb2.NOT_FOUND, message="Not Found"))
            return Response(body, status_code=404, media_type="application/json")
        return FileResponse(path, media_type=_TYPES[path.suffix], headers=SECURITY_HEADERS)

    return [Route("/", index, methods=["GET", "HEAD"]), Route("/assets/{name}", asset, methods=["GET", "HEAD"])]
