"""TRPO: conjugate gradient, the Fisher-vector product and the line search against numbers worked
by hand, the trust region kept on a real batch, learning on CartPole, exact resume, bad input."""

from __future__ import annotations

import csv
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import bellman
from bellman import config as configs
from bellman.algos import trpo
from bellman.algos.onpolicy import (
    RolloutBatch,
    boundary,
    estimate_advantages,
    rollout_storage,
    run_policy,
)
from bellman.algos.trpo import (
    PolicyDistance,
    TRPOConfig,
    accept_step,
    backtracking_line_search,
    conjugate_gradient,
    flat,
    gaussian_kl,
    policy_parameters,
)
from bellman.errors import ConfigError
from bellman.nets import actor_critic_for
from tests.conftest import _final_state, assert_user_error, train_fast_and_plain

torch.set_num_threads(1)


# ---- conjugate gradient -------------------------------------------------------------------
def test_conjugate_gradient_on_a_small_spd_system_worked_by_hand():
    # A = [[4, 1], [1, 3]], b = [1, 2]: A^-1 b = [1/11, 7/11].
    # Iteration 1: r = p = b, Ab = [6, 7], alpha = b.b / b.Ab = 5 / 20, x = [0.25, 0.5].
    # Iteration 2 ends exactly (CG solves an n x n system in n iterations).
    a = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    one = conjugate_gradient(lambda v: a @ v, b, iterations=1)
    torch.testing.assert_close(one, torch.tensor([0.25, 0.5], dtype=torch.float64))
    two = conjugate_gradient(lambda v: a @ v, b, iterations=2)
    torch.testing.assert_close(two, torch.tensor([1 / 11, 7 / 11], dtype=torch.float64))
    calls = []
    more = conjugate_gradient(lambda v: calls.append(1) or a @ v, b, iterations=50)
    torch.testing.assert_close(more, two)
    assert len(calls) == 2  # the residual is ~0 after two products: it stops there


def test_conjugate_gradient_solves_a_larger_spd_system():
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=generator, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iterations=6)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))


# ---- the Fisher-vector product ------------------------------------------------------------
def _tiny_batch(action_space):
    torch.manual_seed(3)
    obs_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    policy = actor_critic_for(obs_space, action_space, network="mlp", hidden=(3,),
                              shared=False, log_std_init=-0.3, env_id="tiny")  # fmt: skip
    for p in policy.parameters():  # away from the near-uniform initial policy
        p.data.add_(0.5 * torch.randn_like(p))
    obs = torch.randn(4, 2)
    if isinstance(action_space, gym.spaces.Discrete):
        actions = torch.tensor([0, 2, 1, 2])
    else:
        actions = torch.randn(4, 2)
    with torch.no_grad():
        log_probs, _, _ = policy.evaluate(obs, actions)
    return policy, obs, actions, log_probs


def _flat_grad(output, parameters):
    grads = torch.autograd.grad(output, parameters, retain_graph=True, allow_unused=True)
    return torch.cat([
        (torch.zeros_like(p) if g is None else g).reshape(-1)
        for g, p in zip(grads, parameters, strict=True)
    ])  # fmt: skip


