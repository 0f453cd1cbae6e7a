"""PPO: its pieces against hand-computed values, learning on CartPole and Pendulum, the paper's
objectives, normalisation statistics, exact resume, the CLI end to end and bad input."""

from __future__ import annotations

import copy
import csv
import json
import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import bellman
from bellman import api
from bellman import config as configs
from bellman.algos import ppo
from bellman.algos.onpolicy import (
    Rollout,
    build_policy,
    env_actions,
    estimate_advantages,
    explained_variance,
)
from bellman.algos.ppo import PPOConfig, adapt_kl_beta, surrogate
from bellman.nets import CategoricalHead, DiagonalGaussianHead, gaussian_entropy, gaussian_log_prob
from bellman.nets.fast import kl_penalty_gradient, surrogate_gradient
from tests.conftest import (
    CliResult,
    assert_killed_run_resumes_exactly,
    assert_user_error,
    bad_train_input_tests,
    train_fast_and_plain,
)

torch.set_num_threads(1)


# ---- the pieces ---------------------------------------------------------------------------
def test_adaptive_kl_beta_rule_worked_by_hand():
    # d_targ = 0.01: beta halves below 0.01 / 1.5 = 0.00667, doubles above 1.5 * 0.01 = 0.015.
    assert adapt_kl_beta(1.0, 0.005, 0.01) == 0.5
    assert adapt_kl_beta(1.0, 0.02, 0.01) == 2.0
    assert adapt_kl_beta(1.0, 0.01, 0.01) == 1.0
    assert adapt_kl_beta(3.0, 0.007, 0.01) == 3.0  # inside [0.00667, 0.015]: unchanged
    assert adapt_kl_beta(3.0, 0.015, 0.01) == 3.0  # the bounds themselves do not move beta
    beta = 1.0
    for kl in (0.1, 0.1, 0.001):  # doubled twice, then halved
        beta = adapt_kl_beta(beta, kl, 0.01)
    assert beta == 2.0


def test_gaussian_log_prob_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    mean, log_std = torch.randn(5, 3), torch.randn(3) * 0.5
    actions = torch.randn(5, 3) * 2
    reference = torch.distributions.Normal(mean, log_std.exp())
    torch.testing.assert_close(
        gaussian_log_prob(mean, log_std, actions), reference.log_prob(actions).sum(-1)
    )
    torch.testing.assert_close(gaussian_entropy(log_std), reference.entropy()[0].sum())
    # The head on features: mu = W x + b, sigma = exp(log_std) in every state.
    head = DiagonalGaussianHead(4, 3, log_std_init=-0.5)
    features = torch.randn(5, 4)
    params = head(features)
    log_probs, entropy = head.log_prob_entropy(params, actions)
    normal = torch.distributions.Normal(params, torch.full((3,), -0.5).exp())
    torch.testing.assert_close(log_probs, normal.log_prob(actions).sum(-1))
    torch.testing.assert_close(entropy, normal.entropy().sum(-1))


def test_categorical_head_matches_torch_distributions():
    torch.manual_seed(1)
    head = CategoricalHead(4, 3)
    logits = head(torch.randn(6, 4)) * 100  # a sharper distribution than the 0.01-gain init
    actions = torch.tensor([0, 1, 2, 0, 1, 2])
    log_probs, entropy = head.log_prob_entropy(logits, actions)
    reference = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(log_probs, reference.log_prob(actions))
    torch.testing.assert_close(entropy, reference.entropy())
    torch.testing.assert_close(head.mode(logits), logits.argmax(-1))


def _surrogates(objective, log_ratio, advantages, clip_range, beta):
    """(L, clip fraction, dL/d log r) of the plain `surrogate` through autograd, and (-L, clip
    fraction, d(-L)/d log r) of the speed path's `surrogate_gradient`, worked out by hand."""
    x = log_ratio.clone().requires_grad_()
    plain, plain_clip_fraction = surrogate(objective, x, advantages, clip_range, beta)
    plain.backward()
    plain_result = (float(plain.detach()), float(plain_clip_fraction), x.grad.tolist())
    fast = surrogate_gradient(objective, log_ratio, advantages, clip_range, beta)
    return plain_result, (float(fast[0]), float(fast[1]), fast[2].tolist())


