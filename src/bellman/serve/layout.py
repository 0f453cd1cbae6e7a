"""What every page of `bellman serve` shares: the HTML layout with its nav bar (`page`), the
static files (`static_routes`), a checked JSON body reader (`read_json`) and the error answers.

A page module builds its body as HTML text (every value it did not write itself escaped with
`html.escape`) and answers `page(title, body_html, scripts=("name.js",))`. Its own files go in
`bellman/serve/static/` (served at `/static/NAME` for the names found there at start-up, never
a path from the request) and `bellman/serve/templates/` (read with `template(NAME)`).
"""

from __future__ import annotations

import functools
import html
import importlib.util
import json
import string
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

#: The pages in the nav bar: (label, path, module). A page whose module is not installed is
#: left out of the bar (and not mounted: `app.create_app`).
PAGES = (
    ("Arena", "/arena", "bellman.serve.arena"),
    ("Watch", "/watch", "bellman.serve.watch"),
    ("Runs", "/runs", "bellman.serve.runs"),
    ("Chat", "/chat", "bellman.serve.chat"),
    ("Labels", "/labels", "bellman.serve.labels"),
)
#: The largest JSON body a page accepts (a Go game's move list is far below it).
MAX_BODY = 64 * 1024
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                  ".svg": "image/svg+xml", ".html": "text/html"}  # fmt: skip


@functools.cache
def installed_pages() -> tuple[tuple[str, str, str], ...]:
    """The entries of `PAGES` whose module can be imported."""
    return tuple(entry for entry in PAGES if importlib.util.find_spec(entry[2]) is not None)


@functools.cache
def template(name: str) -> string.Template:
    """The `string.Template` of `bellman/serve/templates/NAME` (`$name` placeholders)."""
    text = resources.files("bellman.serve").joinpath("templates", name).read_text("utf-8")
    return string.Template(text)


def page(
    title: str,
    body_html: str,
    *,
    scripts: tuple[str, ...] = (),
    status_code: int = 200,
    section: str | None = None,
) -> HTMLResponse:
    """A whole HTML page: the layout with the nav bar (the entry `section`, default `title`,
    marked), `title` (escaped here), `body_html` (already HTML), then
    `<script src="/static/NAME">` for each of `scripts` (a name may be a whole `/path`)."""
    here = section or title
    nav = "".join(
        f'<a href="{path}"{" class=here" if label == here else ""}>{label}</a>'
        for label, path, _ in installed_pages()
    )
    tags = "\n".join(
        f'<script src="{name if name.startswith("/") else "/static/" + name}"></script>'
        for name in scripts
    )
    text = template("layout.html").substitute(
        title=html.escape(title), nav=nav, body=body_html, scripts=tags
    )
    return HTMLResponse(text, status_code=status_code)


def href(prefix: str, name: str) -> str:
    """The escaped, quoted link `PREFIX/NAME` to a run or agent's page."""
    return html.escape(f"{prefix}/{quote(name, safe='')}")


def known(name: str, valid, what: str) -> str:
    """`name` when it is one of `valid`, else a 404 naming what is valid."""
    if name not in valid:
        raise HTTPException(404, f"unknown {what} '{name}'; valid: {', '.join(valid) or 'none'}")
    return name


def json_data(value: Any) -> str:
    """`value` as JSON safe inside an HTML `<script>` element (no `</script>` can close it)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


async def read_json(request: Request, limit: int = MAX_BODY) -> Any:
    """The request's JSON body; 413 when over `limit` bytes, 400 when it is not JSON."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > limit:
        raise HTTPException(413, f"the request body must be JSON of at most {limit} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the request body must be JSON of at most {limit} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HTTPException(400, f"the request body is not JSON: {error}") from None


def static_files() -> dict[str, Path]:
    """Name -> file of everything `/static/NAME` serves: the files of bellman/serve/static and
    Plotly's own `plotly.min.js` from the installed plotly package (nothing from a CDN)."""
    folder = Path(str(resources.files("bellman.serve").joinpath("static")))
    files = {path.name: path for path in folder.iterdir() if path.is_file()}
    spec = importlib.util.find_spec("plotly")
    if spec is not None and spec.origin is not None:
        plotly_js = Path(spec.origin).parent / "package_data" / "plotly.min.js"
        if plotly_js.is_file():
            files["plotly.min.js"] = plotly_js
    return files


def static_routes() -> list[Route]:
    """`GET /static/NAME` for the names of `static_files()`, looked up, never joined."""
    files = static_files()

    def serve(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            raise HTTPException(404, f"no static file '{name}'")
        media = _CONTENT_TYPES.get(files[name].suffix, "application/octet-stream")
        return FileResponse(files[name], media_type=media, headers={"Cache-Control": "max-age=600"})

    return [Route("/static/{name}", serve)]


def wants_json(request: Request) -> bool:
    """True for the JSON API (`/api/...`) and requests that accept only JSON."""
    accept = request.headers.get("accept", "")
    return request.url.path.startswith("/api/") or (
        "application/json" in accept and "text/html" not in accept
    )


def error_response(request: Request, status: int, message: str) -> Response:
    """A 4xx/5xx answer: `{"error": message}` for the API, an HTML page for a browser."""
    if wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    return page("Error", f'<p class="error">{html.escape(message)}</p>', status_code=status)
