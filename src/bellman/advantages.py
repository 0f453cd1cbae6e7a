"""The one implementation of generalized advantage estimation (and so of n-step returns).

Generalized Advantage Estimation (Schulman et al. 2016, "High-Dimensional Continuous Control
Using Generalized Advantage Estimation"):

    delta_t = r_t + gamma V(s_t+1) - V(s_t)
    A_t     = delta_t + (gamma lambda) delta_t+1 + (gamma lambda)^2 delta_t+2 + ...
            = delta_t + gamma lambda A_t+1                       (computed backwards in time)
    R_t     = A_t + V(s_t)                                        (the critic's target)

lambda = 1 gives the Monte-Carlo return bootstrapped at the end of the rollout, i.e. A2C's n-step
return q_t = r_t + gamma r_t+1 + ... + gamma^n V(s_t+n); lambda = 0 gives the one-step TD error.

Episode ends are handled the way gymnasium reports them:
    terminated  s_t+1 is terminal: V(s_t+1) = 0, nothing is bootstrapped;
    truncated   a time limit cut the episode: V(s_t+1) of the *final* observation is bootstrapped,
                but the advantage trace does not run into the next episode.
PPO on games and PPO on language models both call this function.
"""

from __future__ import annotations

import torch


def generalized_advantage_estimation(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages A_t and returns R_t = A_t + V(s_t) for a rollout.

    Args:
        rewards: [T, N] r_t for T steps of N parallel environments (or sequences).
        values: [T, N] V(s_t).
        next_values: [T, N] V(s_t+1): the value of the observation that followed step t (for a
            truncated step, the episode's final observation; for the last step, the bootstrap).
        terminated: [T, N] True where s_t+1 is terminal (no bootstrap).
        episode_end: [T, N] True where the episode ended at step t (terminated or truncated): the
            advantage does not flow back across it.
        gamma: discount factor in [0, 1].
        lam: GAE lambda in [0, 1].

    Returns:
        (advantages [T, N], returns [T, N]).
    """
    not_terminal = 1.0 - terminated.to(values.dtype)
    continues = 1.0 - episode_end.to(values.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages, advantages + values
