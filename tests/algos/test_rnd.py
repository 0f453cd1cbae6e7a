"""RND on PPO: the intrinsic-return normaliser and the two value streams against numbers worked
by hand, the observation normalisation, novelty (an unseen state has the larger error), the
fixed target and the trained predictor, Deep Sea's rules, exact resume and crafted checkpoints."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import bellman
from bellman import config as configs
from bellman.algos import ppo
from bellman.algos.onpolicy import Rollout, estimate_advantages
from bellman.algos.ppo import PPOConfig
from bellman.algos.rnd import (
    IntrinsicBatch,
    IntrinsicReturnFilter,
    RandomNetworkDistillation,
    non_episodic_advantages,
    normalize_obs,
    rnd_obs_statistics_update,
)
from bellman.envs import RunningMeanStd
from bellman.envs.deep_sea import DEEP_SEA_ID, DeepSeaEnv
from bellman.errors import CheckpointError
from tests.conftest import _final_state

torch.set_num_threads(1)


# ---- the pieces ---------------------------------------------------------------------------
def test_intrinsic_rewards_are_divided_by_the_running_std_of_the_intrinsic_returns():
    # gamma_I = 0.5, one env, i = 1, 2, 4: the running returns are u = 1, 2.5, 5.25.
    # gymnasium's statistics start at mean 0, var 1, count 1e-4 and take the batch of three u
    # (mean 8.75 / 3, population variance 9.2917 / 3 = 3.09722) by the parallel-variance rule.
    rewards = np.array([[1.0], [2.0], [4.0]])
    filtered = IntrinsicReturnFilter(n_envs=1, gamma=0.5)
    normalised = filtered.normalize(rewards)
    u = np.array([1.0, 2.5, 5.25])
    n_a, n_b, delta = 1e-4, 3.0, u.mean() - 0.0
    var = (1.0 * n_a + u.var() * n_b + delta**2 * n_a * n_b / (n_a + n_b)) / (n_a + n_b)
    assert filtered.rms.var == pytest.approx(var, rel=1e-12)
    assert var == pytest.approx(3.09744, rel=1e-5)  # 3.09722 and the prior's (1 + 8.5) 1e-4 / 3
    np.testing.assert_allclose(normalised[:, 0], rewards[:, 0] / math.sqrt(var), rtol=1e-6)
    # the running return carries on into the next rollout (non-episodic): u = 0.5 * 5.25 + 0
    filtered.normalize(np.array([[0.0]]))
    assert filtered.returns[0] == pytest.approx(2.625)


def test_intrinsic_returns_run_through_episode_ends_and_extrinsic_ones_stop():
    # One env, T = 3, an episode terminating at t = 1; gamma_I = 0.5, lambda = 1, V = 0.5
    # everywhere and 1 after the rollout. Intrinsic (no episode ends): R_2 = 3 + 0.5 * 1 = 3.5,
    # R_1 = 2 + 0.5 * 3.5 = 3.75, R_0 = 1 + 0.5 * 3.75 = 2.875. Extrinsic with gamma_E = 0.9
    # and the same numbers stops at the termination: R_1 = 2, R_0 = 1 + 0.9 * 2 = 2.8,
    # R_2 = 3 + 0.9 * 1 = 3.9.
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.full((3, 1), 0.5)
    intrinsic, returns = non_episodic_advantages(rewards, values, torch.tensor([1.0]), 0.5, 1.0)
    torch.testing.assert_close(returns[:, 0], torch.tensor([2.875, 3.75, 3.5]))
    torch.testing.assert_close(intrinsic, returns - values)
    terminated = torch.tensor([[False], [True], [False]])
    rollout = Rollout(
        obs=torch.zeros(3, 1, 1), actions=torch.zeros(3, 1), log_probs=torch.zeros(3, 1),
        values=values, rewards=rewards, terminated=terminated,
        truncated=torch.zeros(3, 1, dtype=torch.bool), final_values=torch.zeros(3, 1),
    )  # fmt: skip
    _, extrinsic_returns = estimate_advantages(rollout, torch.tensor([1.0]), 0.9, 1.0)
    torch.testing.assert_close(extrinsic_returns[:, 0], torch.tensor([2.8, 2.0, 3.9]))


def test_rnd_observations_are_standardised_and_clipped_to_five():
    rms = RunningMeanStd(shape=(2,))
    rms.mean, rms.var = np.array([1.0, 0.0]), np.array([4.0, 1e-4])
    x = normalize_obs(torch.tensor([[3.0, 1.0], [-1.0, -0.0001]]), rms)
    torch.testing.assert_close(x, torch.tensor([[1.0, 5.0], [-1.0, -0.01]]), atol=1e-6, rtol=0)


def test_observation_statistics_from_tensors_equal_gymnasiums_update():
    # The batch's moments are taken where the batch lies (a GPU rollout stays there); the result
    # is gymnasium's RunningMeanStd.update of the same numbers, over two batches.
    generator = np.random.default_rng(0)
    batches = [generator.normal(3.0, 2.0, (10, 2, 3)), generator.normal(-1.0, 0.5, (7, 2, 3))]
    ours, theirs = RunningMeanStd(shape=(2, 3)), RunningMeanStd(shape=(2, 3))
    for batch in batches:
        rnd_obs_statistics_update(ours, torch.as_tensor(batch, dtype=torch.float32))
        theirs.update(batch.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(ours.mean, theirs.mean, rtol=1e-12)
    np.testing.assert_allclose(ours.var, theirs.var, rtol=1e-12)
    assert ours.count == theirs.count == pytest.approx(17 + 1e-4)


def _rnd(overrides=()):
    config, _ = configs.resolve(
        PPOConfig, "ppo", DEEP_SEA_ID, overrides=["intrinsic=rnd", "n_envs=2", *overrides]
    )
    return config, RandomNetworkDistillation(config, DeepSeaEnv().observation_space, "cpu")


def test_a_state_the_predictor_has_seen_is_less_novel_than_one_it_has_not():
    torch.manual_seed(0)
    config, rnd = _rnd(["minibatch_size=32", "rnd_update_proportion=1", "rnd_epochs=100",
                        "learning_rate=1e-3"])  # fmt: skip
    env = DeepSeaEnv()
    seen, _ = env.reset()
    env.step(0)
    unseen = env.step(1)[0]  # a cell of row 2
    visits = torch.as_tensor(np.stack([seen] * 32))
    rnd.obs_rms.update(np.stack([seen, unseen] * 16))
    before = rnd.intrinsic_reward(torch.as_tensor(np.stack([seen, unseen])))
    stats = rnd.update(visits, IntrinsicBatch(visits, torch.zeros(32), {}))
    after = rnd.intrinsic_reward(torch.as_tensor(np.stack([seen, unseen])))
    assert after[0] < 0.05 * before[0]  # the predictor learnt the visited cell
    assert after[1] > 10 * after[0]  # the unvisited one is still novel
    assert stats["rnd_loss"] > 0 and math.isfinite(stats["intrinsic_value_loss"])


# ---- Deep Sea -----------------------------------------------------------------------------
def test_deep_sea_pays_only_for_going_right_all_the_way():
    env = DeepSeaEnv(size=5, mapping_seed=3)
    right = env.right_action
    obs, _ = env.reset(seed=0)
    assert obs.shape == (25,) and obs[0] == 1.0
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, done, truncated, _ = env.step(int(right[env.row, env.column]))
        total, steps = total + reward, steps + 1
    assert steps == 4 and not truncated and obs[24] == 1.0
    assert total == pytest.approx(1.0 - 4 * 0.01 / 5)
    env.reset()
    env.step(1 - int(right[0, 0]))  # one step left (the wall keeps it in column 0)
    assert env.column == 0
    for _ in range(3):
        *_, reward, done, _, _ = env.step(int(right[env.row, env.column]))
    assert done and env.column == 3 and reward == pytest.approx(-0.01 / 5)
    assert not np.array_equal(right, DeepSeaEnv(size=5, mapping_seed=4).right_action)
    assert gym.make(DEEP_SEA_ID).unwrapped.size == 20


# ---- the run ------------------------------------------------------------------------------
SHORT = ["steps=1024", "n_envs=2", "n_steps=128", "minibatch_size=64", "n_epochs=2",
         "hidden_size=16", "intrinsic=rnd", "log_every=256"]  # fmt: skip


def test_the_target_stays_fixed_and_the_predictor_and_intrinsic_value_learn(tmp_path):
    config, _ = configs.resolve(PPOConfig, "ppo", "CartPole-v1", overrides=[*SHORT, "seed=3"])
    envs = ppo.make_train_env(config)
    initial = ppo.make_learner(config, envs).checkpoint()[0]
    envs.close()
    run = bellman.train("ppo", "CartPole-v1", overrides=[*SHORT, "seed=3"],
                        run_dir=tmp_path / "run", quiet=True)  # fmt: skip
    arrays = load_file(run.dir / "checkpoints" / "step-1024.safetensors")
    rnd_keys = [k for k in initial if k.startswith("rnd/")]
    assert {k for k in arrays if k.startswith("rnd/")} == set(rnd_keys)
    for key in rnd_keys:
        if key.startswith("rnd/target/"):
            np.testing.assert_array_equal(arrays[key], initial[key], err_msg=key)
        elif key.startswith(("rnd/predictor/", "rnd/value/")):
            assert not np.array_equal(arrays[key], initial[key]), key
    assert arrays["rnd/obs_count"][0] > 1024
    rows = (run.dir / "metrics.csv").read_text().splitlines()
    assert {"intrinsic_reward", "rnd_loss", "intrinsic_value_loss"} <= set(rows[0].split(","))


def test_an_rnd_run_resumed_from_a_checkpoint_is_bit_for_bit_the_run_that_never_stopped(tmp_path):
    # In-process (the SIGKILL path of resume is tested for PPO itself): one run of 1,024 steps,
    # and one that stops at its checkpoint of step 512 and is resumed to 1,024. Both reset their
    # episodes at step 512 (a checkpoint), so every array of the final checkpoints, RND's
    # networks, Adam, statistics and running returns included, and the logs must be the same.
    # (anneal off: CartPole's tuned schedules would depend on the run's target of steps)
    overrides = [*SHORT, "seed=2", "normalize_observations=true", "checkpoint_every=256",
                 "n_epochs=1", "rnd_epochs=1", "anneal=false"]  # fmt: skip
    bellman.train("ppo", "CartPole-v1", overrides=overrides, run_dir=tmp_path / "one-go",
                  quiet=True)  # fmt: skip
    bellman.train("ppo", "CartPole-v1", overrides=[*overrides, "steps=512"],
                  run_dir=tmp_path / "stopped", quiet=True)  # fmt: skip
    bellman.resume(tmp_path / "stopped", steps=1024, quiet=True)
    expected, resumed = (_final_state(tmp_path / name, 1024) for name in ("one-go", "stopped"))
    assert set(resumed[0]) == set(expected[0])
    assert {"rnd/running_returns", "rnd/optim/0/exp_avg", "rnd/target/head.0.weight"} <= set(
        expected[0]
    )
    for key, value in expected[0].items():
        np.testing.assert_array_equal(resumed[0][key], value, err_msg=key)
    assert resumed[1] == expected[1] and resumed[2] == expected[2]


@pytest.mark.parametrize(
    ("key", "change", "fragment"),
    [
        ("rnd/obs_var", lambda a: -np.ones_like(a), "not running means and variances"),
        ("rnd/return_moments", lambda a: np.array([0.0, 1.0, 0.0]), "return moments"),
        ("rnd/predictor/head.0.weight", lambda a: a.astype(np.float16), "dtype float16"),
        ("rnd/running_returns", lambda a: a[:1], "shape (1,)"),
    ],
)
def test_crafted_rnd_arrays_are_refused_before_anything_is_loaded(key, change, fragment):
    config, _ = configs.resolve(PPOConfig, "ppo", "CartPole-v1", overrides=SHORT)
    envs = ppo.make_train_env(config)
    learner = ppo.make_learner(config, envs)
    envs.close()
    arrays, state = learner.checkpoint()
    arrays[key] = change(arrays[key])
    before = {k: v.copy() for k, v in learner.checkpoint()[0].items()}
    with pytest.raises(CheckpointError) as error:
        learner.restore(arrays, {"step": 512, "state": state})
    assert fragment in str(error.value)
    after = learner.checkpoint()[0]
    for name, value in before.items():  # nothing was loaded, the policy's weights included
        np.testing.assert_array_equal(after[name], value, err_msg=name)