def test_surrogate_objectives_worked_by_hand():
    ratios, advantages = torch.tensor([1.5, 0.5]), torch.tensor([1.0, -1.0])
    log_ratio = ratios.log()
    # L^CPI = mean(1.5 * 1, 0.5 * -1) = 0.5; dL/d log r = r A / n
    plain, fast = _surrogates("none", log_ratio, advantages, 0.2, 7.0)
    assert plain[0] == pytest.approx(0.5) and fast[0] == pytest.approx(-0.5)
    assert plain[1] == fast[1] == 1.0  # both ratios lie outside [0.8, 1.2]
    assert plain[2] == pytest.approx([1.5 / 2, -0.5 / 2])
    assert fast[2] == pytest.approx([-1.5 / 2, 0.5 / 2])
    # KL estimate: mean((r - 1) - log r); its gradient wrt log r is (r - 1) / n
    kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    for objective in ("adaptive_kl", "fixed_kl"):
        plain, fast = _surrogates(objective, log_ratio, advantages, 0.2, 2.0)
        assert plain[0] == pytest.approx(0.5 - 2.0 * kl) and fast[0] == pytest.approx(-plain[0])
        assert fast[2] == pytest.approx([(-1.5 + 2 * 0.5) / 2, (0.5 + 2 * -0.5) / 2])
        assert plain[2] == pytest.approx([-g for g in fast[2]])
    assert float(kl_penalty_gradient(log_ratio, advantages, 0.0)[0]) == pytest.approx(-0.5)
    # L^CLIP = mean(min(1.5, 1.2), min(-0.5, -0.8)) = (1.2 - 0.8) / 2; both are clipped: flat
    plain, fast = _surrogates("clip", log_ratio, advantages, 0.2, 2.0)
    assert plain[0] == pytest.approx(0.2) and fast[0] == pytest.approx(-0.2)
    assert plain[1] == fast[1] == 1.0
    assert plain[2] == fast[2] == [0.0, 0.0]


