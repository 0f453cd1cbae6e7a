"""AlphaZero through the CLI: train, eval, plot, resume, `play`, `move`, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import assert_user_error, run_here, run_in_one_process, run_process

TINY = [
    "steps=30", "simulations=8", "blocks=1", "channels=8", "value_hidden=8", "batch_size=16",
    "replay_window=2000", "train_steps=2", "games_per_iteration=4", "arena_games=2",
    "arena_simulations=4", "baseline_simulations=8", "optimizer=adam",
]  # fmt: skip


def _train(bellman, cwd: Path, game: str, name: str, *extra: str):
    args = ["train", "alphazero", "--env", game, "--run-dir", name, "--quiet"]
    for item in [*TINY, *extra]:
        args += ["--set", item]
    result = bellman(*args, cwd=cwd)
    assert result.returncode == 0, result
    return cwd / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny tic-tac-toe run and a tiny Connect Four run, trained once for the module."""
    cwd = tmp_path_factory.mktemp("cli")

    def bellman(*args, cwd=cwd):
        return run_here(list(args), cwd)  # the runs' training in this process

    return cwd, _train(bellman, cwd, "tictactoe", "ttt"), _train(bellman, cwd, "connect4", "c4")


def test_train_eval_plot_resume(bellman, runs):
    cwd, ttt, _ = runs
    metrics = (ttt / "metrics.csv").read_text()
    assert "elo" in metrics.splitlines()[0]
    assert (ttt / "plot.png").exists()
    evaluated = bellman("eval", ttt, "--episodes", "4", cwd=cwd)
    assert evaluated.returncode == 0, evaluated
    result = json.loads((ttt / "eval.json").read_text())
    assert result["episodes"] == 4 and -1 <= result["mean"] <= 1
    plotted = bellman("plot", ttt, "--out", "ttt.png", cwd=cwd)
    assert plotted.returncode == 0, plotted
    resumed = bellman("train", "--resume", ttt, "--steps", "50", "--quiet", cwd=cwd)
    assert resumed.returncode == 0, resumed
    assert "trained alphazero on tictactoe" in resumed.stdout


def test_move_answers_every_line(bellman, runs):
    cwd, ttt, c4 = runs
    lines = "\n".join(["", "159", "15x", "11", "1234567", "5"]) + "\n"
    completed = run_process(
        ["move", "tictactoe", "--checkpoint", str(ttt), "--simulations", "8"],
        cwd,
        timeout=120,
        input=lines,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout.splitlines()
    assert len(out) == 6, out
    assert out[0] in list("123456789")
    assert out[1] in list("2345678") and out[1] != "5"  # a free cell of 159
    assert out[2].startswith("error:") and "x" in out[2]  # malformed
    assert out[3].startswith("error:") and "legal" in out[3]  # cell 1 twice
    assert out[4].startswith("error:") and "over" in out[4]  # X won with 1 4 7 / 3 5 7
    assert out[5] in list("12346789")
    completed = run_process(
        ["move", "connect4", "--checkpoint", str(c4), "--simulations", "8"],
        cwd,
        timeout=120,
        input="4453\n\n8\n",
    )
    out = completed.stdout.splitlines()
    assert out[0] in list("1234567") and out[1] in list("1234567")
    assert out[2].startswith("error:") and "1-7" in out[2]


def test_move_escapes_control_characters(runs):
    """A terminal escape typed into `move` comes back escaped, never executed by the terminal."""
    cwd, ttt, _ = runs
    completed = run_process(
        ["move", "tictactoe", "--checkpoint", str(ttt), "--simulations", "8"],
        cwd,
        timeout=120,
        input="5\x1b[2J\n",
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("error: ") and "\\x1b" in completed.stdout
    assert "\x1b" not in completed.stdout


def test_play_a_scripted_game(bellman, runs):
    cwd, ttt, _ = runs
    script = "\n".join(["stats", "0", "1", "1", "2", "3", "4", "5", "6", "7", "8", "9"]) + "\n"
    completed = run_process(
        ["play", "tictactoe", "--checkpoint", str(ttt), "--simulations", "8", "--second"],
        cwd,
        timeout=120,
        input=script,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "agent plays" in out
    assert "visits" in out and "value" in out  # stats after the agent's first search
    assert "illegal move" in out and "legal moves:" in out  # "0", and an occupied cell
    assert any(end in out for end in ("you win", "draw", "the agent wins"))


def test_bad_input(runs):
    cwd, ttt, c4 = runs
    # a checkpoint whose network does not fit the config's game (e.g. copied from another run)
    other = cwd / "ttt"
    config = (other / "config.toml").read_text()
    broken = cwd / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "config.toml").write_text(config.replace("channels = 8", "channels = 16"))
    (broken / "checkpoints").mkdir(exist_ok=True)
    for path in (other / "checkpoints").iterdir():
        (broken / "checkpoints" / path.name).write_bytes(path.read_bytes())
    cases = [
        (["train", "alphazero", "--env", "chess", "--quiet"],
         ["unknown game 'chess'", "tictactoe", "connect4", "go9"]),
        (["play", "connect4", "--checkpoint", ttt], ["trained on 'tictactoe'", "connect4"]),
        (["move", "go9", "--checkpoint", c4], ["trained on 'connect4'", "go9"]),
        (["move", "tictactoe", "--checkpoint", broken], ["shape"]),
    ]  # fmt: skip
    results = run_in_one_process([(cwd, args) for args, _ in cases])
    for (_, fragments), result in zip(cases, results, strict=True):
        assert_user_error(result, *fragments)


def test_load_agent_can_switch_the_solver_on(runs):
    """`load_agent(..., solve=True)` (the Connect Four benchmark's --solve) searches with
    MCTS-Solver on a run trained without it, and takes a proven win."""
    from bellman.games.base import play_moves
    from bellman.zero.play import load_agent

    _, ttt, _ = runs
    assert not load_agent(ttt, "tictactoe", 8).mcts.solve  # the run's own config: off
    agent = load_agent(ttt, "tictactoe", 100, solve=True)
    state = play_moves(agent.game, agent.game.parse_moves("1425"))  # X: 1 2; 3 wins at once
    assert agent.mcts.solve and agent.act(state) == 2