@pytest.mark.parametrize("by_hand", [False, True])
def test_fisher_vector_product_equals_the_explicit_fisher_of_a_tiny_categorical_policy(by_hand):
    # F = E_s[sum_a pi(a|s) grad log pi(a|s) grad log pi(a|s)^T], built explicitly from the
    # scores of every (s, a) of a 4-state batch with 3 actions; F v must match for any v.
    policy, obs, actions, log_probs = _tiny_batch(gym.spaces.Discrete(3))
    problem = PolicyDistance(policy, obs, actions, log_probs, torch.ones(4), 0.0)
    parameters = problem.parameters
    logits = problem.distribution_parameters()
    log_p = logits.log_softmax(-1)
    n = sum(p.numel() for p in parameters)
    fisher = torch.zeros(n, n)
    for s in range(4):
        for a in range(3):
            score = _flat_grad(log_p[s, a], parameters)
            fisher += log_p[s, a].exp().detach() * torch.outer(score, score) / 4
    product = problem.fisher_vector_product(damping=0.0, by_hand=by_hand)
    damped = problem.fisher_vector_product(damping=0.1, by_hand=by_hand)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(n, generator=generator)
        torch.testing.assert_close(product(v), fisher @ v, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(damped(v), fisher @ v + 0.1 * v, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("by_hand", [False, True])
def test_fisher_vector_product_equals_the_explicit_fisher_of_a_tiny_gaussian_policy(by_hand):
    # For N(mu(s), diag(sigma^2)) the Fisher is block-diagonal: J_mu^T diag(1/sigma^2) J_mu
    # (averaged over s) for the parameters of mu, and 2 I for log sigma.
    policy, obs, actions, log_probs = _tiny_batch(gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    problem = PolicyDistance(policy, obs, actions, log_probs, torch.ones(4), 0.0)
    parameters = problem.parameters
    means = problem.distribution_parameters()
    inverse_variance = torch.exp(-2 * policy.policy_head.log_std.detach())
    n = sum(p.numel() for p in parameters)
    fisher = torch.zeros(n, n)
    for s in range(4):
        for i in range(2):
            jacobian_row = _flat_grad(means[s, i], parameters)
            fisher += inverse_variance[i] * torch.outer(jacobian_row, jacobian_row) / 4
    offset = 0
    for p in parameters:
        if p is policy.policy_head.log_std:
            fisher[offset : offset + 2, offset : offset + 2] += 2 * torch.eye(2)
        offset += p.numel()
    product = problem.fisher_vector_product(damping=0.0, by_hand=by_hand)
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        v = torch.randn(n, generator=generator)
        torch.testing.assert_close(product(v), fisher @ v, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "action_space", [gym.spaces.Discrete(4), gym.spaces.Box(-1.0, 1.0, (3,), np.float32)]
)
def test_the_fisher_product_by_hand_equals_double_backpropagation_on_a_real_mlp(action_space):
    # The speed path's J^T M J v against autograd's grad(grad KL . v) on 64x64 stacked trunks
    # and 256 states: the same vector up to float rounding, with damping, for any v.
    torch.manual_seed(5)
    obs_space = gym.spaces.Box(-2.0, 2.0, (5,), np.float32)
    policy = actor_critic_for(obs_space, action_space, network="mlp", hidden=(64, 64),
                              shared=False, log_std_init=-0.5, env_id="tiny")  # fmt: skip
    for p in policy.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    obs = torch.randn(256, 5)
    discrete = isinstance(action_space, gym.spaces.Discrete)
    actions = torch.zeros(256, dtype=torch.long) if discrete else torch.zeros(256, 3)
    with torch.no_grad():
        log_probs, _, _ = policy.evaluate(obs, actions)
    problem = PolicyDistance(policy, obs, actions, log_probs, torch.ones(256), 0.0)
    plain = problem.fisher_vector_product(damping=0.1)
    by_hand = problem.fisher_vector_product(damping=0.1, by_hand=True)
    generator = torch.Generator().manual_seed(4)
    n = sum(p.numel() for p in problem.parameters)
    for _ in range(3):
        v = torch.randn(n, generator=generator)
        torch.testing.assert_close(by_hand(v), plain(v), atol=1e-6, rtol=1e-4)


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    old_mean, mean = torch.randn(5, 3), torch.randn(5, 3)
    old_log_std, log_std = torch.randn(3) * 0.3, torch.randn(3) * 0.3
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(old_mean, old_log_std.exp()),
        torch.distributions.Normal(mean, log_std.exp()),
    )
    torch.testing.assert_close(
        gaussian_kl(old_mean, old_log_std, mean, log_std), reference.sum(-1).mean()
    )


def test_theta_is_the_policy_and_never_the_value():
    # Stacked trunks hold both halves in one tensor (the critic's half gets no gradient from L
    # or KL); separate trunks leave the critic's trunk out, as they leave the value head out.
    from bellman.nets import ActorCritic, CategoricalHead, SeparateTrunks, VectorTrunk

    stacked = _tiny_batch(gym.spaces.Discrete(3))[0]
    names = {n for n, p in stacked.named_parameters() if any(p is q for q in
             policy_parameters(stacked))}  # fmt: skip
    assert names == {n for n, _ in stacked.named_parameters() if not n.startswith("value_head")}
    separate = ActorCritic(SeparateTrunks(VectorTrunk(2, (3,)), VectorTrunk(2, (3,))),
                           CategoricalHead(3, 2))  # fmt: skip
    theta = policy_parameters(separate)
    expected = [*separate.trunks.actor.parameters(), *separate.policy_head.parameters()]
    assert len(theta) == len(expected)
    assert all(a is b for a, b in zip(theta, expected, strict=True))


# ---- the line search ----------------------------------------------------------------------
def test_the_line_search_accepts_only_improving_steps_inside_the_trust_region():
    assert accept_step(0.1, 0.01, 0.01)  # the bound itself is inside
    assert not accept_step(0.1, 0.0100001, 0.01)  # improves, but outside the trust region
    assert not accept_step(0.0, 0.001, 0.01)  # inside, but no improvement
    assert not accept_step(-0.2, 0.001, 0.01)
    assert not accept_step(math.nan, 0.001, 0.01) and not accept_step(0.1, math.nan, 0.01)

    # L improves by f (0.4 - f) at fraction f of the full step, KL = 0.04 f^2, delta = 0.01:
    # f = 1: L falls (-0.6), KL 0.04; f = 0.5: KL 0.01 but L falls (-0.05); f = 0.25: accepted.
    tried = []

    def evaluate(fraction):
        tried.append(fraction)
        return fraction * (0.4 - fraction), 0.04 * fraction**2

    j, improvement, kl = backtracking_line_search(evaluate, max_kl=0.01, shrink=0.5, tries=10)
    assert (j, tried) == (2, [1.0, 0.5, 0.25])
    assert improvement == pytest.approx(0.0375) and kl == pytest.approx(0.0025)
    # L always improves; the KL bound alone decides: f = 0.5 reaches KL = delta exactly
    j, _, kl = backtracking_line_search(lambda f: (f, 0.04 * f**2), 0.01, 0.5, 10)
    assert (j, kl) == (1, 0.01)
    # nothing accepted within the tries: -1, and the last try's numbers
    j, improvement, _ = backtracking_line_search(lambda f: (-f, 0.0), 0.01, 0.8, 3)
    assert j == -1 and improvement == pytest.approx(-0.64)


SHORT = ["steps=1024", "n_envs=2", "n_steps=256", "hidden_size=16", "log_every=512"]


def _one_batch(env_id, overrides):
    config, _ = configs.resolve(TRPOConfig, "trpo", env_id, overrides=overrides)
    envs = trpo.make_train_env(config)
    learner = trpo.make_learner(config, envs)

    class Quiet:
        def log_episode(self, *args, **kwargs):
            pass

    obs = boundary(learner, envs, config)
    _, experience, last = run_policy(learner, envs, obs, rollout_storage(learner, config), Quiet())
    envs.close()
    advantages, returns = estimate_advantages(experience, last, config.gamma, config.gae_lambda)
    return learner, RolloutBatch.of(experience, advantages, returns)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_a_trust_region_step_improves_the_surrogate_within_the_kl_bound(env_id):
    learner, batch = _one_batch(env_id, [*SHORT, "max_kl=0.005"])
    before = flat(policy_parameters(learner.policy)).detach().clone()
    value_head = learner.policy.value_head.weight.detach().clone()
    stats = trpo.trust_region_step(learner, batch)
    assert stats["backtracks"] >= 0 and stats["improvement"] > 0
    assert 0 < stats["approx_kl"] <= 0.005
    # the logged KL is the exact KL_bar of pi_old and the new pi on the batch
    advantages = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)
    after = PolicyDistance(learner.policy, batch.obs, batch.actions, batch.log_probs, advantages, 0)
    assert not torch.equal(flat(after.parameters), before)
    torch.testing.assert_close(learner.policy.value_head.weight, value_head)  # V is not theta
    # with a bound no step can keep (KL_bar >= 1e-12 for any move), theta stays theta_old
    learner, batch = _one_batch(env_id, [*SHORT, "max_kl=1e-30", "line_search_steps=3"])
    before = flat(policy_parameters(learner.policy)).detach().clone()
    stats = trpo.trust_region_step(learner, batch)
    assert stats["backtracks"] == -1 and stats["step_fraction"] == 0.0
    assert torch.equal(flat(policy_parameters(learner.policy)), before)


# ---- learning -----------------------------------------------------------------------------
def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_trpo_solves_cartpole(tmp_path):
    # The shipped tuned file; training stops at the first evaluation with a mean >= 475, and the
    # saved policy must then score >= 475 on 20 episodes it has never seen.
    run = bellman.train("trpo", "CartPole-v1", overrides=["seed=0", "stop_when_solved=true"],
                        run_dir=tmp_path / "run", quiet=True)  # fmt: skip
    rows = _metrics(run.dir)
    evaluations = [float(row["eval_return_mean"]) for row in rows if row["eval_return_mean"]]
    assert evaluations[-1] >= 475, evaluations
    assert int(rows[-1]["step"]) <= 40_000
    assert any("solved" in note for note in run.notes)
    assert all(float(row["approx_kl"]) <= 0.02 for row in rows)
    unseen = bellman.evaluate_run(run.dir, episodes=20, seed=100)
    assert unseen["mean"] >= 475, unseen


@pytest.mark.parametrize(
    ("env_id", "switches", "tolerance"),
    [("CartPole-v1", ["steps=256"], 1e-6), ("CartPole-v1", ["steps=2048"], 2e-4),
     ("Pendulum-v1", ["steps=256", "normalize_rewards=true"], 1e-5)],
)  # fmt: skip
def test_the_fast_and_the_plain_path_train_to_the_same_weights(
    tmp_path, env_id, switches, tolerance
):
    """TRPO from one seed with fast = true (the Fisher products and the value steps by hand,
    nets/fast.py) and fast = false (autograd): the same episodes and, at the end, the same
    weights and Adam moments up to float rounding: 2e-7 (CartPole) and 2e-6 (Pendulum) after one
    iteration; conjugate gradient amplifies the rounding a little each iteration (6e-5 after
    eight). Pendulum's continuous
    actions carry the rounding into the env's state, so that run is one iteration long."""
    common = ["n_envs=4", "n_steps=64", "value_minibatch_size=64", "value_epochs=3",
              "hidden_size=16", "eval_every=0", "log_every=256", "seed=0"]  # fmt: skip
    arrays, _ = train_fast_and_plain("trpo", env_id, [*common, *switches], tmp_path)
    trained = [key for key in arrays["false"] if key.startswith(("policy/", "optim/"))]
    assert set(arrays["false"]) <= set(arrays["true"]) and len(trained) > 10
    for key in trained:
        np.testing.assert_allclose(arrays["true"][key], arrays["false"][key], rtol=0,
                                   atol=tolerance, err_msg=key)  # fmt: skip
    # Adam over one flat buffer also keeps moments for theta's head, which the value loss never
    # reaches (autograd leaves its gradient None, so the plain Adam keeps no state): all zero
    for key in set(arrays["true"]) - set(arrays["false"]):
        assert key.startswith("optim/") and (key.endswith("/step") or not arrays["true"][key].any())


# ---- resume and the CLI -------------------------------------------------------------------
def test_a_run_resumed_from_a_checkpoint_is_bit_for_bit_the_run_that_never_stopped(tmp_path):
    # One run of 2,048 steps, and one that stops at its checkpoint of step 1,024 and is resumed
    # to 2,048 (in-process; the SIGKILL path of resume is the same for every actor-critic and
    # is tested with PPO). Both reset their episodes at 1,024 (a checkpoint), so every array of
    # the final checkpoints (pi, V, Adam, the normalisation statistics, the generators) and the
    # logs must be the same. Gaussian actions, both normalisations on.
    overrides = ["steps=2048", "seed=5", "n_envs=2", "n_steps=256", "hidden_size=16",
                 "normalize_observations=true", "normalize_rewards=true", "value_epochs=2",
                 "checkpoint_every=512", "log_every=512", "eval_every=0"]  # fmt: skip
    bellman.train("trpo", "Pendulum-v1", overrides=overrides, run_dir=tmp_path / "one-go",
                  quiet=True)  # fmt: skip
    bellman.train("trpo", "Pendulum-v1", overrides=[*overrides, "steps=1024"],
                  run_dir=tmp_path / "stopped", quiet=True)  # fmt: skip
    bellman.resume(tmp_path / "stopped", steps=2048, quiet=True)
    expected, resumed = (_final_state(tmp_path / name, 2048) for name in ("one-go", "stopped"))
    assert {"normalize/obs_mean", "normalize/return_var", "torch_rng"} <= set(expected[0])
    assert set(resumed[0]) == set(expected[0])
    for key, value in expected[0].items():
        np.testing.assert_array_equal(resumed[0][key], value, err_msg=key)
    assert resumed[1] == expected[1] and resumed[2] == expected[2]


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["value_minibatch_size=100"],
         ["value_minibatch_size = 100", "4 x 256 = 1024", "such as 64"]),
        (["value_minibatch_size=2048"], ["value_minibatch_size = 2048", "such as 1024"]),
        (["max_kl=0"], ["'max_kl'", "(0, inf)"]),
        (["line_search_shrink=1"], ["'line_search_shrink'", "(0, 1)"]),
        (["cg_iterations=0"], ["'cg_iterations'", "[1, 1000]"]),
    ],
)  # fmt: skip
def test_bad_trpo_settings_are_refused_with_what_is_valid(overrides, fragments):
    with pytest.raises(ConfigError) as error:
        configs.resolve(TRPOConfig, "trpo", "CartPole-v1", overrides=overrides)
    for fragment in fragments:
        assert fragment in str(error.value), (fragment, str(error.value))


def test_a_shared_trunk_is_one_error_line_through_the_cli(bellman, tmp_path):
    result = bellman("train", "trpo", "--env", "CartPole-v1", "--set", "shared_trunk=true",
                     "--run-dir", "run")  # fmt: skip
    assert_user_error(result, "shared_trunk = false")
    assert not (tmp_path / "run").exists()
