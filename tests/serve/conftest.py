"""Fixtures of the web app's tests: a live server and a real headless browser.

- `live_server(state) -> base URL`: `bellman.serve.create_app(state)` served by uvicorn in a
  background thread on a free port of 127.0.0.1, stopped at the end of the test.
- `browser`: Debian's chromium (`/usr/bin/chromium`, or `chromium` on PATH) driven headless by
  Playwright's sync API, once per test session, with a fresh user-data directory; nothing is
  downloaded. Tests that use it are SKIPPED, saying why, when Playwright or the browser is
  missing (`make test` installs Debian's chromium when run as root with apt-get).
- `artifacts`: the directory screenshots go to: `$BELLMAN_TEST_ARTIFACTS/<test name>` when that
  environment variable is set (CI keeps it), else the test's `tmp_path`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

CHROMIUM_MISSING = (
    "Debian's chromium is not installed: `make test` installs it when root with apt-get"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """The system chromium, or None."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def live_server():
    """Start `create_app(state)` on a free port; returns a function state -> base URL."""
    import uvicorn

    from bellman.serve import create_app
    from bellman.serve.app import listen

    servers = []

    def start(state) -> str:
        sock = listen("127.0.0.1", 0)
        config = uvicorn.Config(create_app(state), log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "uvicorn did not start in 20 s"
        servers.append((server, thread, sock))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def _chromium():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[serve]')")
    executable = chromium_path()
    if executable is None:
        pytest.skip(CHROMIUM_MISSING)
    profile = tempfile.mkdtemp(prefix="bellman-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 800},
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(_chromium):
    """A new page (tab) of the session's headless chromium; closed after the test."""
    page = _chromium.new_page()
    page.set_default_timeout(30_000)  # a loaded 2-core machine
    yield page
    page.close()


@pytest.fixture
def artifacts(request, tmp_path: Path) -> Path:
    """Where the test saves screenshots: $BELLMAN_TEST_ARTIFACTS/<test> or tmp_path."""
    root = os.environ.get("BELLMAN_TEST_ARTIFACTS")
    if not root:
        return tmp_path
    folder = Path(root) / request.node.name.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


#: A tiny AlphaZero run: one iteration of self-play, a network of one block of 8 channels.
TINY_ALPHAZERO = [
    "steps=30", "simulations=8", "blocks=1", "channels=8", "value_hidden=8", "batch_size=16",
    "replay_window=2000", "train_steps=2", "games_per_iteration=4", "arena_games=0",
    "arena_simulations=16", "optimizer=adam",
]  # fmt: skip


@pytest.fixture(scope="session")
def connect4_run(tmp_path_factory) -> Path:
    """A Connect Four AlphaZero run trained for one iteration (about 2 s), once per session."""
    import torch

    from bellman import api

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("serve") / "alphazero-connect4"
    api.train("alphazero", "connect4", overrides=TINY_ALPHAZERO, run_dir=run_dir, quiet=True)
    return run_dir


@pytest.fixture(scope="session")
def cartpole_run(tmp_path_factory) -> Path:
    """A CartPole DQN run of 600 env steps (six metrics rows), once per session."""
    import torch

    from bellman import api

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("serve") / "dqn-cartpole"
    settings = ["steps=600", "learning_starts=100", "log_every=100", "eval_every=0"]
    api.train("dqn", "CartPole-v1", overrides=settings, run_dir=run_dir, quiet=True)
    return run_dir
