"""The agents that ship trained (bellman.agents): listed with their cards, loaded by the run
loaders, acting; the cards' claims checked where that is cheap; `--agent NAME` on the CLI and its
bad input; nothing written into the package; a corrupt shipped file is one error line."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from bellman import agents, api, checkpoint
from bellman.errors import CheckpointError, ConfigError
from tests.conftest import CliResult, assert_user_error, run_process

torch.set_num_threads(1)

BOARD_GAMES = ("tictactoe", "connect4")


def _package_files() -> dict[str, tuple[int, int]]:
    files = [path for path in agents.AGENTS_DIR.rglob("*") if "__pycache__" not in path.parts]
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in files}


def test_the_list_has_every_agent_with_its_headline(bellman):
    assert {"taxi", "cartpole-ppo", "tictactoe", "connect4"} <= set(agents.names())
    result = bellman("agents")
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert len(lines) == len(agents.names())
    for name, line in zip(agents.names(), lines, strict=True):
        card = agents.card(name)
        assert line.split()[:3] == [name, card["algorithm"], card["env"]]
        assert line.endswith(card["headline"]) and card["headline"]


@pytest.mark.parametrize("name", agents.names())
def test_every_agent_loads_and_acts(name):
    card = agents.card(name)
    directory = agents.resolve(name)
    assert card["name"] == name and card["command"].startswith(("bellman ", "python "))
    if card["env"] in BOARD_GAMES:
        from bellman.zero.play import load_agent

        agent = load_agent(directory, card["env"], simulations=8)
        game, state = agent.game, agent.game.initial_state()
        for _ in range(2):
            action = agent.act(state)
            assert game.legal_mask(state)[action]
            state = game.apply(state, action)
        return
    if card["algorithm"].startswith("lm-"):  # the recipe: its policies answer, its RM loads
        from bellman.lm.reward_model import load_reward_model
        from bellman.lm.runs import load_lm

        assert {"policy", "sft", "reward"} <= set(card["models"])
        for role, path in card["models"].items():
            if role == "reward":
                assert load_reward_model(directory / path)[0] is not None
                continue
            generator = torch.Generator().manual_seed(0)
            (answer,) = load_lm(directory / path).generate(["The"], 4, generator=generator)
            assert isinstance(answer, str)
        return
    policy, _, env = api.load_policy(directory)
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        action = policy(obs)
        assert env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype))
        obs, *_ = env.step(action)
    env.close()


def test_taxi_scores_its_card():
    evaluation = agents.card("taxi")["evaluation"]
    result = api.evaluate_run(agents.resolve("taxi"), evaluation["episodes"], 0, write=False)
    assert result["mean"] == pytest.approx(evaluation["mean"], abs=1e-9)
    from bellman.envs import make_env
    from bellman.evaluation import evaluate
    from bellman.tabular.planning import greedy_policy, tabular_model, value_iteration

    env = make_env("Taxi-v4")  # the optimal policy (value iteration on P) on the same seeds
    optimal = greedy_policy(value_iteration(tabular_model(env), 0.99))
    best = evaluate(lambda s: int(optimal[s]), env, episodes=evaluation["episodes"], seed=0)
    assert result["mean"] == pytest.approx(best["mean"], abs=1e-9)


def test_cartpole_ppo_reaches_its_card():
    evaluation = agents.card("cartpole-ppo")["evaluation"]
    assert evaluation["min"] == 500
    result = api.evaluate_run(agents.resolve("cartpole-ppo"), 3, 0, write=False)
    assert result["min"] >= evaluation["min"]


def test_tictactoe_never_loses_to_perfect_play_from_the_empty_board():
    from bellman.search import PerfectPlayer
    from bellman.zero.arena import play_match
    from bellman.zero.play import load_agent

    assert agents.card("tictactoe")["evaluation"]["below_game_value"] == 0
    agent = load_agent(agents.resolve("tictactoe"), "tictactoe")
    for seed in range(3):
        perfect = PerfectPlayer(agent.game, seed=seed)
        assert play_match(agent.game, agent.act, perfect.act) >= 0
        assert play_match(agent.game, perfect.act, agent.act) <= 0


def _piped(text: str, *args: str) -> CliResult:
    """`bellman ARGS` reading `text` on stdin."""
    return run_process(args, os.getcwd(), timeout=120, input=text)


def test_play_connect4_through_a_pipe():
    moves = "".join(f"{column}\n" for _ in range(6) for column in range(1, 8))
    result = _piped(moves, "play", "connect4", "--agent", "connect4", "--simulations", "16")
    assert result.returncode == 0, result
    assert "agent plays" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1] in ("you win", "draw", "the agent wins")


def test_move_answers_with_the_shipped_agent():
    result = _piped("\n1\n", "move", "tictactoe", "--agent", "tictactoe")
    assert result.returncode == 0, result
    assert [int(line) in range(1, 10) for line in result.stdout.split()] == [True, True]


class _Result:
    def __init__(self, returncode: int, captured):
        self.returncode, self.stdout, self.stderr = returncode, captured.out, captured.err

    def __repr__(self) -> str:
        return f"rc={self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


@pytest.fixture
def cli(capsys):
    """`bellman ARGS` in this process (no interpreter start: the error paths are cheap)."""
    from bellman.cli.main import main

    def run(*args) -> _Result:
        status = main([str(arg) for arg in args])
        return _Result(status, capsys.readouterr())

    return run


def test_an_unknown_agent_is_one_line_listing_the_agents(cli):
    result = cli("play", "connect4", "--agent", "nope")
    assert_user_error(result, "unknown agent 'nope'", ", ".join(agents.names()))
    with pytest.raises(ConfigError, match="did you mean 'taxi'"):
        agents.resolve("taxy")


def test_agent_and_checkpoint_together_or_neither_is_one_line(cli, tmp_path):
    for command in (["play", "connect4"], ["move", "connect4"], ["gtp"]):
        both = cli(*command, "--agent", "connect4", "--checkpoint", tmp_path)
        assert_user_error(both, "--checkpoint RUN_DIR or --agent NAME, not both")
        assert_user_error(cli(*command), "give --checkpoint RUN_DIR or --agent NAME", "taxi")
    assert_user_error(cli("eval", tmp_path, "--agent", "taxi"), "not both")
    assert_user_error(cli("eval"), "give RUN_DIR or --agent NAME")
    assert_user_error(cli("gtp", "--agent", "connect4"), "not Go")


def test_eval_of_an_agent_writes_nothing_into_the_package(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _package_files()
    result = cli("eval", "--agent", "taxi", "--episodes", "3")
    assert result.returncode == 0, result
    assert "Taxi-v4: mean return" in result.stdout and "wrote" not in result.stdout
    out = tmp_path / "taxi-eval.json"
    result = cli("eval", "--agent", "taxi", "--episodes", "3", "--out", out)
    assert result.returncode == 0, result
    assert json.loads(out.read_text())["episodes"] == 3
    assert _package_files() == before
    assert list(tmp_path.iterdir()) == [out]


def test_a_corrupt_shipped_file_is_one_error_line(cli, tmp_path, monkeypatch):
    shutil.copytree(agents.resolve("cartpole-ppo"), tmp_path / "cartpole-ppo")
    monkeypatch.setattr(agents, "AGENTS_DIR", tmp_path)
    (tensors,) = (tmp_path / "cartpole-ppo" / "checkpoints").glob("*.safetensors")
    blob = bytearray(tensors.read_bytes())
    blob[-1] ^= 0xFF
    tensors.write_bytes(bytes(blob))
    result = cli("eval", "--agent", "cartpole-ppo", "--episodes", "1")
    assert_user_error(result, "cartpole-ppo", "is corrupt")
    (tmp_path / "cartpole-ppo" / "card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="model card .* is corrupt"):
        agents.card("cartpole-ppo")


def test_pack_keeps_only_what_acting_needs(tmp_path):
    run_dir = tmp_path / "run"
    api.train("ppo", "CartPole-v1", run_dir=run_dir, quiet=True, overrides=[
        "steps=128", "n_envs=2", "n_steps=32", "minibatch_size=32", "n_epochs=1",
        "hidden_size=8", "eval_every=0", "checkpoint_every=128",
    ])  # fmt: skip
    shipped = agents.pack(run_dir, tmp_path / "agent")
    full, _ = checkpoint.load(run_dir / "checkpoints")
    kept, meta = checkpoint.load(shipped / "checkpoints")
    assert {key.split("/")[0] for key in full} > {"policy"} == {key.split("/")[0] for key in kept}
    assert meta["step"] == 128
    policy, _, env = api.load_policy(run_dir)
    packed, _, _ = api.load_policy(shipped)
    observations = [env.observation_space.sample() for _ in range(20)]
    assert [policy(obs) for obs in observations] == [packed(obs) for obs in observations]
    with pytest.raises(ConfigError, match="not empty"):
        agents.pack(run_dir, shipped)


def test_the_shipped_files_stay_small():
    files = [path for path in agents.AGENTS_DIR.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) < 30 * 2**20  # the budget
    for path in agents.AGENTS_DIR.glob("*/**/*.safetensors"):  # weights only, no training state
        arrays, _ = checkpoint.load(path.parent, path.stem)
        assert not [key for key in arrays if key.startswith(agents.TRAINING_ONLY)], path
