"""REINFORCE: the Monte-Carlo policy gradient, with an optional learned baseline.

Williams, "Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
Learning", Machine Learning 8, 1992; as Sutton and Barto give it ("Reinforcement Learning: An
Introduction", 2nd ed., 2018, section 13.4, REINFORCE with Baseline, for estimating pi_theta):

     1. Input: a differentiable policy parameterization pi(a|s, theta)
     2. Input: a differentiable state-value function parameterization v(s, w)   (the baseline)
     3. Algorithm parameters: step sizes alpha_theta > 0, alpha_w > 0
     4. Initialize policy parameter theta and state-value weights w
     5. Loop forever (for each episode):
     6.     Generate an episode S_0, A_0, R_1, ..., S_T-1, A_T-1, R_T, following pi(.|., theta)
     7.     Loop for each step of the episode t = 0, 1, ..., T - 1:
     8.         G <- sum_{k=t+1}^{T} gamma^(k-t-1) R_k
     9.         delta <- G - v(S_t, w)
    10.         w <- w + alpha_w delta grad v(S_t, w)
    11.         theta <- theta + alpha_theta gamma^t delta grad ln pi(A_t|S_t, theta)

Without a baseline (`baseline = false`), v = 0 and delta = G: Williams' original estimator
grad J = E[G_t grad ln pi(A_t|S_t)].

Deviations and details:
    - Steps 7-11 run as one gradient step (`batch_episodes` >= 1 episodes at a time, as in
      Karpathy's "Pong from pixels"), minimising over all steps t of the batch
        -mean[delta_t ln pi(A_t|S_t)] - ent_coef mean[H] + vf_coef 0.5 mean[delta_t^2]
      with Adam or RMSProp and gradient-norm clipping. The gamma^t factor of step 11 is dropped,
      as in practice everywhere (it would ignore the late steps of long episodes).
    - `normalize_returns` standardises the G_t of a batch (Karpathy's "advantage"
      normalisation); `reset_return_on_reward` starts a new return at every non-zero reward
      (Pong: each point is a game of its own), Karpathy's choice for the Pong example.
    - An episode cut by a time limit (truncation), not ended by the task, gets the baseline's
      v(S_T) of its final observation as the value of the steps after the cut (no bootstrap
      without a baseline): a time limit is not a terminal state.
    - The episodes come from one environment (a one-env gymnasium vector env with same-step
      autoreset). When the run ends in the middle of a batch, that batch's episodes are
      discarded: every update uses whole episodes of the current policy.
    - After an update come evaluation, logging, "solved?" and checkpoints, in the one order of
      `bellman.loop.after_iteration`; after a checkpoint the env is reset with a seed from
      (seed, step), in the uninterrupted run as in a resumed one, so a run resumed from a
      checkpoint is bit-for-bit the run that never stopped. Ctrl-C or SIGTERM makes the run
      train on to its next checkpoint and stop there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from bellman import seeding
from bellman.algos import onpolicy
from bellman.algos.onpolicy import (
    ActorCriticLearner,
    deterministic_policy,
    env_actions,
    explained_variance,
    single_env,
    standardize,
)
from bellman.config import DeepConfig, choices, interval
from bellman.envs import check_vector_settings, final_observations, log_episodes, make_vector_env
from bellman.errors import NonFiniteError
from bellman.evaluation import TrainingEvaluation
from bellman.loop import after_iteration
from bellman.losses import value_loss
from bellman.nets import actor_critic_for
from bellman.nets.fast import clip_grad_norm
from bellman.run import Run
from bellman.torch_state import load_module


@dataclass(frozen=True)
class REINFORCEConfig(DeepConfig):
    """Hyperparameters of REINFORCE (with baseline, as Sutton and Barto give it)."""

    steps: int = field(default=1_000_000, metadata=interval("[1, inf)"))
    """Total number of environment steps of the run."""
    batch_episodes: int = field(default=1, metadata=interval("[1, inf)"))
    """Whole episodes per gradient step (1: the textbook's update after every episode)."""
    gamma: float = field(default=0.99, metadata=interval("[0, 1]"))
    """Discount factor gamma of the returns G_t."""
    baseline: bool = True
    """Subtract a learned state value v(S_t, w) from G_t (less variance, same expectation)."""
    normalize_returns: bool = False
    """Standardise the batch's G_t - v(S_t) to mean 0 and std 1."""
    reset_return_on_reward: bool = False
    """Start a new return after every non-zero reward (Pong: a point ends a game)."""
    learning_rate: float = field(default=1e-3, metadata=interval("(0, inf)"))
    """Step size alpha of the optimiser (shared by theta and w)."""
    optimizer: str = field(default="adam", metadata=choices("adam", "rmsprop"))
    """The optimiser: adam, or rmsprop (decay 0.99, as in the Pong example)."""
    vf_coef: float = field(default=0.5, metadata=interval("[0, inf)"))
    """Weight of the baseline's squared error (alpha_w / alpha_theta)."""
    ent_coef: float = field(default=0.0, metadata=interval("[0, inf)"))
    """Weight of an entropy bonus (0: the plain estimator)."""
    max_grad_norm: float = field(default=10.0, metadata=interval("(0, inf)"))
    """Gradients are rescaled so that their global L2 norm is at most this."""
    network: str = field(default="auto", metadata=choices("auto", "mlp", "cnn"))
    """Trunk: cnn (Nature CNN) for [C, H, W] images, tanh mlp otherwise; auto picks."""
    hidden_size: int = field(default=64, metadata=interval("[1, inf)"))
    """Width of each hidden layer of the MLP trunks (policy and baseline each have one)."""
    hidden_layers: int = field(default=2, metadata=interval("[0, 16]"))
    """Number of hidden layers of the MLP trunks."""
    log_std_init: float = field(default=0.0, metadata=interval("[-10, 2]"))
    """Box actions: initial log sigma of the Gaussian policy (0: sigma = 1)."""

    def validate(self) -> None:
        check_vector_settings(self)
        super().validate()

    @property
    def hidden(self) -> tuple[int, ...]:
        return (self.hidden_size,) * self.hidden_layers


Config = REINFORCEConfig
__all__ = [
    "Config",
    "check_checkpoint",
    "check_env",
    "load_policy",
    "make_eval_env",
    "make_train_env",
    "train",
]


# ---- environments and the network ---------------------------------------------------------
def make_train_env(config: REINFORCEConfig) -> gym.vector.VectorEnv:
    """One env in a vector env that resets a finished episode in the same step (Atari: on
    ale-py's backend, `envs.make_vector_env`)."""
    return make_vector_env(config, lambda: single_env(config, training=True))


def make_eval_env(config: REINFORCEConfig, render_mode: str | None = None) -> gym.Env:
    """One env as evaluation sees it: whole games, raw rewards."""
    return single_env(config, training=False, render_mode=render_mode)


def build_policy(config: REINFORCEConfig, obs_space: gym.Space, action_space: gym.Space):
    """pi(a|s, theta) and the baseline v(s, w), each with a trunk of its own."""
    return actor_critic_for(
        obs_space, action_space, network=config.network, hidden=config.hidden, shared=False,
        log_std_init=config.log_std_init, env_id=config.env,
    )  # fmt: skip


def check_env(envs, config: REINFORCEConfig | None = None) -> None:
    """Discrete or finite Box actions, and observations the network takes."""
    onpolicy.check_env(envs)
    if config is not None:
        obs_space = getattr(envs, "single_observation_space", envs.observation_space)
        action_space = getattr(envs, "single_action_space", envs.action_space)
        build_policy(config, obs_space, action_space)


def check_checkpoint(arrays, envs, config: REINFORCEConfig) -> None:
    """The checkpoint's network has the keys, shapes and dtypes this config and env give (checked
    before a resume writes anything; the learner's restore checks the rest)."""
    obs_space = getattr(envs, "single_observation_space", envs.observation_space)
    action_space = getattr(envs, "single_action_space", envs.action_space)
    network = build_policy(config, obs_space, action_space)
    load_module(network, arrays, "policy/", torch.device("cpu"), "checkpoint")


def make_learner(config: REINFORCEConfig, envs) -> ActorCriticLearner:
    """theta, w and the optimiser (steps 1-4)."""

    def make_optimizer(parameters) -> torch.optim.Optimizer:
        if config.optimizer == "rmsprop":
            return torch.optim.RMSprop(parameters, lr=config.learning_rate, alpha=0.99)
        return torch.optim.Adam(parameters, lr=config.learning_rate, fused=True)

    return ActorCriticLearner(config, envs, make_optimizer, build=build_policy)


# ---- the pieces of the pseudocode ---------------------------------------------------------
@dataclass
class Episode:
    """Step 6's episode: S_0..S_T-1, A_0..A_T-1, R_1..R_T, and v(S_T) after a time limit."""

    obs: list[np.ndarray] = field(default_factory=list)
    actions: list[torch.Tensor] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    bootstrap: float = 0.0


def discounted_returns(
    rewards: np.ndarray, gamma: float, bootstrap: float = 0.0, reset_on_reward: bool = False
) -> np.ndarray:
    """Step 8 for every t at once: G_t = R_t+1 + gamma G_t+1, from G_T = bootstrap.

    Args:
        rewards: [T] R_1..R_T (rewards[t] is the reward after A_t).
        gamma: the discount.
        bootstrap: the value of the state after the last step (0 after termination).
        reset_on_reward: start a new return after every non-zero reward (Pong's points).
    """
    returns = np.zeros(len(rewards), dtype=np.float64)
    following = bootstrap
    for t in reversed(range(len(rewards))):
        if reset_on_reward and rewards[t] != 0:
            following = 0.0
        following = rewards[t] + gamma * following
        returns[t] = following
    return returns


def generate_episode(
    learner: ActorCriticLearner, envs, obs: np.ndarray, run: Run, episode: Episode
):
    """Step 6: follow pi(.|., theta) until the episode ends or the run's steps are used up.
    Returns (next observation, whether the episode ended)."""
    config, policy = learner.config, learner.policy
    while learner.step < config.steps:
        with torch.no_grad():
            actions, _, _ = policy.act(learner.tensor(obs))
        next_obs, rewards, terminated, truncated, infos = envs.step(
            env_actions(actions, learner.action_space)
        )
        learner.step += 1
        episode.obs.append(obs[0])
        episode.actions.append(actions[0])
        episode.rewards.append(float(rewards[0]))
        log_episodes(run, learner.step, infos)
        if terminated[0] or truncated[0]:
            if truncated[0] and not terminated[0] and config.baseline:
                with torch.no_grad():  # a time limit: v(S_T) stands for the steps after it
                    final = learner.tensor(final_observations(next_obs, infos))
                    episode.bootstrap = float(policy.value(final)[0])
            return next_obs, True
        obs = next_obs
    return obs, False


def update(learner: ActorCriticLearner, episodes: list[Episode]) -> dict[str, float]:
    """Steps 7-11 for the batch's episodes: one gradient step; returns the diagnostics."""
    config = learner.config
    returns = np.concatenate([
        discounted_returns(
            np.asarray(e.rewards), config.gamma, e.bootstrap, config.reset_return_on_reward
        )
        for e in episodes
    ])  # fmt: skip
    obs = learner.tensor(np.stack([o for e in episodes for o in e.obs]))
    actions = torch.stack([a for e in episodes for a in e.actions])
    returns = learner.tensor(returns.astype(np.float32))  # 8. G_t
    log_probs, entropy, values = learner.policy.evaluate(obs, actions)
    deltas = returns - values.detach() if config.baseline else returns  # 9. delta = G - v(S_t)
    if config.normalize_returns:
        deltas = standardize(deltas)
    policy_loss = -(deltas * log_probs).mean()  # 11. theta along delta grad ln pi(A_t|S_t)
    loss = policy_loss - config.ent_coef * entropy.mean()
    critic_loss = value_loss(values, returns)  # 10. w along delta grad v(S_t, w)
    if config.baseline:
        loss = loss + config.vf_coef * critic_loss
    for parameter in learner.parameters:
        parameter.grad = None
    loss.backward()
    clip_grad_norm(learner.parameters, config.max_grad_norm)
    learner.optimizer.step()
    stats = {
        "policy_loss": float(policy_loss.detach()),
        "value_loss": float(critic_loss.detach()),
        "entropy": float(entropy.detach().mean()),
        "return_mean": float(returns.mean()),
        "explained_variance": explained_variance(values.detach(), returns),
    }
    if not math.isfinite(stats["policy_loss"]):
        raise NonFiniteError(f"REINFORCE loss is not finite at step {learner.step}")
    return stats


STATISTICS = ("policy_loss", "value_loss", "entropy", "return_mean", "explained_variance")


def _boundary(learner: ActorCriticLearner, envs, config: REINFORCEConfig) -> np.ndarray:
    """A fresh episode seeded from (seed, step): at step 0 and after every checkpoint."""
    obs, _ = envs.reset(seed=seeding.boundary_seeds(config.seed, learner.step, 1))
    return obs


# ---- the loop -----------------------------------------------------------------------------
def train(config: REINFORCEConfig, envs: gym.vector.VectorEnv, run: Run) -> ActorCriticLearner:
    """Run REINFORCE for `config.steps` env steps (see the module docstring)."""
    torch.set_num_threads(config.torch_threads)
    learner = make_learner(config, envs)  # 1.-4.
    if run.restored is not None:
        learner.restore(*run.restored)
    evaluation = TrainingEvaluation(config, lambda: make_eval_env(config))

    stats = dict.fromkeys(STATISTICS, math.nan)  # the last update's, for the log rows

    def log(columns: dict[str, float]) -> None:
        run.log(learner.step, updates=learner.iterations, **stats, **columns)

    def new_episode() -> None:  # after a checkpoint
        nonlocal obs
        obs = _boundary(learner, envs, config)

    with run.session(start_step=learner.step):
        obs = _boundary(learner, envs, config)
        while learner.step < config.steps:  # 5. for each episode
            before = learner.step
            episodes = []
            for _ in range(config.batch_episodes):  # 6. generate episodes following pi
                episode = Episode()
                obs, ended = generate_episode(learner, envs, obs, run, episode)
                if not ended:  # the run ended inside the batch: discard it
                    break
                episodes.append(episode)
            else:
                stats = update(learner, episodes)  # 7.-11.
                learner.iterations += 1
            # evaluate, log, solved?, checkpoint, a fresh episode after a checkpoint
            if after_iteration(
                run, learner.step, before, save=learner.checkpoint, log=log,
                evaluation=evaluation, reset=new_episode,
                policy=lambda: deterministic_policy(
                    learner.policy, learner.action_space, learner.device
                ),
            ):  # fmt: skip
                break
    evaluation.close()
    return learner


def load_policy(arrays, env: gym.Env, config: REINFORCEConfig, seed: int = 0):
    """The deterministic policy (the mode of pi) of a checkpoint; `seed` is not used."""
    check_env(env, config)
    network = build_policy(config, env.observation_space, env.action_space)
    load_module(network, arrays, "policy/", torch.device("cpu"), "checkpoint")
    return deterministic_policy(network, env.action_space, torch.device("cpu"))
