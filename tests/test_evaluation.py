"""Tests for evaluation: seeded episodes and GIF recording."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image, ImageSequence

from bellman.envs import make_env
from bellman.errors import ConfigError
from bellman.evaluation import MAX_GIF_FRAMES, evaluate, record_gif, run_episode


@pytest.fixture(autouse=True)
def headless_pygame(monkeypatch):
    """CartPole renders with pygame; no window, no greeting."""
    monkeypatch.setitem(os.environ, "SDL_VIDEODRIVER", "dummy")
    monkeypatch.setitem(os.environ, "PYGAME_HIDE_SUPPORT_PROMPT", "1")


def push_left(_obs) -> int:
    return 0


def test_run_episode_and_evaluate_are_seeded():
    env = make_env("CartPole-v1")
    total, length = run_episode(push_left, env, seed=0)
    assert total == length and 5 <= length <= 20
    summary = evaluate(push_left, env, episodes=3, seed=4)
    assert summary["episodes"] == 3 and summary["seed"] == 4
    assert summary["returns"] == evaluate(push_left, env, episodes=3, seed=4)["returns"]
    assert summary["returns"][0] == run_episode(push_left, env, seed=4)[0]


def test_record_gif_writes_an_animated_gif(tmp_path):
    env = make_env("CartPole-v1", render_mode="rgb_array")
    path = tmp_path / "cartpole.gif"
    result = record_gif(push_left, env, path, seed=0, fps=25)
    expected_return, _ = run_episode(push_left, make_env("CartPole-v1"), seed=0)
    assert result == {
        "frames": result["steps"] + 1,
        "steps": int(expected_return),
        "return": expected_return,
        "path": str(path),
    }
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.is_animated
        assert 1 < gif.n_frames <= result["frames"]
        assert gif.size == (600, 400)
        assert gif.info.get("loop") == 0
        # Identical consecutive frames are stored once with their delays summed: 40 ms a step.
        assert total_duration(gif) == 40 * result["frames"]
    assert [p.name for p in tmp_path.iterdir()] == ["cartpole.gif"]  # no temp file left


def test_record_gif_stops_at_max_frames(tmp_path):
    env = make_env("CartPole-v1", render_mode="rgb_array")
    result = record_gif(push_left, env, tmp_path / "short.gif", max_frames=4)
    assert result["frames"] == 4 and result["steps"] == 3


class Counter(gym.Env):
    """Counts steps up to `length`; renders a tiny frame whose colour encodes the count."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, length: int):
        self.length, self.render_mode, self.t = length, "rgb_array", 0
        self.observation_space = gym.spaces.Discrete(length + 1)
        self.action_space = gym.spaces.Discrete(1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.t, {}

    def step(self, action):
        self.t += 1
        return self.t, 1.0, self.t == self.length, False, {}

    def render(self):
        return np.full((4, 6, 3), (self.t % 256, self.t // 256, 7), dtype=np.uint8)


def total_duration(gif) -> int:
    return sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif))


def frame_steps(gif) -> list[int]:
    """The step each GIF frame shows, decoded from Counter's colours."""
    steps = []
    for frame in ImageSequence.Iterator(gif):
        red, green, _ = frame.convert("RGB").getpixel((0, 0))
        steps.append(red + 256 * green)
    return steps


@pytest.mark.parametrize(
    ("length", "stride", "steps"),
    [
        (300, 1, [*range(301)]),
        (499, 1, [*range(500)]),  # 500 frames: exactly the limit
        (501, 2, [*range(0, 501, 2), 501]),  # every 2nd frame, and the final one off the stride
        (999, 2, [*range(0, 997, 2), 999]),  # the final frame replaces the last strided one
        (1500, 4, [*range(0, 1501, 4)]),
    ],
)
def test_long_episodes_are_subsampled(tmp_path, length, stride, steps):
    path = tmp_path / "long.gif"
    result = record_gif(lambda obs: 0, Counter(length), path, max_frames=5000, fps=50)
    assert result["steps"] == length and result["return"] == float(length)
    with Image.open(path) as gif:
        assert frame_steps(gif) == steps
        assert result["frames"] == gif.n_frames == len(steps) <= MAX_GIF_FRAMES
        assert gif.info["duration"] == 20 * stride  # real-time playback at 50 fps


def test_atari_gif_shows_the_colour_screen(tmp_path):
    from bellman.envs.atari import make_atari_env

    env = make_atari_env("ALE/Pong-v5", training=False, render_mode="rgb_array")
    result = record_gif(lambda obs: 0, env, tmp_path / "pong.gif", max_frames=30)
    assert result["frames"] == 30
    with Image.open(tmp_path / "pong.gif") as gif:
        assert gif.size == (160, 210) and gif.n_frames > 1
        assert len(gif.convert("RGB").getcolors(256)) > 3


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("out.png", "must end in .gif"), ("missing/out.gif", "does not exist"), ("out", ".gif")],
)
def test_record_gif_rejects_bad_paths(tmp_path, name, fragment):
    env = make_env("CartPole-v1", render_mode="rgb_array")
    with pytest.raises(ConfigError, match=fragment) as error:
        record_gif(push_left, env, tmp_path / name)
    assert name.split("/")[0] in str(error.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("render_mode", [None, "ansi"])
def test_record_gif_needs_rgb_array_rendering(tmp_path, render_mode):
    env = gym.make("FrozenLake-v1", render_mode=render_mode)
    with pytest.raises(ConfigError, match="render_mode='rgb_array'"):
        record_gif(push_left, env, tmp_path / "out.gif")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("field", "value"), [("max_frames", 1), ("fps", 0), ("fps", 2.5)])