def _reference_loss(network, minibatch, config, clip_range, beta):
    """-L^{+VF+S} through autograd, from the textbook formulas (no hand-written gradient)."""
    params, values = network(minibatch.obs)
    log_probs, entropy = network.policy_head.log_prob_entropy(params, minibatch.actions)
    log_ratio = log_probs - minibatch.log_probs
    advantages = minibatch.advantages
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = log_ratio.exp()
    if config.objective == "clip":
        clipped = ratio.clamp(1 - clip_range, 1 + clip_range)
        policy_loss = -torch.minimum(ratio * advantages, clipped * advantages).mean()
    else:
        beta = 0.0 if config.objective == "none" else beta
        policy_loss = -(ratio * advantages).mean() + beta * ((ratio - 1) - log_ratio).mean()
    squared = (values - minibatch.returns) ** 2
    if config.clip_value_loss:
        change = (values - minibatch.values).clamp(-clip_range, clip_range)
        squared = torch.maximum(squared, (minibatch.values + change - minibatch.returns) ** 2)
    value_loss = 0.5 * squared.mean()
    return policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy.mean()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    ("env_id", "switches"),
    [
        ("Pendulum-v1", ["objective=clip"]),
        ("Pendulum-v1", ["objective=clip", "clip_value_loss=true", "ent_coef=0.03"]),
        ("Pendulum-v1", ["objective=adaptive_kl", "hidden_layers=1", "log_std_init=-0.5"]),
        ("CartPole-v1", ["objective=clip", "ent_coef=0.01", "clip_value_loss=true"]),
        ("CartPole-v1", ["objective=fixed_kl", "kl_beta=3", "hidden_layers=0"]),
        ("CartPole-v1", ["objective=none", "shared_trunk=true", "ent_coef=0.01"]),
        ("Pendulum-v1", ["objective=clip", "shared_trunk=true", "clip_value_loss=true"]),
        ("FrozenLake-v1", ["objective=clip", "ent_coef=0.01"]),
    ],
)  # fmt: skip
def test_gradient_step_takes_autograds_gradients(env_id, switches, fast):
    """Both paths of a PPO step take autograd's gradients through the textbook loss: the speed
    path's worked by hand (loss wrt the network's outputs, then by hand through stacked MLPs or
    by autograd through other trunks) and the plain path's `loss.backward()`; every objective,
    both heads, entropy bonus, value clipping, ReLU and tanh, with ratios of exactly 1 (ties of
    the clip) and values equal to the old ones (ties of the value clip) among the samples."""
    config = configs.resolve(PPOConfig, "ppo", env_id, None, [
        *switches, "n_envs=2", "n_steps=32", "minibatch_size=64", "max_grad_norm=1e9",
        "device=cpu", f"fast={str(fast).lower()}",
    ])[0]  # fmt: skip
    envs = ppo.make_train_env(config)
    learner = ppo.make_learner(config, envs)
    envs.close()
    assert (learner.fast is not None) == fast
    network = learner.policy
    if env_id == "FrozenLake-v1":  # one-hot inputs, and the other activation's backward
        network.trunks.activation = "relu"
    generator = torch.Generator().manual_seed(0)
    n = 64
    if env_id == "FrozenLake-v1":
        obs = torch.randint(0, 16, (n,), generator=generator)
    else:
        obs = torch.randn(n, *envs.single_observation_space.shape, generator=generator)
    with torch.no_grad():
        params, values = network(obs)
        if isinstance(network.policy_head, CategoricalHead):
            actions = torch.randint(0, params.shape[1], (n,), generator=generator)
        else:
            actions = params + torch.randn(params.shape, generator=generator)
        log_probs, _ = network.policy_head.log_prob_entropy(params, actions)
    noise = lambda scale: scale * torch.randn(n, generator=generator)  # noqa: E731
    old_log_probs = log_probs + noise(0.3)
    old_log_probs[:16] = log_probs[:16]  # r = 1: the clip's two terms tie
    old_values = values + noise(0.5)
    old_values[16:32] = values[16:32]  # V = V_old: the value clip's two squares tie
    minibatch = ppo.RolloutBatch(
        obs, actions, old_log_probs, old_values, noise(1.0), values + noise(1.0)
    )
    clip_range, beta = 0.2, 0.7
    learner.scalars["kl_beta"] = beta
    expected_network = copy.deepcopy(network)
    expected_loss = _reference_loss(expected_network, minibatch, config, clip_range, beta)
    expected_loss.backward()
    expected = {name: p.grad for name, p in expected_network.named_parameters()}
    step = ppo.gradient_step(learner, minibatch, clip_range)
    assert step is not None
    for name, parameter in network.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-5, atol=1e-7,
                                   msg=name)  # fmt: skip
    policy_loss, value_loss, _, _, kl = step
    # the KL estimate logged as approx_kl: (r - 1) - log r of the minibatch before the step
    ratio = (log_probs - old_log_probs).exp()
    assert float(kl) == pytest.approx(float((ratio - 1 - ratio.log()).mean()), rel=1e-5)
    assert float(policy_loss + config.vf_coef * value_loss) == pytest.approx(
        float(expected_loss.detach()) + config.ent_coef * float(step[2]), abs=1e-6
    )


FAST_AND_PLAIN = ["n_envs=4", "n_steps=64", "minibatch_size=64", "n_epochs=4", "hidden_size=16",
                  "eval_every=0", "log_every=256", "seed=0"]  # fmt: skip


