"""DQN on Atari: the shipped Nature configs through the real CLI, and frame-once replay memory.

(a) A short Pong run through `bellman train` and `bellman eval` subprocesses: the tuned values
    of `bellman/configs/dqn-ALE-Pong-v5.toml` reach the run's config.toml, and evaluation plays a
    whole game with raw scores.
(b) A short Breakout run through `dqn.train`: the replay memory holds single 84x84 frames, and
    every stack it rebuilds for a sampled transition is exactly the FrameStackObservation stack
    the environment produced (episode starts and life losses included, after the ring wrapped).
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from bellman import checkpoint
from bellman import config as configs
from bellman.algos import dqn
from bellman.nets import BF16_MIN_BATCH
from bellman.run import Run

torch.set_num_threads(1)

PONG = "ALE/Pong-v5"
BREAKOUT = "ALE/Breakout-v5"


def shipped(env_id: str) -> dict:
    values, _ = configs.tuned_defaults("dqn", env_id)
    return values


@pytest.mark.parametrize("env_id", [PONG, BREAKOUT])
def test_shipped_atari_configs_are_nature_dqn(env_id):
    values = shipped(env_id)
    assert set(values) <= set(configs.field_types(dqn.Config))  # the loader rejects others
    config, sources = configs.resolve(dqn.Config, "dqn", env_id)
    assert f"bellman/configs/dqn-{env_id.replace('/', '-')}.toml" in sources
    # Extended Data Table 1 of Mnih et al. (2015), in env (agent) steps.
    assert (config.batch_size, config.buffer_size, config.frame_stack) == (32, 1_000_000, 4)
    assert config.target_update_interval == 10_000 * config.train_frequency == 40_000
    assert (config.gamma, config.train_frequency, config.learning_starts) == (0.99, 4, 50_000)
    assert (config.epsilon, config.epsilon_end, config.eval_epsilon) == (1.0, 0.1, 0.05)
    assert config.epsilon_fraction * config.steps == 1_000_000
    assert config.save_replay is False
    assert shipped(PONG) == shipped(BREAKOUT)  # Nature used one set of values for every game


def test_pong_cli_train_then_eval_plays_a_whole_game(bellman_here, tmp_path: Path):
    run_dir = tmp_path / "run"
    overrides = {
        "learning_starts": 200,
        "buffer_size": 2000,
        "train_frequency": 4,
        "eval_every": 0,
    }
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    started = time.perf_counter()
    result = bellman_here(
        "train", "dqn", "--env", PONG, "--steps", "400", *sets, "--run-dir", run_dir, "--quiet"
    )
    train_seconds = time.perf_counter() - started
    assert result.returncode == 0, result
    assert "trained dqn on ALE/Pong-v5 for 400 steps" in result.stdout

    saved = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    assert saved["algo"] == "dqn" and saved["env"] == PONG
    assert saved["frame_stack"] == 4 and saved["network"] == "auto"
    assert saved["steps"] == 400
    for key, value in overrides.items():
        assert saved[key] == value
    for key, value in shipped(PONG).items():  # everything else came from the shipped file
        if key not in overrides and key != "steps":
            assert saved[key] == value, key
    assert saved["target_update_interval"] == 40_000 and saved["save_replay"] is False

    arrays, meta = checkpoint.load(run_dir / "checkpoints", algo="dqn")
    assert meta["step"] == 400
    assert not any(name.startswith("replay/") for name in arrays)  # save_replay = false
    assert arrays["q/trunk.convs.0.weight"].shape == (32, 4, 8, 8)  # the Nature CNN
    rows = (run_dir / "metrics.csv").read_text(encoding="utf-8").splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(","), strict=True))
    assert int(last["step"]) == 400
    assert int(last["updates"]) == (400 - 200) // 4 + 1  # at steps 200, 204, ..., 400

    started = time.perf_counter()
    result = bellman_here("eval", run_dir, "--episodes", "1")
    eval_seconds = time.perf_counter() - started
    assert result.returncode == 0, result
    evaluation = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    score = evaluation["mean"]
    assert f"ALE/Pong-v5: mean return {score:.3f}" in result.stdout
    # A raw Pong score: the whole game to 21 points, not one point's clipped -1.
    assert -21 <= score <= 21 and score == int(score)
    assert score <= -10  # an untrained agent loses almost every point
    assert evaluation["length_mean"] > 500  # agent steps of a whole game
    print(f"pong: train {train_seconds:.1f} s, eval of one game {eval_seconds:.1f} s")


class RecordObservations(gym.vector.VectorWrapper):
    """Keeps every observation of env 0 in the order the replay memory stores them: the reset
    observation, then per step the step's observation, or for a step that ended the episode
    its final observation followed by the next episode's first one."""

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        self.seen: list[np.ndarray] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.seen.append(obs[0].copy())
        return obs, info

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        if infos.get("_final_obs", np.zeros(1, dtype=bool))[0]:
            self.seen.append(np.array(infos["final_obs"][0]))
        self.seen.append(obs[0].copy())
        return obs, rewards, terminated, truncated, infos


