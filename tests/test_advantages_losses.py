"""GAE and the shared PPO losses against values worked out by hand, and the speed path's
gradients of those losses (bellman.nets.fast) against autograd's."""

from __future__ import annotations

import math

import pytest
import torch

from bellman.advantages import generalized_advantage_estimation
from bellman.losses import approximate_kl, clipped_surrogate_loss, value_loss
from bellman.nets.fast import clipped_surrogate_gradient, value_loss_gradient


def _gae(rewards, values, next_values, terminated, ended, gamma=0.5, lam=0.5):
    column = [torch.tensor(x, dtype=torch.float32).unsqueeze(1) for x in
              (rewards, values, next_values, terminated, ended)]  # fmt: skip
    advantages, returns = generalized_advantage_estimation(*column, gamma=gamma, lam=lam)
    return advantages.squeeze(1).tolist(), returns.squeeze(1).tolist()


def test_gae_worked_by_hand():
    # Three steps, no episode end; V(s_3) = 4 is the bootstrap.
    advantages, returns = _gae([1, 0, 2], [1, 2, 3], [2, 3, 4], [0, 0, 0], [0, 0, 0])
    deltas = [1 + 0.5 * 2 - 1, 0 + 0.5 * 3 - 2, 2 + 0.5 * 4 - 3]  # 1, -0.5, 1
    expected_2 = deltas[2]
    expected_1 = deltas[1] + 0.25 * expected_2
    expected_0 = deltas[0] + 0.25 * expected_1
    assert advantages == pytest.approx([expected_0, expected_1, expected_2])
    assert returns == pytest.approx([expected_0 + 1, expected_1 + 2, expected_2 + 3])


def test_termination_stops_the_bootstrap_and_the_trace():
    # The episode terminates after step 0; step 1 starts a new episode.
    advantages, _ = _gae([1, 1], [0.5, 0.5], [9.0, 2.0], [1, 0], [1, 0])
    assert advantages[0] == pytest.approx(1 - 0.5)  # r - V, V(terminal) = 0, no trace from t=1
    assert advantages[1] == pytest.approx(1 + 0.5 * 2 - 0.5)


def test_truncation_bootstraps_but_cuts_the_trace():
    advantages, _ = _gae([1, 1], [0.5, 0.5], [4.0, 2.0], [0, 0], [1, 0])
    assert advantages[0] == pytest.approx(1 + 0.5 * 4 - 0.5)  # bootstrap from the final obs


def test_lambda_one_is_the_n_step_return():
    rewards, values = [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
    _, returns = _gae(rewards, values, [0, 0, 10], [0, 0, 0], [0, 0, 0], gamma=0.9, lam=1.0)
    assert returns[0] == pytest.approx(1 + 0.9 + 0.81 + 0.729 * 10)  # A2C's 3-step q_0


def test_clipped_surrogate_worked_by_hand():
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.7])
    advantages = torch.tensor([1.0, 1.0, -2.0, -1.0])
    loss, clip_fraction = clipped_surrogate_loss(ratios.log(), advantages, clip_range=0.2)
    # min(1.5, 1.2) = 1.2; min(0.5, 0.8) = 0.5; min(-2.2, -2.2) = -2.2; min(-0.7, -0.8) = -0.8
    assert float(loss) == pytest.approx(-(1.2 + 0.5 - 2.2 - 0.8) / 4)
    assert float(clip_fraction) == pytest.approx(3 / 4)


def _surrogate_by_autograd(log_ratio, advantages, clip_range):
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    return -torch.minimum(ratio * advantages, clipped * advantages).mean()


def test_clipped_surrogate_gradients_are_autograds():
    """The surrogate's gradient worked out by hand (the speed path's) has the value and gradient
    of autograd through exp, clamp and minimum: on ratios inside the range (ties), on both edges,
    clipped on either side, and with A = 0; the plain loss is the textbook formula, gradients
    wrt the advantages included."""
    generator = torch.Generator().manual_seed(0)
    log_ratio = 0.3 * torch.randn(400, generator=generator, dtype=torch.float64)
    log_ratio[:40] = 0.0  # r = 1: inside the range, unclipped and clipped tie
    log_ratio[40:50] = math.log(1.2)  # on the edges
    log_ratio[50:60] = math.log(0.8)
    advantages = torch.randn(400, generator=generator, dtype=torch.float64)
    advantages[60:80] = 0.0
    ours, clip_fraction, ours_x = clipped_surrogate_gradient(log_ratio, advantages, 0.2)
    x, a = log_ratio.clone().requires_grad_(), advantages.clone().requires_grad_()
    theirs = _surrogate_by_autograd(x, a, 0.2)
    theirs.backward()
    assert float(ours) == pytest.approx(float(theirs.detach()), abs=1e-15)
    assert torch.allclose(ours_x, x.grad, rtol=0, atol=1e-15)
    assert (ours_x[:40] != 0).all() and (ours_x[80:] == 0).any()  # ties flow, clipped do not
    y, b = log_ratio.clone().requires_grad_(), advantages.clone().requires_grad_()
    plain, plain_clip_fraction = clipped_surrogate_loss(y, b, 0.2)
    plain.backward()
    assert float(plain.detach()) == float(theirs.detach())
    assert torch.equal(y.grad, x.grad) and torch.equal(b.grad, a.grad)
    assert float(plain_clip_fraction) == float(clip_fraction)
    assert not plain_clip_fraction.requires_grad


def test_value_loss_plain_and_clipped():
    values, returns = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    assert float(value_loss(values, returns)) == pytest.approx(0.5 * (1 + 1) / 2)
    old = torch.tensor([1.0, 0.5])
    # V_clip = [1.5, 0.0]: max(1, 0.25) = 1 and max(1, 1) = 1
    assert float(value_loss(values, returns, old, 0.5)) == pytest.approx(0.5)


def test_value_loss_gradient_is_autograds():
    """The hand-worked gradient of the value loss is autograd's, plain and clipped: inside the
    clip range, outside it on either side, on its edges (clamp passes the gradient there) and
    where the two squares tie (autograd's maximum gives each half)."""
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(300, generator=generator, dtype=torch.float64)
    old = values + 0.4 * torch.randn(300, generator=generator, dtype=torch.float64)
    returns = torch.randn(300, generator=generator, dtype=torch.float64)
    old[:10] = values[:10]  # V = V_old: V_clip = V, the squares tie
    old[10:20], old[20:30] = values[10:20] - 0.25, values[10:20] + 0.25  # on the edges
    values[30:40], old[30:40], returns[30:40] = 1.0, -1.25, 0.0  # outside: V_clip = -1, a tie
    for clip in (None, 0.25):
        x = values.clone().requires_grad_()
        value_loss(x, returns, old, clip).backward()
        ours = value_loss_gradient(values, returns, old, clip)
        assert torch.allclose(ours, x.grad, rtol=0, atol=1e-15), clip
    assert value_loss_gradient(values, returns, old, 0.25)[30:40].tolist() == [0.5 / 300] * 10


def test_approximate_kl_is_zero_at_equal_policies_and_positive_otherwise():
    assert float(approximate_kl(torch.zeros(5))) == 0.0
    assert float(approximate_kl(torch.tensor([0.3, -0.2]))) > 0.0
