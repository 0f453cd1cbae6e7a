"""The watch page: an agent plays its gymnasium env, frames rendered on the server and streamed.

    GET /watch                          the agents that play an env (runs and shipped agents)
    GET /watch/NAME                     the player page (static/watch.js)
    GET /api/watch/NAME/check           {"ok": true}, or a 400 saying why the env shows no frames
    GET /api/watch/NAME/stream?seed=S&episodes=E&fps=F
                                        server-sent events, one per frame:
                                        {"episode", "step", "return", "done", "frame"}
                                        (frame: a JPEG data URL), then an `end` event

The policy and env come from `bellman.api.load_policy(run, render_mode="rgb_array")` (the
greedy policy `bellman eval` measures), one per stream: an env is a state machine, so two
viewers never share one. At most `MAX_STREAMS` streams play at once (a 503 beyond); a stream
stops when its viewer leaves, after `episodes` episodes or `MAX_FRAMES` frames.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import json
import os
import threading
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bellman.errors import BellmanError, ConfigError
from bellman.games import GAMES
from bellman.serve.layout import href, json_data, known, page
from bellman.serve.state import ServeState

#: Streams playing at once, over all viewers.
MAX_STREAMS = 2
#: Frames one stream sends at most.
MAX_FRAMES = 5000
#: JPEG quality of the frames.
QUALITY = 80
_GAME_ALGOS = ("alphazero", "muzero", "alphago")


def routes(state: ServeState) -> list[BaseRoute]:
    """The watch pages and the frame stream."""
    slots = threading.BoundedSemaphore(MAX_STREAMS)

    def listing(request: Request) -> Response:
        names = watchable(state)
        if not names:
            return page("Watch", '<p class="muted">No agent of a gymnasium env was given: start '
                                 "the server with e.g. a CartPole run or <code>--agent "
                                 "cartpole-dqn</code>.</p>")  # fmt: skip
        items = "".join(
            f'<li><a href="{href("/watch", name)}">{html.escape(name)}</a> '
            f'<span class="muted">{html.escape(env)}</span></li>'
            for name, env in names.items()
        )
        return page("Watch", f'<ul id="watchable">{items}</ul>')

    def player(request: Request) -> Response:
        name = known(request.path_params["name"], watchable(state), "agent to watch")
        body = (f'<script id="watch-agent" type="application/json">{json_data(name)}</script>'
                + _PLAYER_BODY.replace("$env", html.escape(watchable(state)[name])))  # fmt: skip
        return page(f"Watch {name}", body, scripts=("watch.js",), section="Watch")

    async def stream(request: Request) -> Response:
        name = known(request.path_params["name"], watchable(state), "agent to watch")
        seed = _int_param(request, "seed", 0, 0, 2**31 - 1)
        episodes = _int_param(request, "episodes", 1, 1, 100)
        fps = _int_param(request, "fps", 30, 1, 60)
        if not slots.acquire(blocking=False):
            raise HTTPException(503, f"{MAX_STREAMS} streams are playing already; try later")
        try:
            episode = await run_in_threadpool(_load, state, name, seed)
        except BaseException:
            slots.release()
            raise
        return _FrameStream(_events(request, episode, episodes, fps), episode, slots)

    def check(request: Request) -> Response:
        name = known(request.path_params["name"], watchable(state), "agent to watch")
        _check_renders(state, name)
        return JSONResponse({"ok": True})

    return [
        Route("/watch", listing),
        Route("/watch/{name}", player),
        Route("/api/watch/{name}/stream", stream),
        Route("/api/watch/{name}/check", check),
    ]


def watchable(state: ServeState) -> dict[str, str]:
    """name -> env id of the runs and agents trained on a gymnasium env (not a board game, not
    a language model)."""
    names = {}
    for name in state.sources():
        try:
            config = state.config(name)
        except BellmanError:
            continue
        algo, env = str(config.get("algo", "")), str(config.get("env", ""))
        if algo in _GAME_ALGOS or algo.startswith("lm") or env in GAMES or not env:
            continue
        names[name] = env
    return names


class _Episode:
    """A loaded policy and its env rendering RGB frames, played one step at a time (a lock
    keeps `close` from closing the env under a step still running in a worker thread)."""

    def __init__(self, policy, env, seed: int):
        self.policy, self.env, self.seed = policy, env, seed
        self.episode, self.step, self.total, self.done = 0, 0, 0.0, True
        self.obs = None
        self.lock = threading.Lock()

    def next_frame(self) -> dict[str, Any]:
        """Reset when the last episode ended, else take one step; the frame after it."""
        with self.lock:
            return self._next_frame()

    def close(self) -> None:
        with self.lock:
            self.env.close()

    def _next_frame(self) -> dict[str, Any]:
        from bellman.evaluation import _render

        if self.done:
            self.obs, _ = self.env.reset(seed=self.seed + self.episode)
            self.episode += 1
            self.step, self.total, self.done = 0, 0.0, False
        else:
            self.obs, reward, terminated, truncated, _ = self.env.step(self.policy(self.obs))
            self.step += 1
            self.total += float(reward)
            self.done = bool(terminated or truncated)
        return {"episode": self.episode, "step": self.step, "return": round(self.total, 4),
                "done": self.done, "frame": _jpeg(_render(self.env))}  # fmt: skip


def _load(state: ServeState, name: str, seed: int) -> _Episode:
    """The run's evaluation policy and its env with render_mode="rgb_array"; a ConfigError (a
    400) when the env renders no frames."""
    from bellman.api import load_policy

    for variable in ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):  # pygame renders off-screen
        os.environ.setdefault(variable, "dummy")
    source = state.sources()[name]
    _check_renders(state, name)
    policy, _, env = load_policy(source, seed=seed, render_mode="rgb_array")
    return _Episode(policy, env, seed)


def _check_renders(state: ServeState, name: str) -> None:
    """A 400 when the env of run `name` renders no RGB frames (`api.check_recordable`)."""
    from bellman.api import check_recordable

    try:
        check_recordable(state.sources()[name])
    except ConfigError:
        message = f"'{watchable(state)[name]}' renders no frames (rgb_array): nothing to watch"
        raise HTTPException(400, message) from None


async def _events(request: Request, episode: _Episode, episodes: int, fps: int):
    """The frames as server-sent events, paced at `fps`, until the viewer leaves or the
    episodes end."""
    loop = asyncio.get_running_loop()
    for _ in range(MAX_FRAMES):
        start = loop.time()
        frame = await run_in_threadpool(episode.next_frame)
        yield f"data: {json.dumps(frame)}\n\n"
        if frame["done"] and frame["episode"] >= episodes:
            break
        if await request.is_disconnected():
            return
        await asyncio.sleep(max(0.0, 1 / fps - (loop.time() - start)))
    yield 'event: end\ndata: {"reason": "finished"}\n\n'


class _FrameStream(StreamingResponse):
    """The event stream of one episode player: however the response ends (finished, the viewer
    gone, even before the first frame), the env is closed and the stream's slot freed."""

    def __init__(self, events, episode: _Episode, slots: threading.BoundedSemaphore):
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._episode, self._slots = episode, slots

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.release()
            await run_in_threadpool(self._episode.close)


def _jpeg(frame) -> str:
    """An RGB frame `[H, W, 3]` as a JPEG data URL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _int_param(request: Request, key: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(key)
    if text is None:
        return default
    if not text.lstrip("-").isdigit() or not low <= int(text) <= high:
        raise HTTPException(400, f"{key} must be an integer in {low}-{high}, got '{text}'")
    return int(text)


_PLAYER_BODY = """
<p class="muted">Env: $env. Frames are rendered on the server.</p>
<div class="controls">
  <label>Seed <input id="seed" type="number" min="0" value="0" style="width:6em"></label>
  <label>Episodes <input id="episodes" type="number" min="1" max="100" value="3"
    style="width:4em"></label>
  <label>Frames per second <input id="fps" type="number" min="1" max="60" value="30"
    style="width:4em"></label>
  <button id="play">Play</button> <button id="stop">Stop</button>
</div>
<img id="frame" alt="the env's frames appear here" style="max-width:100%;background:#fff">
<p id="watch-status" class="status">Press Play.</p>
<table class="list" id="episodes-table"><tr><th>episode</th><th>return</th><th>steps</th></tr>
</table>
"""
