"""The web app without a browser (starlette's TestClient): the arena's answers and refusals, the
run browser's curves and its refusal of unknown names and traversal, the watch stream, errors
without tracebacks, and `bellman serve`'s checks and start."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from bellman import plots
from bellman.serve import create_app, make_state
from tests.conftest import assert_user_error

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def client(connect4_run, cartpole_run):
    state = make_state([connect4_run, cartpole_run])
    return TestClient(create_app(state), raise_server_exceptions=False)


def test_arena_answers_a_move_with_its_search(client):
    answer = client.post("/api/arena/alphazero-connect4/move", json={"moves": [3]})
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    move, search = answer["move"], answer["search"]
    assert answer["after"]["moves"] == [3, move]
    assert sum(search["visits"]) == search["simulations"] == 16  # the run's arena_simulations
    assert search["visits"][move] == max(search["visits"])  # the most visited move is played
    assert search["pv"][0] == answer["move_text"] == str(move + 1)
    board = np.array(answer["after"]["board"])  # rows top first: both discs on the bottom row
    assert board[5, 3] == 1 and board[4 if move == 3 else 5, move] == 2
    assert (board != 0).sum() == 2 and answer["after"]["to_play"] == 0
    # fewer simulations when asked
    fewer = client.post("/api/arena/alphazero-connect4/move", json={"moves": [], "simulations": 3})
    assert sum(fewer.json()["search"]["visits"]) == 3


def test_arena_plays_an_alphago_run(tmp_path):
    """AlphaGo's search agent (SL stage only, a tiny net): its move is its search's most
    visited, with the run's simulations."""
    from bellman import api

    settings = ["stage=sl", "expert_games=4", "expert_depth=1", "sl_epochs=1", "blocks=1",
                "channels=8", "value_hidden=8", "simulations=16", "arena_games=0"]  # fmt: skip
    api.train("alphago", "connect4", overrides=settings, run_dir=tmp_path / "ag", quiet=True)
    client = TestClient(create_app(make_state([tmp_path / "ag"])))
    answer = client.post("/api/arena/ag/move", json={"moves": [3, 3]}).json()
    visits = answer["search"]["visits"]
    assert sum(visits) == 16 and visits[answer["move"]] == max(visits)
    assert answer["search"]["pv"][0] == answer["move_text"]


def test_arena_a_finished_game_gets_no_move(client):
    won = [0, 1, 0, 1, 0, 1, 0]  # four in column 1 for the first player
    answer = client.post("/api/arena/alphazero-connect4/move", json={"moves": won})
    assert answer.status_code == 200
    assert answer.json()["after"]["over"] and answer.json()["after"]["result"] == "first"
    assert "move" not in answer.json()


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"moves": [3, 3, 3, 3, 3, 3, 3]}, 400, "move 7 (4) is illegal; legal: 1 2 3 5 6 7"),
        ({"moves": [7]}, 400, "outside [0, 7)"),
        ({"moves": [True]}, 400, "integer action"),
        ({"moves": "34"}, 400, '{"moves": [action, ...]}'),
        ({"moves": [], "simulations": 0}, 400, "simulations must be an integer in 1-2000"),
        ({"moves": list(range(7)) * 200}, 400, "at most 723 moves"),
        (b"{not json", 400, "not JSON"),
        (b"[" + b"1," * 40000 + b"1]", 413, "at most 65536 bytes"),
    ],
)
def test_arena_refuses_bad_requests(client, body, status, fragment):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    answer = client.post("/api/arena/alphazero-connect4/move", **kwargs)
    assert answer.status_code == status
    assert fragment in answer.json()["error"]


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/runs/..%2F..%2Fetc", 404, "Not Found"),  # decoded: no route has slashes there
        ("/runs/nope", 404, "valid: alphazero-connect4, dqn-cartpole"),
        ("/api/runs/metrics?run=..%2Fdqn-cartpole", 404, "unknown run"),
        ("/api/runs/metrics", 400, "at least one run"),
        ("/static/..%2Fapp.py", 404, "Not Found"),
        ("/static/app.py", 404, "no static file &#x27;app.py"),  # a file beside static/, not in it
        ("/api/watch/alphazero-connect4/stream", 404, "valid: dqn-cartpole"),
        ("/api/watch/dqn-cartpole/stream?fps=0", 400, "fps must be an integer in 1-60"),
        ("/nothing/here", 404, "Not Found"),
    ],
)
def test_unknown_names_and_traversal_are_refused(client, path, status, fragment):
    answer = client.get(path)
    assert answer.status_code == status
    assert fragment in answer.text
    assert "Traceback" not in answer.text and "root:" not in answer.text