@pytest.mark.parametrize(
    ("env_id", "switches"),
    [
        ("CartPole-v1", ["steps=2048"]),
        ("CartPole-v1", ["steps=1024", "objective=adaptive_kl", "ent_coef=0.01",
                         "clip_value_loss=true", "target_kl=0.02"]),
        ("CartPole-v1", ["steps=1024", "shared_trunk=true", "objective=fixed_kl"]),
        ("Pendulum-v1", ["steps=512", "normalize_rewards=true"]),
    ],
)  # fmt: skip
def test_the_fast_and_the_plain_path_train_to_the_same_weights(tmp_path, env_id, switches):
    """PPO from one seed with fast = true and fast = false: the same episodes, and at the end
    the same weights and Adam moments up to float rounding (1e-6). On CartPole the two paths
    draw the same actions, so the episodes are the same to the bit; Pendulum's continuous
    actions carry the rounding into the env's state, where it grows tenfold an iteration, so
    that run is two iterations long."""
    arrays, _ = train_fast_and_plain("ppo", env_id, [*FAST_AND_PLAIN, *switches], tmp_path)
    trained = [key for key in arrays["true"] if key.startswith(("policy/", "optim/"))]
    assert set(arrays["true"]) == set(arrays["false"]) and len(trained) > 10
    for key in trained:
        np.testing.assert_allclose(arrays["true"][key], arrays["false"][key], rtol=0, atol=1e-6,
                                   err_msg=key)  # fmt: skip


def test_explained_variance_worked_by_hand():
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(returns, returns) == 1.0
    assert explained_variance(torch.full((4,), 2.5), returns) == pytest.approx(0.0)
    # residuals [1, 0, 0, -1]: var 2/3 against var(returns) 5/3
    values = torch.tensor([0.0, 2.0, 3.0, 5.0])
    assert explained_variance(values, returns) == pytest.approx(1 - (2 / 3) / (5 / 3))
    assert math.isnan(explained_variance(returns, torch.ones(4)))


def test_advantages_bootstrap_from_the_final_observation_after_a_time_limit():
    zeros = torch.zeros(2, 2)
    rollout = Rollout(
        obs=zeros, actions=zeros, log_probs=zeros,
        values=torch.tensor([[1.0, 1.0], [2.0, 2.0]]),
        rewards=torch.tensor([[1.0, 1.0], [1.0, 1.0]]),
        terminated=torch.tensor([[False, True], [False, False]]),
        truncated=torch.tensor([[True, False], [False, False]]),
        final_values=torch.tensor([[10.0, 99.0], [99.0, 99.0]]),
    )  # fmt: skip
    advantages, returns = estimate_advantages(rollout, torch.tensor([3.0, 3.0]), 0.5, 1.0)
    # Actor 0 is cut by a time limit after step 0: bootstrap V(final) = 10, no trace from t=1.
    assert advantages[0, 0] == pytest.approx(1 + 0.5 * 10 - 1)
    # Actor 1 terminates after step 0: nothing is bootstrapped.
    assert advantages[0, 1] == pytest.approx(1 - 1)
    # Step 1 bootstraps the value of the observation after the rollout, V(s_T) = 3.
    assert advantages[1].tolist() == pytest.approx([1 + 1.5 - 2] * 2)
    torch.testing.assert_close(returns, advantages + rollout.values)


def test_gaussian_actions_are_clipped_for_the_env_but_scored_unclipped():
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    sent = env_actions(torch.tensor([[3.0], [-0.5], [-7.0]]), space)
    np.testing.assert_array_equal(sent, [[2.0], [-0.5], [-2.0]])
    assert sent.dtype == np.float32
    torch.manual_seed(0)
    config = PPOConfig(env="Pendulum-v1", log_std_init=1.5)  # sigma = 4.5: many samples leave
    network = build_policy(config, gym.spaces.Box(-1, 1, (3,)), space)
    obs = torch.zeros(200, 3)
    actions, log_probs, _ = network.act(obs)
    assert (actions.abs() > 2).any()  # sampled unbounded
    mean = network.policy_head(network.trunks.actor_features(obs))
    torch.testing.assert_close(
        log_probs, gaussian_log_prob(mean, network.policy_head.log_std, actions)
    )