def test_breakout_replay_stores_single_frames_and_rebuilds_the_envs_stacks(tmp_path: Path):
    config, _ = configs.resolve(
        dqn.Config,
        "dqn",
        BREAKOUT,
        overrides=[
            "steps=700",
            "learning_starts=100",
            "buffer_size=512",  # the ring wraps: 700 steps push > 700 entries
            "batch_size=8",
            "eval_every=0",
            "log_every=100",
            "checkpoint_every=1000000",
            "device=cpu",
        ],
    )
    # The learner as DQN builds it: one uint8 84x84 frame per entry, not a [4, 84, 84] stack.
    envs = dqn.make_train_env(config)
    learner = dqn.DQNLearner(config, envs)
    frames = learner.replay_memory.frames
    assert frames.ndim == 4 and frames.shape[-2:] == (84, 84) and frames.dtype == np.uint8
    assert frames.shape == (1, 512, 84, 84)
    envs.close()

    # A short training run, recording what the environment showed the agent.
    envs = RecordObservations(dqn.make_train_env(config))
    run = Run.create("dqn", config, tmp_path / "run", quiet=True)
    try:
        learner = dqn.train(config, envs, run)
    finally:
        envs.close()
    assert learner.step == 700 and learner.updates == (700 - 100) // 4 + 1
    memory, seen = learner.replay_memory, envs.seen
    assert memory.frames.shape == (1, 512, 84, 84)
    pushes = len(seen)
    assert pushes > memory.ring  # the ring wrapped

    def push_at(entry: int) -> int:
        """The index in `seen` of the observation now held by ring entry `entry`."""
        return pushes - 1 - (pushes - 1 - entry) % memory.ring

    # Each entry holds the newest frame of the observation pushed there.
    for entry in range(memory.ring):
        np.testing.assert_array_equal(memory.frames[0, entry], seen[push_at(entry)][-1])

    batch = memory.sample(2048, np.random.default_rng(0))
    assert batch.obs.shape == batch.next_obs.shape == (2048, 4, 84, 84)
    for i, entry in enumerate(batch.indices):
        j = push_at(int(entry))
        obs_ok = np.array_equal(batch.obs[i], seen[j])
        next_ok = np.array_equal(batch.next_obs[i], seen[j + 1])
        assert obs_ok and next_ok, f"entry {entry}: obs equal {obs_ok}, next_obs equal {next_ok}"
        # Consecutive stacks share 3 frames: phi_j+1 is phi_j shifted by the new frame.
        shared_ok = np.array_equal(batch.next_obs[i][:3], batch.obs[i][1:])
        assert shared_ok, f"entry {entry}: next_obs[:3] != obs[1:]"

    # The sample covered the hard cases: episode starts (a stack padded with its first frame)
    # and life losses (terminated: no bootstrap), and nearly every sampleable transition.
    padded = [np.array_equal(o[0], o[1]) and np.array_equal(o[1], o[3]) for o in batch.obs]
    assert any(padded)
    assert (batch.discounts == 0).any()
    assert len(set(batch.indices.tolist())) > 0.9 * len(memory)


def test_many_envs_on_the_backend_keep_the_replay_ratio(tmp_path: Path):
    """4 games on ale-py's backend feed one replay memory; a gradient step every 4 env steps
    summed over the envs (the Nature ratio), with double, dueling, prioritized and 3-step."""
    switches = ["dueling=true", "prioritized=true", "double_dqn=true", "n_step=3"]
    from bellman.envs.atari_vector import AtariVector

    config, _ = configs.resolve(
        dqn.Config, "dqn", BREAKOUT,
        overrides=["steps=128", "n_envs=4", "learning_starts=32", "buffer_size=800",
                   "batch_size=8", "eval_every=0", "log_every=64", "checkpoint_every=1000",
                   "device=cpu", *switches],
    )  # fmt: skip
    envs = dqn.make_train_env(config)
    assert isinstance(envs, AtariVector) and envs.num_envs == 4
    run = Run.create("dqn", config, tmp_path / "run", quiet=True)
    try:
        learner = dqn.train(config, envs, run)
    finally:
        envs.close()
    assert learner.step == 128
    assert learner.updates == (128 - 32) // 4 + 1  # at steps 32, 36, ..., 128
    # each env: phi_1 and 32 steps, and one more entry per episode that ended
    assert (learner.replay_memory.stored >= 128 // 4 + 1).all()
    assert len(learner.replay_memory) > 64


def test_bf16_autocast_q_values_stay_close_and_each_network_keeps_its_own_weights():
    """`bf16_autocast` (nets.fast.bf16_forward) against the plain float32 path on Breakout
    frames: float32 outputs within bfloat16's rounding, not equal (bf16 really ran); Q^ still
    computes with its own weights after Q moves (it was wrapped after its deep copy)."""
    learners = {}
    for switch in ("false", "true"):
        config, _ = configs.resolve(
            dqn.Config, "dqn", BREAKOUT,
            overrides=["buffer_size=64", "batch_size=8", "device=cpu", f"bf16_autocast={switch}"],
        )  # fmt: skip
        envs = dqn.make_train_env(config)
        learners[switch] = dqn.DQNLearner(config, envs)
        obs, _ = envs.reset(seed=[3])
        envs.close()
    # a minibatch of BF16_MIN_BATCH frames (the frame, mirrored, each 4 times)
    obs = torch.as_tensor(np.concatenate([obs, np.flip(obs, axis=-1)] * 4))
    assert len(obs) == BF16_MIN_BATCH
    plain, fast = learners["false"], learners["true"]
    with torch.no_grad():
        q, q16 = plain.q_network(obs), fast.q_network(obs)
        assert q16.dtype == torch.float32 and not torch.equal(q16, q)
        assert torch.allclose(q16, q, atol=0.02), (q16 - q).abs().max()
        # fewer frames (acting with one env) stay float32 on the CPU: float32's Q exactly
        assert torch.equal(fast.q_network(obs[:1]), plain.q_network(obs[:1]))
        before = fast.target_network(obs)
        for parameter in fast.q_network.parameters():
            parameter.add_(1.0)
        assert torch.equal(fast.target_network(obs), before)
        assert not torch.allclose(fast.q_network(obs), q16, atol=0.02)
