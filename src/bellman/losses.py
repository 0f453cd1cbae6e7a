"""Losses that two pillars share: PPO's clipped surrogate, value clipping, KL estimators.

PPO (Schulman et al. 2017, "Proximal Policy Optimization Algorithms"), equation (7):

    r_t(theta) = pi_theta(a_t | s_t) / pi_theta_old(a_t | s_t)
    L^CLIP(theta) = E_t[ min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t) ]

maximised, so the loss returned here is its negation. PPO on games (`algos/ppo.py`) and PPO on
language models (`lm/rlhf_ppo.py`) both use these functions; a loss only one algorithm uses stays
in that algorithm's file. Their gradients are autograd's; `bellman.nets.fast` works the same
gradients out by hand for PPO's speed path.
"""

from __future__ import annotations

import torch


def clipped_surrogate_loss(
    log_ratio: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """-E[min(r A, clip(r, 1 - eps, 1 + eps) A)] and the fraction of samples that were clipped.

    Args:
        log_ratio: [B] log pi_theta(a|s) - log pi_theta_old(a|s).
        advantages: [B] A_t.
        clip_range: eps > 0.

    Returns:
        (loss, clip_fraction): scalars; clip_fraction carries no gradient.
    """
    ratio = log_ratio.exp()
    clipped_ratio = ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = -torch.minimum(ratio * advantages, clipped_ratio * advantages).mean()
    clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    return loss, clip_fraction


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


def approximate_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """KL(pi_old || pi) estimated from samples of pi_old with the unbiased, always-positive
    estimator (r - 1) - log r (Schulman, "Approximating KL divergence", 2020)."""
    return ((log_ratio.exp() - 1.0) - log_ratio).mean()
