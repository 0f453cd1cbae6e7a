"""A2C: synchronous advantage actor-critic with n-step returns over parallel actors.

Mnih, Badia, Mirza, Graves, Lillicrap, Harley, Silver and Kavukcuoglu, "Asynchronous Methods for
Deep Reinforcement Learning", ICML 2016, Algorithm S3 (asynchronous advantage actor-critic, one
actor-learner thread):

     1. repeat
     2.     Reset gradients: d theta <- 0 and d theta_v <- 0
     3.     Synchronize thread-specific parameters theta' = theta and theta'_v = theta_v
     4.     t_start = t; get state s_t
     5.     repeat
     6.         Perform a_t according to policy pi(a_t | s_t; theta')
     7.         Receive reward r_t and new state s_t+1; t <- t + 1; T <- T + 1
     8.     until terminal s_t or t - t_start == t_max
     9.     R = 0 for terminal s_t, V(s_t; theta'_v) for non-terminal s_t   (bootstrap)
    10.     for i in {t - 1, ..., t_start} do
    11.         R <- r_i + gamma R
    12.         d theta   <- d theta + grad_theta' log pi(a_i | s_i; theta') (R - V(s_i; theta'_v))
                                     + beta grad_theta' H(pi(s_i; theta'))        (entropy bonus)
    13.         d theta_v <- d theta_v + d (R - V(s_i; theta'_v))^2 / d theta'_v
    14.     end for
    15.     Perform asynchronous update of theta using d theta and of theta_v using d theta_v
    16. until T > T_max

A2C is the synchronous version (OpenAI baselines, 2017): the N threads become N environments
of a vector env stepped together, and step 15 is one update of theta from all N t_max samples,
so no thread ever acts with stale parameters.

Deviations and details (those PPO shares are in `algos/onpolicy.py`: the N actors, the
time-limit bootstrap, Gaussian actions clipped only for the env, normalisation, exact resume):
    - Steps 5-8 run every actor for exactly T = n_steps steps; an actor whose episode ends inside
      the T steps starts a new one (gymnasium's same-step autoreset) and its return stops there.
    - Steps 9-11: R is the n-step return q_t = r_t + gamma r_t+1 + ... + gamma^(k-1) r_t+k-1
      + gamma^k V(s_t+k), k the steps left in the rollout. It is computed as GAE with
      lambda = 1 (`gae_lambda`, the default), the one advantage code of bellman; lambda < 1 gives
      GAE's exponentially-weighted estimate instead. Advantages are R - V(s_t), standardised only
      when `normalize_advantages` is on (off by default, as in the paper).
    - Steps 12-13: the loss, minimised, is  -mean[log pi(a|s) A] - beta mean[H]
      + c1 0.5 mean[(R - V)^2]  with beta = ent_coef and c1 = vf_coef; one network (two trunks
      unless `shared_trunk`), gradient-norm clipping.
    - Step 15: RMSProp (alpha 0.99, the paper's shared-statistics variant reduced to one
      learner), or Adam; the learning rate is annealed linearly to 0 with `anneal`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import gymnasium as gym
import torch

from bellman.algos.onpolicy import (
    ActorCriticConfig,
    ActorCriticLearner,
    RolloutBatch,
    boundary,
    check_checkpoint,
    check_env,
    end_iteration,
    estimate_advantages,
    explained_variance,
    load_policy,
    make_eval_env,
    make_train_env,
    rollout_storage,
    run_policy,
    standardize,
    training_evaluation,
)
from bellman.config import choices, interval
from bellman.errors import NonFiniteError
from bellman.losses import value_loss
from bellman.run import Run
from bellman.schedules import make_schedule


@dataclass(frozen=True)
class A2CConfig(ActorCriticConfig):
    """Hyperparameters of A2C; the defaults are the paper's and OpenAI baselines' (Atari)."""

    n_envs: int = field(default=16, metadata=interval("[1, 256]"))
    """N: actors (environments of a gymnasium vector env) stepped together."""
    n_steps: int = field(default=5, metadata=interval("[1, inf)"))
    """t_max: steps each actor runs before an update; the n of the n-step returns."""
    learning_rate: float = field(default=7e-4, metadata=interval("(0, inf)"))
    """Step size of the optimiser (at the start of the run when anneal is on)."""
    gae_lambda: float = field(default=1.0, metadata=interval("[0, 1]"))
    """1 gives the n-step returns of the paper; < 1 gives GAE(gamma, lambda) advantages."""
    ent_coef: float = field(default=0.01, metadata=interval("[0, inf)"))
    """beta: weight of the entropy bonus H (the paper: 0.01)."""
    normalize_advantages: bool = False
    """Standardise each batch's advantages to mean 0, std 1 (not in the paper)."""
    optimizer: str = field(default="rmsprop", metadata=choices("rmsprop", "adam"))
    """Step 15's optimiser: rmsprop (the paper's) or adam."""
    rmsprop_alpha: float = field(default=0.99, metadata=interval("[0, 1)"))
    """RMSProp's decay of the running mean of squared gradients."""
    optimizer_epsilon: float = field(default=1e-5, metadata=interval("(0, inf)"))
    """The optimiser's epsilon (1e-5 as in OpenAI baselines)."""