# ---- learning -----------------------------------------------------------------------------
def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_ppo_solves_cartpole(tmp_path):
    # RL Zoo's settings (the shipped tuned file); training stops at the first evaluation (10
    # episodes of the deterministic policy) with a mean >= 475, and the saved policy must then
    # score >= 475 on 20 episodes it has never seen.
    run = bellman.train(
        "ppo", "CartPole-v1", overrides=["seed=4", "eval_every=4096", "stop_when_solved=true"],
        run_dir=tmp_path / "run", quiet=True,
    )  # fmt: skip
    rows = _metrics(run.dir)
    evaluations = [float(row["eval_return_mean"]) for row in rows if row["eval_return_mean"]]
    assert evaluations[-1] >= 475, evaluations
    assert int(rows[-1]["step"]) < 60_000
    assert any("solved" in note for note in run.notes)
    unseen = bellman.evaluate_run(run.dir, episodes=20, seed=100)
    assert unseen["mean"] >= 475, unseen


def test_ppo_swings_up_pendulum(tmp_path):
    # The shipped tuned file: 82k steps of 8 actors with Gaussian actions clipped to [-2, 2].
    run = bellman.train("ppo", "Pendulum-v1", overrides=["seed=1"], run_dir=tmp_path / "run",
                        quiet=True)  # fmt: skip
    rows = _metrics(run.dir)
    assert int(rows[-1]["step"]) == 81920
    assert float(rows[-1]["eval_return_mean"]) >= -250
    unseen = bellman.evaluate_run(run.dir, episodes=20, seed=100)
    assert unseen["mean"] >= -250, unseen


# ---- the objectives and switches ----------------------------------------------------------
SHORT = ["steps=2048", "n_envs=4", "n_steps=64", "minibatch_size=64", "n_epochs=4",
         "log_every=256", "eval_every=1024", "hidden_size=16"]  # fmt: skip


@pytest.mark.parametrize(
    ("switches", "env_id"),
    [
        (["objective=adaptive_kl", "kl_target=1e-9"], "CartPole-v1"),
        (["objective=fixed_kl", "kl_beta=3", "shared_trunk=true"], "CartPole-v1"),
        (["objective=none", "clip_value_loss=true", "ent_coef=0.01"], "Pendulum-v1"),
        (["target_kl=0.0001", "normalize_observations=true", "normalize_rewards=true"],
         "Pendulum-v1"),
    ],
)  # fmt: skip
def test_every_objective_and_switch_trains_and_logs_the_same_columns(tmp_path, switches, env_id):
    run = bellman.train("ppo", env_id, overrides=[*SHORT, *switches], run_dir=tmp_path / "run",
                        quiet=True)  # fmt: skip
    rows = _metrics(run.dir)
    columns = ["policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
               "explained_variance", "learning_rate", "clip_range", "epochs", "eval_return_mean",
               "eval_seconds", "steps_per_second", "episode_return_mean"]  # fmt: skip
    for column in columns:
        assert column in rows[0], column
    assert [int(row["step"]) for row in rows] == list(range(256, 2049, 256))
    assert all(len(row) == len(rows[0]) for row in rows)
    for row in rows:
        assert all(math.isfinite(float(row[c])) for c in columns[:9]), row
    has_beta = any(s.startswith("objective=") and "kl" in s for s in switches)
    assert ("kl_beta" in rows[0]) == has_beta
    if "objective=adaptive_kl" in switches:  # a tiny d_targ: beta doubles after each update
        betas = [float(row["kl_beta"]) for row in rows]
        assert betas == [2.0**k for k in range(8)]
    if "target_kl=0.0001" in switches:  # the KL limit stops the epochs early
        assert any(int(row["epochs"]) < 4 for row in rows)


