"""The run browser: the runs (and shipped agents) the server was started with, each run's
learning curves as interactive Plotly plots, several runs compared on one plot, and the run's
config.toml and eval.json.

    GET /runs                         the list, with checkboxes to compare
    GET /runs/NAME                    one run: its curves, config and evaluation
    GET /runs/compare?run=A&run=B     several runs' curves on shared plots
    GET /api/runs/metrics?run=A...    the curves as JSON: {"x_label", "panels", "runs", "errors"}

The curves are those of `bellman plot` (`bellman.plots`: its checked metrics.csv reader, its
panels in the same order, its x-axis names); Plotly's own `plotly.min.js` comes from the
installed plotly package (`/static/plotly.min.js`), nothing from a CDN. A run is looked up by
name in the server's state, never by a path from the request.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bellman import plots
from bellman.errors import BellmanError
from bellman.serve.layout import href, json_data, known, page
from bellman.serve.state import ServeState

#: A curve longer than this is thinned to every k-th point (the last point always kept).
MAX_POINTS = 4000
#: At most this many runs on one comparison.
MAX_COMPARED = 12


def routes(state: ServeState) -> list[BaseRoute]:
    """The run browser's pages and its JSON API."""

    def listing(request: Request) -> Response:
        if not state.sources():
            return page("Runs", '<p class="muted">The server was started with no run: '
                                "<code>bellman serve RUN_DIR ...</code></p>")  # fmt: skip
        rows = "".join(_list_row(state, name) for name in state.sources())
        body = (
            '<form action="/runs/compare" method="get"><table class="list" id="runs">'
            "<tr><th></th><th>name</th><th>algorithm</th><th>env</th><th>last step</th>"
            f"<th>evaluation</th></tr>{rows}</table>"
            '<p><button type="submit">Compare the checked runs</button></p></form>'
        )
        return page("Runs", body)

    def one_run(request: Request) -> Response:
        name = known(request.path_params["name"], state.sources(), "run")
        config_text = _read_text(state, name, "config.toml")
        if name in state.agents:  # a shipped agent: its model card, no curves
            body = _model_card(name)
            scripts: tuple[str, ...] = ()
        else:
            body = _plots_div([name]) + f"<h2>eval.json</h2>{_evaluation(state, name)}"
            scripts = ("plotly.min.js", "runs.js")
        body += f'<h2>config.toml</h2><pre id="config">{html.escape(config_text)}</pre>'
        kind = "Agent" if name in state.agents else "Run"
        return page(f"{kind} {name}", body, scripts=scripts, section="Runs")

    def compare(request: Request) -> Response:
        names = _names(state, request)
        listed = ", ".join(f'<a href="{href("/runs", n)}">{html.escape(n)}</a>' for n in names)
        return page("Compare runs", f"<p>{listed}</p>" + _plots_div(names),
                    scripts=("plotly.min.js", "runs.js"), section="Runs")  # fmt: skip

    def metrics(request: Request) -> Response:
        return JSONResponse(curves(state, _names(state, request)))

    return [
        Route("/runs", listing),
        Route("/runs/compare", compare),
        Route("/runs/{name}", one_run),
        Route("/api/runs/metrics", metrics),
    ]


def curves(state: ServeState, names: list[str]) -> dict[str, Any]:
    """The learning curves of runs `names`: the panels some run logged (in `plots.PANELS`
    order), each run's step and panel columns (NaN as null, thinned to `MAX_POINTS`), the
    x-axis name, and a message for each run whose metrics.csv cannot be read."""
    data, errors, algos = {}, {}, set()
    for name in names:
        try:
            data[name] = plots.read_metrics(state.sources()[name])
            algos.add(state.algo(name))
        except BellmanError as error:
            errors[name] = str(error)
    panels = plots._panels(data, plots.PANELS)
    step_names = {plots.STEP_NAMES.get(algo, "env steps") for algo in algos}
    runs = {}
    for name, columns in data.items():
        keep = _thinned(len(columns["step"]))
        runs[name] = {
            column: [_finite(columns[column][i]) for i in keep]
            for column in ("step", *panels)
            if column in columns
        }
    return {
        "x_label": " / ".join(sorted(step_names)) or "step",
        "panels": [{"name": p, "log": p in plots.LOG_SCALE} for p in panels],
        "runs": runs,
        "errors": errors,
    }


