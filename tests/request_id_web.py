"""A small web app that enqueues a guarded task per request, behind the request-id
middleware; served on loopback by a real HTTP server (the integration tests start it).

``python -m tests.request_id_web asgi|wsgi PORT_FILE``: binds 127.0.0.1 on a free port,
writes the port to PORT_FILE, serves until terminated. ``GET /charge/ORDER`` enqueues the
example app's ``workers.charge_card`` (which enqueues ``workers.send_receipt`` as a child).
The app module is ``SANDBOX_PLATFORM_APP`` (default ``workers``).
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from sandbox_platform.middleware import RequestIdMiddleware, WSGIRequestIdMiddleware
from sandbox_platform.tasks import enqueue

user_app = importlib.import_module(os.environ.get("SANDBOX_PLATFORM_APP") or "workers").app


def charge(order_id: str) -> bytes:
    result = enqueue(
        user_app, "workers.charge_card", (order_id, 4200), {"email": f"{order_id}@example.com"}
    )
    return json.dumps({"task_id": result.id}).encode()


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    if not path.startswith("/charge/"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    body = charge(path.removeprefix("/charge/"))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def asgi_app() -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def endpoint(request: Request) -> Response:  # sync: Starlette runs it in a thread
        body = charge(request.path_params["order_id"])
        return Response(body, media_type="application/json")

    return Starlette(
        routes=[Route("/charge/{order_id}", endpoint)],
        middleware=[Middleware(RequestIdMiddleware)],
    )


def serve(kind: str, port_file: Path) -> None:
    if kind == "wsgi":
        from wsgiref.simple_server import make_server

        server = make_server("127.0.0.1", 0, WSGIRequestIdMiddleware(wsgi_app))
        port_file.write_text(str(server.server_port))
        server.serve_forever()
        return
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port_file.write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(asgi_app(), log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    serve(sys.argv[1], Path(sys.argv[2]))