def test_every_parameter_changes_in_a_short_run(tmp_path):
    overrides = [*SHORT, "seed=0"]
    config, _ = configs.resolve(PPOConfig, "ppo", "Pendulum-v1", overrides=overrides)
    envs = ppo.make_train_env(config)
    initial = {k: v.clone() for k, v in ppo.make_learner(config, envs).policy.state_dict().items()}
    envs.close()
    run = bellman.train("ppo", "Pendulum-v1", overrides=overrides, run_dir=tmp_path / "run",
                        quiet=True)  # fmt: skip
    arrays = load_file(run.dir / "checkpoints" / "step-2048.safetensors")
    trained = {k[len("policy/") :]: v for k, v in arrays.items() if k.startswith("policy/")}
    assert set(trained) == set(initial)
    for key, value in trained.items():
        assert value.shape == tuple(initial[key].shape), key
        assert not np.array_equal(value, initial[key].numpy()), key
    assert "policy/policy_head.log_std" in arrays and "normalize/obs_mean" not in arrays


def test_observation_statistics_are_saved_and_frozen_for_evaluation(tmp_path):
    run = bellman.train(
        "ppo", "Pendulum-v1",
        overrides=[*SHORT, "normalize_observations=true", "normalize_rewards=true"],
        run_dir=tmp_path / "run", quiet=True,
    )  # fmt: skip
    arrays = load_file(run.dir / "checkpoints" / "step-2048.safetensors")
    # Every observation of the 4 training envs updated one shared statistic: per env the first
    # reset, 512 steps and 2 resets after time limits (200 steps); the evaluations (2 x 10
    # episodes) read it but did not update it. (The count starts at gymnasium's epsilon 1e-4.)
    assert arrays["normalize/obs_count"][0] == pytest.approx(4 * (1 + 512 + 2) + 1e-4)
    assert arrays["normalize/obs_mean"].shape == (3,) and arrays["normalize/return_var"] > 0
    policy, _, env = api.load_policy(run.dir)
    normalizer = env
    while not isinstance(normalizer, gym.wrappers.NormalizeObservation):
        normalizer = normalizer.env
    assert normalizer.update_running_mean is False
    np.testing.assert_array_equal(normalizer.obs_rms.mean, arrays["normalize/obs_mean"])
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        obs, *_ = env.step(policy(obs))
    np.testing.assert_array_equal(normalizer.obs_rms.mean, arrays["normalize/obs_mean"])
    raw = env.unwrapped._get_obs()
    expected = (raw - arrays["normalize/obs_mean"]) / np.sqrt(arrays["normalize/obs_var"] + 1e-8)
    np.testing.assert_allclose(obs, expected, rtol=1e-5)


# ---- resume -------------------------------------------------------------------------------
RESUMABLE = ["train", "ppo", "--env", "Pendulum-v1", "--steps", "8192", "--seed", "5",
             "--set", "n_envs=2", "--set", "n_steps=128", "--set", "minibatch_size=64",
             "--set", "n_epochs=2", "--set", "hidden_size=16", "--set", "anneal=true",
             "--set", "objective=adaptive_kl", "--set", "clip_value_loss=true",
             "--set", "normalize_observations=true", "--set", "normalize_rewards=true",
             "--set", "checkpoint_every=1024", "--set", "log_every=256", "--set", "eval_every=0",
             "--quiet"]  # fmt: skip


def test_a_killed_run_resumes_bit_for_bit_from_its_last_checkpoint(tmp_path):
    arrays = assert_killed_run_resumes_exactly(tmp_path, RESUMABLE, steps=8192)
    assert {"normalize/obs_mean", "normalize/return_var", "torch_rng"} <= set(arrays)


