"""Losses that two pillars share: PPO's clipped surrogate, value clipping, KL estimators.

PPO (Schulman et al. 2017, "Proximal Policy Optimization Algorithms"), equation (7):

    r_t(theta) = pi_theta(a_t | s_t) / pi_theta_old(a_t | s_t)
    L^CLIP(theta) = E_t[ min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t) ]

maximised, so the loss returned here is its negation. PPO on games (`algos/ppo.py`) and PPO on
language models (`lm/rlhf_ppo.py`) both use these functions; a loss only one algorithm uses stays
in that algorithm's file.
"""

from __future__ import annotations

import torch


def clipped_surrogate_loss(
    log_ratio: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """-E[min(r A, clip(r, 1 - eps, 1 + eps) A)] and the fraction of samples that were clipped.

    One autograd node (`ClippedSurrogate`) whose gradients `clipped_surrogate` works out by hand:
    the same values and gradients as autograd through exp, clamp, minimum and mean, without their
    seven backward nodes (on a small policy those nodes cost about as much as its network's
    backward pass).

    Args:
        log_ratio: [B] log pi_theta(a|s) - log pi_theta_old(a|s).
        advantages: [B] A_t.
        clip_range: eps > 0.

    Returns:
        (loss, clip_fraction): scalars; clip_fraction carries no gradient.
    """
    return ClippedSurrogate.apply(log_ratio, advantages, clip_range)


def clipped_surrogate(
    log_ratio: torch.Tensor, advantages: torch.Tensor, clip_range: float, advantages_grad=False
):
    """-L^CLIP, the clip fraction and the loss's gradients, without autograd. With r = exp(log r),
    n samples and the mean's 1/n:

    d(-L)/d log r_t = -r_t A_t / n   where r_t A_t <= clip(r_t) A_t (the unclipped term is the
                                     min, or ties it: then clip(r_t) = r_t lies in the range
                                     and both terms carry r's gradient, half each),
                      0              elsewhere (clipped: r_t is outside the range, flat);
    d(-L)/d A_t     = -(the min term's ratio) / n: r_t or clip(r_t), their mean at a tie
                      (as autograd's minimum splits it); computed only with advantages_grad.

    Returns:
        (loss, clip_fraction, d(-L)/d log r, d(-L)/dA or None), the gradients in the shape that
        log_ratio and advantages broadcast to.
    """
    ratio = log_ratio.exp()
    clipped_ratio = ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    unclipped, clipped = ratio * advantages, clipped_ratio * advantages
    unclipped_is_min = unclipped <= clipped
    scale = -1.0 / unclipped.numel()
    loss = -torch.where(unclipped_is_min, unclipped, clipped).mean()
    clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    log_ratio_grad = torch.where(unclipped_is_min, unclipped, 0.0).mul_(scale)
    advantages_grad = (
        _min_term_ratio(unclipped, clipped, ratio, clipped_ratio).mul_(scale)
        if advantages_grad
        else None
    )
    return loss, clip_fraction, log_ratio_grad, advantages_grad


class ClippedSurrogate(torch.autograd.Function):
    """-L^CLIP as one autograd node: the gradients come from `clipped_surrogate`, computed in the
    forward pass and scaled by the incoming gradient in the backward pass."""

    @staticmethod
    def forward(ctx, log_ratio, advantages, clip_range):
        loss, clip_fraction, log_ratio_grad, advantages_grad = clipped_surrogate(
            log_ratio, advantages, clip_range, advantages_grad=ctx.needs_input_grad[1]
        )
        ctx.save_for_backward(log_ratio_grad, advantages_grad)
        ctx.mark_non_differentiable(clip_fraction)
        ctx.shapes = log_ratio.shape, advantages.shape
        return loss, clip_fraction

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_clip_fraction):
        log_ratio_grad, advantages_grad = ctx.saved_tensors
        log_ratio_shape, advantages_shape = ctx.shapes  # (sum over broadcast dimensions)
        if advantages_grad is not None:
            advantages_grad = (advantages_grad * grad_loss).sum_to_size(advantages_shape)
        return (log_ratio_grad * grad_loss).sum_to_size(log_ratio_shape), advantages_grad, None


def _min_term_ratio(unclipped, clipped, ratio, clipped_ratio) -> torch.Tensor:
    """d min(r A, clip(r) A) / dA: r or clip(r), whichever term is the min; at a tie their mean."""
    tie = (ratio + clipped_ratio) / 2
    return torch.where(
        unclipped < clipped, ratio, torch.where(clipped < unclipped, clipped_ratio, tie)
    )


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_range: float | None = None,
) -> torch.Tensor:
    """0.5 E[(V - R)^2], or with clipping (PPO2 baselines): 0.5 E[max((V - R)^2, (V_clip - R)^2)]
    where V_clip = V_old + clip(V - V_old, -eps, eps). Differentiable in `values`."""
    squared = (values - returns) ** 2
    if clip_range is None or old_values is None:
        return 0.5 * squared.mean()
    clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    return 0.5 * torch.maximum(squared, (clipped - returns) ** 2).mean()


def value_loss_gradient(
    values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_range: float | None = None,
) -> torch.Tensor:
    """d value_loss / dV, without autograd: (V - R) / n; with clipping, (V - R) / n where the
    unclipped square is the larger, (V_clip - R) / n where the clipped one is and V - V_old lies
    within [-eps, eps] (else V_clip does not move with V), the mean of the two at a tie (as
    autograd's maximum splits it)."""
    scale = 1.0 / values.numel()
    error = values - returns
    if clip_range is None or old_values is None:
        return error.mul_(scale)
    change = values - old_values
    clipped_error = old_values + change.clamp(-clip_range, clip_range) - returns
    squared, clipped_squared = error * error, clipped_error * clipped_error
    clipped_error = torch.where(change.abs() <= clip_range, clipped_error, 0.0)
    larger = torch.where(squared > clipped_squared, error, clipped_error)
    tie = (error + clipped_error) / 2
    return torch.where(squared == clipped_squared, tie, larger).mul_(scale)


def approximate_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """KL(pi_old || pi) estimated from samples of pi_old with the unbiased, always-positive
    estimator (r - 1) - log r (Schulman, "Approximating KL divergence", 2020)."""
    return ((log_ratio.exp() - 1.0) - log_ratio).mean()
