"""PPO's GPU path, checked on the CPU: the rollout kept on the device (`device_rollout`) gives
the update the host rollout gives, the bf16 autocast switch keeps float32 outputs, and acting
overlapped with env stepping (`env_overlap`) gives the synchronous loop's rollout."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import bellman
from bellman import config as configs
from bellman.algos import onpolicy
from bellman.algos.ppo import PPOConfig
from bellman.errors import ConfigError
from bellman.nets import BF16_MIN_BATCH

torch.set_num_threads(1)
BREAKOUT = "ALE/Breakout-v5"
TINY = ["n_envs=2", "n_steps=16", "minibatch_size=16", "n_epochs=2", "steps=64", "eval_every=0",
        "log_every=32", "checkpoint_every=64", "device=cpu", "seed=3"]  # fmt: skip


def final_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    return load_file(run_dir / "checkpoints" / "step-64.safetensors")


def test_the_device_rollout_gives_the_update_of_the_host_rollout(tmp_path):
    """Two iterations from one seed: the same actions (so the same games) and the same weights,
    up to float rounding, whether the rollout lives in numpy arrays or in device tensors."""
    host = bellman.train("ppo", BREAKOUT, overrides=TINY, run_dir=tmp_path / "host", quiet=True)
    device = bellman.train("ppo", BREAKOUT, overrides=[*TINY, "device_rollout=true"],
                           run_dir=tmp_path / "device", quiet=True)  # fmt: skip
    expected, found = final_arrays(host.dir), final_arrays(device.dir)
    assert set(found) == set(expected)
    for key, value in expected.items():
        if key.startswith("policy/"):
            np.testing.assert_allclose(found[key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    # the weights moved from where the seed put them: the comparison means something
    config, _ = configs.resolve(PPOConfig, "ppo", BREAKOUT, overrides=TINY)
    envs = onpolicy.make_train_env(config)
    start = onpolicy.ActorCriticLearner(config, envs, lambda p: torch.optim.Adam(p)).checkpoint()[0]
    envs.close()
    assert sum(not np.array_equal(start[k], expected[k]) for k in expected if "policy/" in k) > 5


def overlap_rollout(overlap: bool, device_rollout: bool = False):
    """T = 96 steps of 4 Breakout games from fixed seeds and weights: (the rollout as numpy
    arrays, the observations it ends on, V(s_T), the env steps counted, the games logged)."""
    config, _ = configs.resolve(PPOConfig, "ppo", BREAKOUT, overrides=[
        *TINY, "n_envs=4", "n_steps=96", f"env_overlap={str(overlap).lower()}",
        f"device_rollout={str(device_rollout).lower()}",
    ])  # fmt: skip
    envs = onpolicy.make_train_env(config)
    assert len(envs.groups) == (2 if overlap else 1)
    torch.manual_seed(0)
    learner = onpolicy.ActorCriticLearner(config, envs, lambda p: torch.optim.Adam(p))
    obs, _ = envs.reset(seed=[11, 12, 13, 14])
    games: list[tuple[float, int]] = []
    run = SimpleNamespace(log_episode=lambda step, score, length: games.append((score, length)))
    rollout = onpolicy.rollout_storage(learner, config)
    obs, experience, last_values = onpolicy.run_policy(learner, envs, obs, rollout, run)
    envs.close()
    arrays = {name: torch.as_tensor(x).cpu().numpy() for name, x in vars(experience).items()}
    return arrays, obs, last_values.numpy(), learner.step, games


@pytest.mark.parametrize("device_rollout", [False, True])
def test_overlapped_acting_gives_the_synchronous_rollout(device_rollout):
    """env_overlap: pi_theta acts for one group of games while the other steps. The same games,
    actions, rewards and episode ends as the synchronous loop (the same seeds and generator
    draws), log-probabilities and values up to float rounding (pi_theta scores 2 observations a
    call instead of 4), on the host and the device rollout."""
    expected, expected_obs, expected_last, expected_steps, _ = overlap_rollout(False)
    found, obs, last, steps, _ = overlap_rollout(True, device_rollout)
    assert steps == expected_steps == 4 * 96
    for name in ("obs", "actions", "rewards", "terminated", "truncated"):
        np.testing.assert_array_equal(found[name], expected[name], err_msg=name)
    for name in ("log_probs", "values", "final_values"):
        np.testing.assert_allclose(found[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(obs, expected_obs)
    np.testing.assert_allclose(last, expected_last, rtol=1e-5, atol=1e-6)
    assert expected["terminated"].any()  # lives were lost: episode ends went through both loops
    assert len(np.unique(expected["actions"])) == 4


@pytest.mark.parametrize(
    ("env_id", "sets", "fragment"),
    [
        ("CartPole-v1", ["env_overlap=true"], "'CartPole-v1' is no ALE game"),
        (BREAKOUT, ["env_overlap=true", "atari_backend=gymnasium"], "runs on the gymnasium path"),
        (BREAKOUT, ["env_overlap=true", "n_envs=3", "minibatch_size=192"], "n_envs = 3 is odd"),
    ],
)
def test_env_overlap_without_two_groups_of_atari_games_is_refused(env_id, sets, fragment):
    with pytest.raises(ConfigError, match=fragment):
        bellman.train("ppo", env_id, overrides=sets, run_dir=Path("/nonexistent/run"))


def test_device_rollout_refuses_box_actions():
    config = PPOConfig(env="Pendulum-v1", device_rollout=True, n_envs=1, n_steps=8,
                       minibatch_size=8)  # fmt: skip
    envs = onpolicy.make_train_env(config)
    learner = onpolicy.ActorCriticLearner(config, envs, lambda p: torch.optim.Adam(p))
    with pytest.raises(ConfigError, match="device_rollout draws Discrete actions"):
        onpolicy.rollout_storage(learner, config)
    envs.close()


def test_bf16_autocast_keeps_float32_outputs_close_to_the_plain_forward():
    config = PPOConfig(env=BREAKOUT, network="cnn", shared_trunk=True, n_envs=2, n_steps=8,
                       minibatch_size=16)  # fmt: skip
    envs = onpolicy.make_train_env(config)
    plain = onpolicy.ActorCriticLearner(config, envs, lambda p: torch.optim.Adam(p))
    fast = onpolicy.ActorCriticLearner(
        PPOConfig(**{**config.__dict__, "bf16_autocast": True}), envs,
        lambda p: torch.optim.Adam(p),
    )  # fmt: skip
    obs, _ = envs.reset(seed=[1, 2])
    envs.close()
    obs = torch.as_tensor(np.concatenate([obs] * (BF16_MIN_BATCH // 2)))  # 8 frames
    (logits, values), (logits16, values16) = plain.policy(obs), fast.policy(obs)
    assert logits16.dtype == values16.dtype == torch.float32
    assert torch.allclose(logits16, logits, atol=0.05) and torch.allclose(
        values16, values, atol=0.05
    )
    assert not torch.equal(logits16, logits)  # bfloat16 really ran
    # on the CPU fewer than BF16_MIN_BATCH frames stay float32: the plain outputs exactly
    for small, plain_output in zip(fast.policy(obs[:2]), plain.policy(obs[:2]), strict=True):
        assert torch.equal(small, plain_output)


def test_channels_last_gives_the_plain_layouts_outputs_and_gradients():
    """The speed switch `channels_last` (nets.fast.channels_last_inputs) against the plain
    layout, for PPO's actor-critic and DQN's Q-network: the same numbers up to float rounding."""
    from bellman.algos import dqn

    obs = torch.randint(
        0, 256, (16, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    for fast in (True, False):
        config = PPOConfig(env=BREAKOUT, network="cnn", shared_trunk=True, n_envs=2, n_steps=8,
                           minibatch_size=16, channels_last=fast)  # fmt: skip
        envs = onpolicy.make_train_env(config)
        learner = onpolicy.ActorCriticLearner(config, envs, lambda p: torch.optim.Adam(p))
        dqn_learner = dqn.DQNLearner(
            dqn.DQNConfig(env=BREAKOUT, buffer_size=64, batch_size=8, channels_last=fast), envs
        )
        envs.close()
        logits, values = learner.policy(obs)
        q_values = dqn_learner.q_network(obs)
        (logits.sum() + values.sum() + q_values.sum()).backward()
        grads = [p.grad.clone() for p in learner.parameters + dqn_learner.parameters]
        if fast:
            expected = (logits.detach(), values.detach(), q_values.detach(), grads)
            assert learner.policy.forward.__name__ == "forward"  # wrapped
            continue
        for found, want in zip((logits, values, q_values), expected[:3], strict=True):
            torch.testing.assert_close(found.detach(), want, rtol=1e-4, atol=1e-5)
        for found, want in zip(grads, expected[3], strict=True):
            torch.testing.assert_close(found, want, rtol=1e-3, atol=1e-4)