def _thinned(length: int) -> list[int]:
    """Row indices of a curve of `length` points, at most about MAX_POINTS, the last kept."""
    stride = max(1, math.ceil(length / MAX_POINTS))
    keep = list(range(0, length, stride))
    if length and keep[-1] != length - 1:
        keep.append(length - 1)
    return keep


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _names(state: ServeState, request: Request) -> list[str]:
    """The `run=` parameters, each a known run, at least one and at most MAX_COMPARED."""
    names = list(dict.fromkeys(request.query_params.getlist("run")))
    if not names:
        raise HTTPException(400, "name at least one run: ?run=NAME&run=NAME2")
    if len(names) > MAX_COMPARED:
        raise HTTPException(400, f"at most {MAX_COMPARED} runs at once, got {len(names)}")
    return [known(name, state.sources(), "run") for name in names]


def _plots_div(names: list[str]) -> str:
    return (f'<script id="runs-selected" type="application/json">{json_data(names)}</script>'
            '<p id="plots-status" class="muted">Loading the curves...</p>'
            '<div id="plots"></div>')  # fmt: skip


def _read_text(state: ServeState, name: str, filename: str) -> str:
    """A small text file of the run (`filename` is one of ours, never the request's)."""
    try:
        return (state.sources()[name] / filename).read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        return f"({filename} cannot be read: {error.strerror})"


def _evaluation(state: ServeState, name: str) -> str:
    path = state.sources()[name] / "eval.json"
    if not path.exists():
        command = html.escape(f"bellman eval {state.sources()[name]}")
        return f'<p class="muted" id="eval">No evaluation yet: <code>{command}</code></p>'
    try:
        text = json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=2)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f'<p class="error" id="eval">eval.json cannot be read: {html.escape(str(error))}</p>'
    return f'<pre id="eval">{html.escape(text)}</pre>'


def _model_card(name: str) -> str:
    """A shipped agent's model card (`bellman.agents.card`): headline, command, evaluation."""
    from bellman import agents

    try:
        card = agents.card(name)
    except BellmanError as error:
        return f'<p class="error" id="card">{html.escape(str(error))}</p>'
    evaluation = json.dumps(card["evaluation"], indent=1)
    return (f'<h2>Model card</h2><p id="card">{html.escape(str(card["headline"]))} '
            f'<span class="muted">({html.escape(str(card["date"]))}, '
            f'{html.escape(str(card["machine"]))})</span></p>'
            f'<p>Trained with <code>{html.escape(str(card["command"]))}</code></p>'
            f"<h2>Evaluation</h2><pre>{html.escape(evaluation)}</pre>")  # fmt: skip


def _list_row(state: ServeState, name: str) -> str:
    try:
        config = state.config(name)
        algo, env = str(config.get("algo", "")), str(config.get("env", ""))
    except BellmanError as error:
        algo, env = "unreadable", str(error)
    last = "-"
    try:
        steps = plots.read_metrics(state.sources()[name])["step"]
        last = f"{int(steps[-1]):,}" if steps else "-"
    except BellmanError:
        pass
    score = "-"
    try:
        evaluation = json.loads((state.sources()[name] / "eval.json").read_text(encoding="utf-8"))
        score = f"{float(evaluation['mean']):.2f} over {int(evaluation['episodes'])} episodes"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    kind = " (shipped agent)" if name in state.agents else ""
    quoted = html.escape(name)
    return (f'<tr><td><input type="checkbox" name="run" value="{quoted}"></td>'
            f'<td><a href="{href("/runs", name)}">{quoted}</a>{kind}</td>'
            f"<td>{html.escape(algo)}</td><td>{html.escape(env)}</td><td>{last}</td><td>{html.escape(score)}</td>"
            "</tr>")  # fmt: skip