Config = A2CConfig
__all__ = [
    "Config",
    "check_checkpoint",
    "check_env",
    "load_policy",
    "make_eval_env",
    "make_train_env",
    "train",
]


def make_learner(config: A2CConfig, envs: gym.vector.VectorEnv) -> ActorCriticLearner:
    """pi(.|s; theta), V(s; theta_v) and step 15's optimiser."""

    def make_optimizer(parameters) -> torch.optim.Optimizer:
        if config.optimizer == "adam":
            return torch.optim.Adam(
                parameters, lr=config.learning_rate, eps=config.optimizer_epsilon, fused=True
            )
        return torch.optim.RMSprop(
            parameters, lr=config.learning_rate, alpha=config.rmsprop_alpha,
            eps=config.optimizer_epsilon, foreach=True,
        )  # fmt: skip

    return ActorCriticLearner(config, envs, make_optimizer)


def actor_critic_loss(log_probs, entropy, values, advantages, returns, config: A2CConfig):
    """Steps 12-13 as one loss to minimise (see the module docstring).

    Args:
        log_probs: [B] log pi(a_i|s_i); entropy: [B] H(pi(.|s_i)); values: [B] V(s_i).
        advantages: [B] R_i - V(s_i) (no gradient); returns: [B] R_i.

    Returns:
        (loss, policy loss, value loss, entropy), the last three detached.
    """
    policy_loss = -(log_probs * advantages).mean()
    critic_loss = value_loss(values, returns)
    entropy = entropy.mean()
    loss = policy_loss - config.ent_coef * entropy + config.vf_coef * critic_loss
    return loss, policy_loss.detach(), critic_loss.detach(), entropy.detach()


def update(
    learner: ActorCriticLearner, batch: RolloutBatch, learning_rate: float
) -> dict[str, float]:
    """Steps 2 and 12-15: one gradient step on all N t_max samples; returns the diagnostics."""
    config = learner.config
    learner.set_learning_rate(learning_rate)
    learner.zero_grad()  # 2. reset gradients
    log_probs, entropy, values = learner.policy.evaluate(
        batch.obs, batch.actions, entropy_grad=config.ent_coef > 0
    )
    advantages = standardize(batch.advantages) if config.normalize_advantages else batch.advantages
    loss, policy_loss, critic_loss, entropy = actor_critic_loss(
        log_probs, entropy, values, advantages, batch.returns, config
    )
    loss.backward()  # 12.-13. d theta, d theta_v
    learner.update(config.max_grad_norm)  # 15. update theta and theta_v (norm clipped)
    stats = {
        "policy_loss": float(policy_loss),
        "value_loss": float(critic_loss),
        "entropy": float(entropy),
        "explained_variance": explained_variance(batch.values, batch.returns),
        "learning_rate": learning_rate,
    }
    if not (math.isfinite(stats["policy_loss"]) and math.isfinite(stats["value_loss"])):
        raise NonFiniteError(
            f"A2C loss is not finite at step {learner.step} (policy loss "
            f"{stats['policy_loss']}, value loss {stats['value_loss']})"
        )
    return stats


def train(config: A2CConfig, envs: gym.vector.VectorEnv, run: Run) -> ActorCriticLearner:
    """Run A2C for `config.steps` env steps (see the module docstring for the pseudocode)."""
    torch.set_num_threads(config.torch_threads)
    learner = make_learner(config, envs)
    if run.restored is not None:
        learner.restore(*run.restored)
    kind = "linear" if config.anneal else "constant"
    learning_rate = make_schedule(kind, config.learning_rate, 0.0, 1.0, config.steps)
    evaluation = training_evaluation(learner, config)
    rollout = rollout_storage(learner, config)  # [t_max, N, ...]

    with run.session(start_step=learner.step):
        obs = boundary(learner, envs, config)
        while learner.step < config.steps:  # 1. repeat
            before = learner.step
            # 3.-8. every actor performs t_max actions with the current theta (N envs together)
            obs, experience, last_values = run_policy(learner, envs, obs, rollout, run)
            # 9.-11. R <- r_i + gamma R from the bootstrap V(s_t): n-step returns (GAE, lambda 1)
            advantages, returns = estimate_advantages(
                experience, last_values, config.gamma, config.gae_lambda
            )
            # 2., 12.-15. accumulate the gradients of all N t_max samples, one update
            batch = RolloutBatch.of(experience, advantages, returns)
            stats = update(learner, batch, learning_rate(before))
            learner.iterations += 1
            # evaluate, log, solved?, checkpoint, fresh episodes after a checkpoint
            stop, obs = end_iteration(learner, envs, run, evaluation, before, stats, obs)
            if stop:
                break
    evaluation.close()
    return learner
