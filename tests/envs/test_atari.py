"""Tests for the Atari preprocessing: DeepMind's phi, life loss, reward clipping, FIRE reset."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from bellman.envs import env_catalog, make_env
from bellman.envs.atari import is_atari, make_atari_env, register_atari
from bellman.errors import ConfigError

NOOP, FIRE = 0, 1


def ale(env: gym.Env):
    return env.unwrapped.ale


def breakout_tracker(env: gym.Env, offset: int = 10, dead_zone: int = 2):
    """A policy that serves the ball and keeps the paddle under it, reading Breakout's RAM.

    RAM[99] is the ball's x, RAM[101] its y (0 while no ball is in play), RAM[72] the paddle's x.
    It clears the 1-point rows and reaches the 4- and 7-point rows within a few hundred steps.
    """

    def policy(_obs) -> int:
        ram = ale(env).getRAM()
        ball_x, ball_y, paddle_x = int(ram[99]), int(ram[101]), int(ram[72])
        if ball_y == 0:
            return FIRE
        gap = ball_x - (paddle_x + offset)
        return 2 if gap > dead_zone else 3 if gap < -dead_zone else NOOP

    return policy


@pytest.mark.parametrize("game", ["ALE/Breakout-v5", "ALE/Pong-v5"])
@pytest.mark.parametrize("training", [True, False])
def test_observation_is_four_stacked_84x84_uint8_frames(game, training):
    env = make_atari_env(game, training=training)
    assert env.observation_space.shape == (4, 84, 84)
    assert env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert obs in env.observation_space
    # DeepMind-style padding: after reset the stack is four copies of the first frame.
    for frame in obs[1:]:
        np.testing.assert_array_equal(frame, obs[0])
    assert obs.any()
    # The stack rolls: the newest frame is last, the others shift one place towards the front.
    previous = obs
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, *_ = env.step(int(rng.integers(env.action_space.n)))
        np.testing.assert_array_equal(obs[:3], previous[1:])
        previous = obs
    assert not np.array_equal(obs[0], obs[3])


def test_frame_stack_size_is_configurable():
    env = make_atari_env("ALE/Pong-v5", training=False, frame_stack=2)
    assert env.reset(seed=0)[0].shape == (2, 84, 84)


def test_training_clips_rewards_but_reports_the_raw_game_score():
    env = make_atari_env("ALE/Breakout-v5", training=True)
    env.reset(seed=0)
    policy = breakout_tracker(env)
    raw_total, clipped_total, big_reward_seen, steps = 0.0, 0.0, False, 0
    while True:
        # Play well until a 4- or 7-point brick falls, then stand still to lose the game fast.
        _, reward, terminated, truncated, info = env.step(
            policy(None) if not big_reward_seen else FIRE
        )
        steps += 1
        assert steps < 5000, "the game did not end"
        assert reward in (-1.0, 0.0, 1.0)
        assert reward == np.sign(info["raw_reward"])
        raw_total += info["raw_reward"]
        clipped_total += reward
        big_reward_seen |= info["raw_reward"] > 1
        if terminated or truncated:
            if info["game_over"]:
                break
            assert "episode" not in info
            env.reset()
    assert big_reward_seen
    assert info["episode"]["r"] == raw_total > clipped_total
    assert info["episode"]["l"] >= steps


def test_life_loss_ends_the_learners_episode_but_not_the_game():
    env = make_atari_env("ALE/Breakout-v5", training=True)
    _, info = env.reset(seed=0)
    assert info["lives"] == ale(env).lives() == 5
    learner_steps, episodes, frame_number = 0, 0, info["episode_frame_number"]
    while True:
        # NOOP only: the ball is served by the FIRE reset and missed by the still paddle.
        _, _, terminated, truncated, info = env.step(NOOP)
        learner_steps += 1
        assert learner_steps < 1000, "no life was lost: was the ball served?"
        if not (terminated or truncated):
            continue
        episodes += 1
        lives = ale(env).lives()
        assert not truncated and lives == 5 - episodes == info["lives"]
        if info["game_over"]:
            break
        assert "episode" not in info and not env.get_wrapper_attr("was_real_done")
        _, info = env.reset()
        # The game goes on: the same number of lives, the emulator's frame counter keeps running.
        assert ale(env).lives() == lives == info["lives"]
        assert info["episode_frame_number"] > frame_number
        frame_number = info["episode_frame_number"]
    assert episodes == 5 and env.get_wrapper_attr("was_real_done")
    # One game: every learner step, plus FIRE and action 2 after each of the 5 resets, plus the
    # no-op that continues the game after each of the 4 lives lost before the last.
    assert info["episode"]["l"] == learner_steps + 2 * 5 + 4
    assert info["episode"]["r"] == 0.0
    _, info = env.reset()
    assert ale(env).lives() == 5 and info["episode_frame_number"] < frame_number


def test_evaluation_env_plays_whole_games_with_raw_rewards():
    env = make_atari_env("ALE/Breakout-v5", training=False)
    env.reset(seed=1)
    policy = breakout_tracker(env)
    rewards, lives_seen = [0.0], set()
    for _ in range(5000):
        # Track the ball until a 4- or 7-point brick falls, then serve and miss.
        action = policy(None) if max(rewards) <= 1 else FIRE
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        lives_seen.add(ale(env).lives())
        assert "game_over" not in info
        assert reward == info["raw_reward"]
        if terminated or truncated:
            break
    assert terminated and ale(env).lives() == 0
    assert lives_seen >= {1, 2, 3, 4}
    assert info["episode"] == pytest.approx(
        {"r": sum(rewards), "l": len(rewards) - 1 + 2, "t": info["episode"]["t"]}
    )
    assert max(rewards) > 1


def test_fire_reset_serves_the_ball():
    assert "FIRE" in make_env("ALE/Breakout-v5").unwrapped.get_action_meanings()

    def lives_after_noops(env):
        env.reset(seed=0)
        for _ in range(100):
            env.step(NOOP)
        return ale(env).lives()

    # Without FIRE, Breakout never serves: a still paddle loses nothing.
    raw = gym.wrappers.AtariPreprocessing(make_env("ALE/Breakout-v5", frameskip=1))
    assert lives_after_noops(raw) == 5
    # With the FIRE reset the ball is in play and the still paddle misses it.
    assert lives_after_noops(make_atari_env("ALE/Breakout-v5", training=False)) < 5


def test_fire_reset_presses_fire_then_action_2_after_the_noops():
    env = make_atari_env("ALE/Pong-v5", training=False, noop_max=0, repeat_action_probability=0.0)
    _, info = env.reset(seed=0)
    assert env.get_wrapper_attr("presses") == (1, 2)
    # Two agent steps of four frames each, no no-ops.
    assert info["episode_frame_number"] == 8


def test_noop_max_randomises_the_start():
    def start_frames(noop_max):
        env = make_atari_env("ALE/Breakout-v5", training=True, noop_max=noop_max)
        # (A seeded reset reloads the ROM in ale-py 0.12: about 0.2 s each.)
        return [env.reset(seed=seed)[1]["episode_frame_number"] - 8 for seed in range(6)]

    starts = start_frames(30)
    assert all(1 <= noops <= 30 for noops in starts) and len(set(starts)) >= 3
    assert start_frames(0) == [0] * 6


def test_seeded_games_are_reproducible():
    def play(seed):
        env = make_atari_env("ALE/Pong-v5", training=True)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        frames = [obs]
        for _ in range(50):
            frames.append(env.step(int(rng.integers(env.action_space.n)))[0])
        return np.stack(frames)

    np.testing.assert_array_equal(play(3), play(3))


def test_render_is_the_full_colour_screen():
    env = make_atari_env("ALE/Pong-v5", training=False, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"env_id": "CartPole-v1"}, "not an Atari id"),
        ({"env_id": "ALE/Breakoutt-v5"}, "did you mean 'ALE/Breakout-v5'"),
        ({"frame_stack": 0}, "frame_stack"),
        ({"noop_max": -1}, "noop_max"),
        ({"repeat_action_probability": 1.5}, "repeat_action_probability"),
    ],
)
def test_make_atari_env_rejects_bad_arguments(kwargs, fragment):
    kwargs = {"env_id": "ALE/Pong-v5", "training": True, **kwargs}
    with pytest.raises(ConfigError, match=fragment):
        make_atari_env(**kwargs)


def test_sticky_actions_default_and_override():
    assert make_env("ALE/Pong-v5").spec.kwargs["repeat_action_probability"] == 0.25
    env = make_atari_env("ALE/Pong-v5", training=True, repeat_action_probability=0.0)
    assert env.spec.kwargs["repeat_action_probability"] == 0.0
    assert env.spec.kwargs["frameskip"] == 1


def test_make_env_registers_ale_and_suggests_close_ids():
    assert is_atari("ALE/Breakout-v5") and not is_atari("Breakout-v4")
    env = make_env("ALE/Breakout-v5")
    assert env.spec.id == "ALE/Breakout-v5"
    with pytest.raises(ConfigError, match="did you mean 'ALE/Breakout-v5'"):
        make_env("ALE/Breakoutt-v5")
    with pytest.raises(ConfigError, match="ALE/Pong-v5"):
        make_env("ALE/Pong-v4")
    with pytest.raises(ConfigError, match="did you mean 'ALE/Pong-v5'"):
        make_env("Pong-v5")
    # A typo of a gymnasium id is not answered with a list of Atari games.
    with pytest.raises(ConfigError, match="did you mean 'Taxi-v4'") as error:
        make_env("Taxii-v4")
    assert "ALE/" not in str(error.value)


def test_catalog_lists_atari_games_once():
    register_atari()
    rows = env_catalog()
    atari = [env_id for env_id, family, _ in rows if family == "atari"]
    assert {"ALE/Pong-v5", "ALE/Breakout-v5"} <= set(atari)
    assert all(env_id.startswith("ALE/") for env_id in atari)
    ids = [env_id for env_id, *_ in rows]
    assert len(ids) == len(set(ids))
    assert "PongNoFrameskip-v4" not in ids and "CartPole-v1" in ids


def test_importing_bellman_does_not_load_the_emulator():
    code = "import sys, bellman; assert 'ale_py' not in sys.modules, 'ale_py imported'"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