def test_record_gif_rejects_bad_numbers(tmp_path, field, value):
    env = make_env("CartPole-v1", render_mode="rgb_array")
    with pytest.raises(ConfigError, match=field):
        record_gif(push_left, env, tmp_path / "out.gif", **{field: value})


# ---- evaluation during training -----------------------------------------------------------
def _training_config(**values):
    from types import SimpleNamespace

    defaults = {"eval_every": 100, "eval_episodes": 3, "stop_when_solved": False, "seed": 2,
                "env": "CartPole-v1"}  # fmt: skip
    return SimpleNamespace(**{**defaults, **values})


def test_training_evaluation_runs_when_due_with_the_same_episodes_every_time():
    from bellman.evaluation import TrainingEvaluation

    made = []
    evaluation = TrainingEvaluation(_training_config(), lambda: made.append(1) or make_env(
        "CartPole-v1"))  # fmt: skip
    assert made == [1]
    assert not evaluation.due(0, 99) and evaluation.due(99, 100) and evaluation.due(150, 250)
    assert not evaluation.due(200, 299)
    first = evaluation.run(push_left)
    # eval_episodes episodes from seeds 1_000_000 + 1000 seed + i: the same at every evaluation
    expected = evaluate(push_left, make_env("CartPole-v1"), episodes=3, seed=1_002_000)["mean"]
    assert first == expected == evaluation.run(push_left)
    columns = evaluation.columns()
    assert columns["eval_return_mean"] == first and columns["eval_seconds"] > 0
    assert not evaluation.solved()  # stop_when_solved is off
    evaluation.due(300, 301)  # a step without an evaluation: NaN, the same columns
    assert np.isnan(evaluation.columns()["eval_return_mean"])
    evaluation.close()


def test_training_evaluation_off_and_solved():
    from bellman.evaluation import TrainingEvaluation

    off = TrainingEvaluation(_training_config(eval_every=0), lambda: pytest.fail("no env"))
    assert not off.due(0, 10**6) and off.columns() == {} and not off.solved()
    solving = TrainingEvaluation(
        _training_config(stop_when_solved=True, eval_episodes=1), lambda: make_env("CartPole-v1")
    )
    assert solving.threshold == 475.0
    solving.due(0, 100)
    solving.run(lambda obs: int(obs[2] + obs[3] > 0))  # a pole-balancing rule: 500 steps
    assert solving.solved()
    assert solving.solved_note(100) == (
        "solved: evaluation mean 500 >= reward threshold 475 of CartPole-v1 at step 100"
    )
    with pytest.raises(ConfigError, match="gives 'Pendulum-v1' no reward_threshold"):
        TrainingEvaluation(_training_config(stop_when_solved=True, env="Pendulum-v1"),
                           lambda: make_env("Pendulum-v1"))  # fmt: skip