def test_arena_plays_only_its_game_agents(client):
    for name in ("..%2F..%2Fetc", "dqn-cartpole"):
        answer = client.post(f"/api/arena/{name}/move", json={"moves": []})
        assert answer.status_code == 404
    assert answer.json()["error"] == "unknown game agent 'dqn-cartpole'; valid: alphazero-connect4"


def test_an_unexpected_error_is_a_500_without_traceback(client, monkeypatch):
    from bellman.serve import arena

    def broken(*args):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(arena, "answer_move", broken)
    answer = client.post("/api/arena/alphazero-connect4/move", json={"moves": []})
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error (RuntimeError)"}


def test_runs_curves_are_the_metrics_csv(client, cartpole_run):
    answer = client.get("/api/runs/metrics?run=dqn-cartpole&run=alphazero-connect4").json()
    expected = plots.read_metrics(cartpole_run)
    assert answer["runs"]["dqn-cartpole"]["step"] == expected["step"]
    assert answer["runs"]["dqn-cartpole"]["loss"] == [
        None if np.isnan(v) else v for v in expected["loss"]
    ]
    assert [p["name"] for p in answer["panels"]][:2] == ["episode_return_mean", "loss"]
    page = client.get("/runs/dqn-cartpole").text
    assert "algo = &quot;dqn&quot;" in page and "No evaluation yet" in page
    assert '<script src="/static/plotly.min.js">' in page
    assert client.get("/static/plotly.min.js").headers["content-type"].startswith("text/javascript")


def test_watch_streams_the_greedy_episode(client, cartpole_run):
    """The streamed episode is the one `bellman eval` plays from the same seed."""
    from bellman.api import load_policy
    from bellman.evaluation import run_episode

    frames = []
    with client.stream("GET", "/api/watch/dqn-cartpole/stream?seed=5&fps=60") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith('data: {"episode"'):
                frames.append(json.loads(line[6:]))
    policy, _, env = load_policy(cartpole_run, seed=5)
    expected_return, length = run_episode(policy, env, seed=5)
    assert frames[-1]["done"] and frames[-1]["return"] == expected_return
    assert len(frames) == length + 1  # the reset frame, then one per step
    jpeg = base64.b64decode(frames[0]["frame"].split(",", 1)[1])
    assert jpeg[:3] == b"\xff\xd8\xff"


def test_watch_refuses_an_env_without_frames(tmp_path):
    from bellman import api

    api.train("q-learning", "bellman/Recycling-v0", overrides=["steps=200"],
              run_dir=tmp_path / "mdp", quiet=True)  # fmt: skip
    client = TestClient(create_app(make_state([tmp_path / "mdp"])))
    for path in ("check", "stream"):
        answer = client.get(f"/api/watch/mdp/{path}")
        assert answer.status_code == 400
        assert answer.json()["error"] == (
            "'bellman/Recycling-v0' renders no frames (rgb_array): nothing to watch"
        )