# ---- the CLI ------------------------------------------------------------------------------
def test_train_then_eval_and_record_through_the_cli(bellman_here, tmp_path):
    trained = bellman_here("train", "ppo", "--env", "CartPole-v1", "--steps", "4096",
                           "--set", "eval_every=2048", "--run-dir", "run")  # fmt: skip
    assert trained.returncode == 0, trained
    assert "trained ppo on CartPole-v1 for 4096 steps" in trained.stdout
    evaluated = bellman_here("eval", "run", "--episodes", "3", "--record", "cartpole.gif")
    assert evaluated.returncode == 0, evaluated
    assert (tmp_path / "cartpole.gif").read_bytes()[:3] == b"GIF"
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["env"] == "CartPole-v1" and result["episodes"] == 3
    assert result["mean"] > 20  # 4096 steps of PPO already beat a random policy (~22)


UNBOUNDED_CLI = """
import sys

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv


class UnboundedPendulum(PendulumEnv):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)


gym.register("UnboundedPendulum-v0", entry_point=UnboundedPendulum, max_episode_steps=200)
from bellman.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_infinite_action_bounds_are_one_error_line(tmp_path):
    script = tmp_path / "unbounded_cli.py"
    script.write_text(UNBOUNDED_CLI)
    completed = subprocess.run(
        [sys.executable, "-W", "ignore", str(script), "train", "ppo",
         "--env", "UnboundedPendulum-v0", "--run-dir", "run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert_user_error(CliResult(completed), "UnboundedPendulum-v0", "infinite bounds", "[-inf]")
    assert not (tmp_path / "run").exists()


#: (args, fragments): bad `bellman train ppo` input and what its one error line must name.
BAD_INPUT = [
    (["--env", "CartPole-v1", "--set", "minibatch_size=512"],
     ["minibatch_size = 512", "n_envs x n_steps = 8 x 32 = 256"]),
    (["--env", "CartPole-v1", "--set", "minibatch_size=100"],
     ["does not divide", "256", "such as 64 or 128"]),
    (["--env", "CartPole-v1", "--set", "clip_range=0"], ["'clip_range'", "(0, 1)", "0.0"]),
    (["--env", "Pendulum-v1", "--set", "gae_lambda=1.5"], ["'gae_lambda'", "[0, 1]", "1.5"]),
    (["--env", "FrozenLake-v1", "--set", "normalize_observations=true"],
     ["normalize_observations", "Discrete(16)"]),
    (["--env", "Pendulum-v1", "--set", "objective=kl"],
     ["'objective'", "clip, adaptive_kl, fixed_kl, none"]),
    (["--env", "Pendulum-v1", "--set", "bf16_autocast=true"],
     ["bf16_autocast runs the Nature CNN", "Pendulum-v1", "gets an MLP", "network = cnn"]),
]  # fmt: skip


bad_input, test_bad_ppo_input_is_one_error_line = bad_train_input_tests("ppo", BAD_INPUT)


def test_atari_runs_with_the_papers_settings(bellman_here, tmp_path):
    # `bellman train ppo --env ALE/Breakout-v5` takes the shipped Table-5 settings; a short run
    # (one iteration of 8 x 128 steps, shortened here to 2 x 64) trains the shared Nature CNN.
    trained = bellman_here("train", "ppo", "--env", "ALE/Breakout-v5", "--steps", "256",
                           "--set", "n_envs=2", "--set", "n_steps=64", "--set", "minibatch_size=64",
                           "--run-dir", "run", "--quiet")  # fmt: skip
    assert trained.returncode == 0, trained
    config = (tmp_path / "run" / "config.toml").read_text()
    assert "shared_trunk = true" in config and "clip_range = 0.1" in config
    arrays = load_file(tmp_path / "run" / "checkpoints" / "step-256.safetensors")
    assert arrays["policy/trunks.trunk.convs.0.weight"].shape[1] == 4  # 4 stacked frames
