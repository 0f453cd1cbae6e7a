"""The web app of `bellman serve`: `create_app(state)` collects the pages' routes.

Each page is a module of `bellman.serve` with `routes(state: ServeState) -> list[BaseRoute]`
(`layout.PAGES` lists them: arena, watch, runs, chat, labels; a module that is not installed is
skipped). Pages answer through `bellman.serve.layout`: `page(title, body_html)` for the shared
HTML layout and nav bar, `read_json(request)` for a checked JSON body, `/static/NAME` for their
files.

Errors: a `starlette.exceptions.HTTPException` (404 unknown run, 400 bad move, 413 body too
large...) and a `bellman.errors.BellmanError` (400: an illegal move, a bad value) become a 4xx
answer with the message, `{"error": ...}` under `/api/` and an HTML page elsewhere; anything
else is a 500 that names the exception's type only, never a traceback (the server's log has it).
"""

from __future__ import annotations

import importlib
import socket

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bellman.errors import BellmanError
from bellman.serve.layout import error_response, installed_pages, static_routes
from bellman.serve.state import ServeState


def create_app(state: ServeState) -> Starlette:
    """The ASGI app serving `state`'s runs and agents: every installed page's routes, the
    static files, `/` (to the first page) and the error handlers."""
    routes = [*static_routes()]
    for _label, _path, module_name in installed_pages():
        routes += importlib.import_module(module_name).routes(state)
    first = installed_pages()[0][1] if installed_pages() else "/static/style.css"
    routes.append(Route("/", lambda _request: RedirectResponse(first, status_code=307)))
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_error,
            BellmanError: _bellman_error,
            Exception: _server_error,
        },
    )
    app.state.serve = state
    return app


async def _http_error(request: Request, error: HTTPException) -> Response:
    return error_response(request, error.status_code, str(error.detail))


async def _bellman_error(request: Request, error: BellmanError) -> Response:
    return error_response(request, 400, str(error))


async def _server_error(request: Request, error: Exception) -> Response:
    return error_response(request, 500, f"internal error ({type(error).__name__})")


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` and listening (before the server starts, so a port in use
    or a bad host is one clear error, not a server's log).

    Raises:
        ConfigError: the port is out of range, the host unknown or the address not available.
    """
    from bellman.errors import ConfigError

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0-65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigError(f"--host '{host}' is not a known address: {error}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def serve(state: ServeState, host: str = "127.0.0.1", port: int = 8000, log=print) -> None:
    """Run the app on `host:port` with uvicorn until Ctrl-C, then return (after a SIGTERM,
    uvicorn shuts down and re-raises it: the process ends with 143)."""
    import uvicorn

    sock = listen(host, port)
    bound = sock.getsockname()[1]
    counts = ", ".join(
        f"{n} {what}{'' if n == 1 else 's'}"
        for n, what in ((len(state.runs), "run"), (len(state.agents), "agent"))
    )
    where = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    log(f"bellman serve: http://{where}:{bound}/ ({counts}); Ctrl-C stops")
    config = uvicorn.Config(create_app(state), log_level="warning", lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it stopped on: the normal way out
        pass
    log("bellman serve: stopped")