def test_watch_streams_are_bounded_and_freed_when_viewers_leave(live_server, cartpole_run):
    from bellman.serve.watch import MAX_STREAMS

    base = live_server(make_state([cartpole_run]))
    stream = f"{base}/api/watch/dqn-cartpole/stream?fps=1&episodes=100"
    viewers = [urllib.request.urlopen(stream, timeout=30) for _ in range(MAX_STREAMS)]
    for viewer in viewers:
        assert viewer.readline().startswith(b"data: {")  # both are playing
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(stream, timeout=30)
    assert refused.value.code == 503
    for viewer in viewers:
        viewer.close()
    deadline = time.monotonic() + 10
    while True:  # the server sees the viewers leave and frees their slots
        try:
            with urllib.request.urlopen(stream, timeout=30) as again:
                assert again.readline().startswith(b"data: {")
            break
        except urllib.error.HTTPError as error:
            assert error.code == 503 and time.monotonic() < deadline
            time.sleep(0.2)
    answer = urllib.request.urlopen(f"{base}/api/watch/dqn-cartpole/check", timeout=30)
    assert json.loads(answer.read()) == {"ok": True}


def test_cli_serve_checks_its_inputs(bellman, tmp_path, connect4_run):
    assert_user_error(bellman("serve", tmp_path / "missing"), "does not exist")
    assert_user_error(bellman("serve", "--labels", tmp_path), "is a directory")
    assert_user_error(bellman("serve", "--port", "70000"), "--port must be in 0-65535")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    result = bellman("serve", connect4_run, "--port", str(port))
    busy.close()
    assert_user_error(result, f"cannot listen on 127.0.0.1:{port}")


def test_cli_serve_serves_the_arena(tmp_path, connect4_run):
    process = subprocess.Popen(
        [sys.executable, "-m", "bellman", "serve", str(connect4_run), "--port", "0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.startswith("bellman serve: http://127.0.0.1:"), line
        url = line.split()[2]
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "arena", timeout=5) as answer:
                    page = answer.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert "alphazero-connect4" in page and 'src="/static/arena.js"' in page
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_shipped_agent_is_served_with_its_model_card(tmp_path, cartpole_run):
    import shutil

    from bellman import agents

    shutil.copytree(cartpole_run, tmp_path / "cartpole-dqn")  # a run named like the agent
    state = make_state([tmp_path / "cartpole-dqn"], ["cartpole-dqn"])
    assert list(state.runs) == ["cartpole-dqn-2"] and list(state.agents) == ["cartpole-dqn"]
    client = TestClient(create_app(state))
    page = client.get("/runs/cartpole-dqn").text
    assert "<h2>Model card</h2>" in page and agents.card("cartpole-dqn")["headline"] in page
    assert "/watch/cartpole-dqn-2" in client.get("/watch").text


def test_the_shipped_tic_tac_toe_agent_blocks_and_wins_in_the_arena():
    client = TestClient(create_app(make_state(agent_names=["tictactoe"])))
    block = client.post("/api/arena/tictactoe/move", json={"moves": [0, 4, 1]}).json()
    assert block["move_text"] == "3"  # X has cells 1 and 2: O must take 3
    win = client.post("/api/arena/tictactoe/move", json={"moves": [0, 3, 1, 4]}).json()
    assert win["move_text"] == "3" and win["after"]["result"] == "first"  # X completes 1-2-3


def test_a_shipped_agent_name_must_exist():
    from bellman.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown agent 'no-such-agent'"):
        make_state(agent_names=["no-such-agent"])


def test_a_move_request_may_ask_up_to_the_agents_own_default_simulations():
    from starlette.exceptions import HTTPException

    from bellman.serve.arena import MAX_SIMULATIONS, _check_request

    assert _check_request({"moves": [3]}, 3200) == ([3], 3200)  # the shipped connect4's default
    assert _check_request({"moves": [], "simulations": 16}, 3200) == ([], 16)
    for default, asked in ((3200, 3201), (100, MAX_SIMULATIONS + 1)):
        with pytest.raises(HTTPException, match=f"1-{max(default, MAX_SIMULATIONS)}"):
            _check_request({"moves": [], "simulations": asked}, default)
