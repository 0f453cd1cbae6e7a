"""PPO's GPU path, checked on the CPU: the rollout kept on the device (`device_rollout`) gives
the update the host rollout gives, and the bf16 autocast switch keeps float32 outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import bellman
from bellman import config as configs
from bellman.algos import onpolicy
from bellman.algos.ppo import PPOConfig
from bellman.errors import ConfigError

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
    obs = torch.as_tensor(obs)
    (logits, values), (logits16, values16) = plain.policy(obs), fast.policy(obs)
    assert logits16.dtype == values16.dtype == torch.float32
    assert torch.allclose(logits16, logits, atol=0.05) and torch.allclose(
        values16, values, atol=0.05
    )
    assert not torch.equal(logits16, logits)  # bfloat16 really ran


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
