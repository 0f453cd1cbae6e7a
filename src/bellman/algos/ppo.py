"""PPO: proximal policy optimization, the actor-critic style, with the paper's surrogate objectives.

Schulman, Wolski, Dhariwal, Radford and Klimov, "Proximal Policy Optimization Algorithms", 2017:

    Algorithm 1: PPO, Actor-Critic Style
     1. for iteration = 1, 2, ... do
     2.     for actor = 1, 2, ..., N do
     3.         Run policy pi_theta_old in environment for T timesteps
     4.         Compute advantage estimates A_1, ..., A_T
            end for
     5.     Optimize surrogate L wrt theta, with K epochs and minibatch size M <= NT
     6.     theta_old <- theta
        end for

with r_t(theta) = pi_theta(a_t|s_t) / pi_theta_old(a_t|s_t) and the surrogate L one of the
paper's objectives (the config's `objective`):

    clip         L^CLIP   = E_t[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)]           (eq. 7)
    adaptive_kl  L^KLPEN  = E_t[r_t A_t - beta KL[pi_old(.|s_t), pi_theta(.|s_t)]]       (eq. 8)
                 and after each update, with d = E_t[KL[pi_old(.|s_t), pi_theta(.|s_t)]]:
                     if d < d_targ / 1.5: beta <- beta / 2
                     if d > d_targ * 1.5: beta <- beta * 2
    fixed_kl     L^KLPEN with a fixed beta
    none         L^CPI    = E_t[r_t A_t]                      (no clipping or penalty, eq. 6)

and the actor-critic's combined objective (eq. 9), maximised:

    L^{+VF+S}(theta) = E_t[L_t(theta) - c1 (V_theta(s_t) - V_t^targ)^2 + c2 S[pi_theta](s_t)]

Deviations and details:
    - Steps 2-3: the N actors are `n_envs` environments in a gymnasium vector env, stepped
      together; `steps` counts env steps summed over them, so an iteration is N T steps.
    - Step 4: A_t is GAE(gamma, lambda) (`bellman.advantages`, Schulman et al. 2016); V_t^targ =
      A_t + V(s_t). A terminated episode bootstraps nothing; one cut by a time limit (truncation)
      bootstraps V(final observation). The advantages are standardised per minibatch
      (`normalize_advantages`), as in the paper's code (OpenAI baselines).
    - Step 5: the loss is -L^{+VF+S}; c1 = vf_coef, c2 = ent_coef; the value loss is
      0.5 (V - V^targ)^2, optionally clipped around the old values (`clip_value_loss`, baselines'
      PPO2). Adam, gradient-norm clipping (`max_grad_norm`); with `anneal` the learning rate and
      eps fall linearly to 0 over the run (the paper's Atari setting). Each epoch visits the NT
      samples in a new random order; M must divide NT (no ragged last minibatch), and M > NT is
      an error.
    - KL[pi_old, pi_theta] is estimated from the sampled actions, (r - 1) - log r (unbiased, and
      its gradient is that of the KL): in L^KLPEN per minibatch, and for d over the whole batch
      after the K epochs (logged as approx_kl for every objective). With `target_kl` > 0 the
      epochs stop at the first minibatch whose estimate exceeds it (before its step).
    - Box actions: a ~ N(mu(s), diag(sigma^2)) is sampled unbounded and clipped to the action
      bounds only when it is sent to the environment; the log-probability (and the ratio) is that
      of the unclipped sample, as in Stable-Baselines3 and CleanRL: the clipping is part of the
      environment as the policy sees it. Infinite bounds are refused. Evaluation plays the mode:
      argmax_a pi(a|s), or mu(s) clipped to the bounds.
    - `normalize_observations` / `normalize_rewards` wrap each of the N envs in gymnasium's
      NormalizeObservation / NormalizeReward, and the N wrappers share one set of running
      statistics (one normalisation for all actors, as a VecNormalize would; gymnasium's vector
      versions of the wrappers need NEXT_STEP autoreset, the loop uses SAME_STEP). Reward scaling
      (by the std of a discounted return) is for learning only; logged returns are raw. The
      statistics are saved in checkpoints; evaluation uses them frozen
      (`update_running_mean = False`).
    - Evaluation, logging and checkpoints happen between iterations (after step 6): an
      evaluation (`eval_every`) plays the deterministic policy for `eval_episodes` episodes.
    - Checkpoints hold the network, Adam's state, the normalisation statistics, torch's
      generator, beta and the counters. At every checkpoint the environments are reset with seeds
      derived from (seed, step) and the reward normaliser's running returns restart, in the
      uninterrupted run as in a resumed one, so a run resumed from a periodic checkpoint is
      bit-for-bit the run that never stopped. After Ctrl-C, the episodes in flight are cut there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bellman import seeding
from bellman.advantages import generalized_advantage_estimation
from bellman.checkpoint import expect_array
from bellman.config import TrainConfig, choices, interval
from bellman.envs import make_env
from bellman.envs.atari import is_atari
from bellman.errors import ConfigError, NonFiniteError
from bellman.losses import approximate_kl, clipped_surrogate_loss, value_loss
from bellman.nets import ActorCritic, actor_critic_for
from bellman.rollouts import (
    RunningMeanStd,
    TrainingEvaluation,
    clip_grad_norm,
    crossed,
    final_observations,
    load_optimizer,
    log_episodes,
    optimizer_arrays,
    resolve_device,
    state_dict_from_arrays,
)
from bellman.run import Run
from bellman.schedules import make_schedule


@dataclass(frozen=True)
class PPOConfig(TrainConfig):
    """Hyperparameters of PPO; the defaults are the paper's MuJoCo settings (Table 3)."""

    steps: int = field(default=1_000_000, metadata=interval("[1, inf)"))
    """Total number of environment steps of the run, summed over the n_envs environments."""
    n_envs: int = field(default=1, metadata=interval("[1, 256]"))
    """N: actors (environments of a gymnasium vector env) collecting experience in parallel."""
    n_steps: int = field(default=2048, metadata=interval("[1, inf)"))
    """T: steps each actor runs per iteration; a batch is N x T samples."""
    minibatch_size: int = field(default=64, metadata=interval("[1, inf)"))
    """M: samples per gradient step; must divide N x T (more minibatches: more, noisier steps)."""
    n_epochs: int = field(default=10, metadata=interval("[1, inf)"))
    """K: passes over the batch per iteration (too many: the policy moves too far from pi_old)."""
    learning_rate: float = field(default=3e-4, metadata=interval("(0, inf)"))
    """Adam step size (at the start of the run when anneal is on)."""
    adam_epsilon: float = field(default=1e-5, metadata=interval("(0, inf)"))
    """Adam's epsilon (1e-5 as in OpenAI baselines; PyTorch's default is 1e-8)."""
    gamma: float = field(default=0.99, metadata=interval("[0, 1]"))
    """Discount factor gamma."""
    gae_lambda: float = field(default=0.95, metadata=interval("[0, 1]"))
    """GAE lambda: 0 is the one-step TD error (biased), 1 the Monte-Carlo return (noisy)."""
    objective: str = field(
        default="clip", metadata=choices("clip", "adaptive_kl", "fixed_kl", "none")
    )
    """Surrogate L: clip (L^CLIP), adaptive_kl or fixed_kl (L^KLPEN), none (L^CPI, no limit)."""
    clip_range: float = field(default=0.2, metadata=interval("(0, 1)"))
    """eps of L^CLIP: r is clipped to [1 - eps, 1 + eps] (also the value clip range)."""
    kl_target: float = field(default=0.01, metadata=interval("(0, inf)"))
    """d_targ of adaptive_kl: beta halves when KL < d_targ / 1.5, doubles when KL > 1.5 d_targ."""
    kl_beta: float = field(default=1.0, metadata=interval("(0, inf)"))
    """beta of L^KLPEN: the initial value (adaptive_kl) or the fixed one (fixed_kl)."""
    target_kl: float = field(default=0.0, metadata=interval("[0, inf)"))
    """Stop the epochs of an iteration when a minibatch's KL estimate exceeds this (0: never)."""
    vf_coef: float = field(default=0.5, metadata=interval("[0, inf)"))
    """c1: weight of the value loss."""
    ent_coef: float = field(default=0.0, metadata=interval("[0, inf)"))
    """c2: weight of the entropy bonus S (more: more exploration, slower convergence)."""
    clip_value_loss: bool = False
    """Clip V around the rollout's values by eps too (OpenAI baselines' PPO2)."""
    normalize_advantages: bool = True
    """Standardise the advantages of each minibatch to mean 0, std 1."""
    anneal: bool = False
    """Anneal the learning rate and eps linearly to 0 over the run."""
    max_grad_norm: float = field(default=0.5, metadata=interval("(0, inf)"))
    """Gradients are rescaled so that their global L2 norm is at most this."""
    normalize_observations: bool = False
    """Standardise vector observations with running statistics (saved in checkpoints)."""
    normalize_rewards: bool = False
    """Scale rewards by the running std of the discounted return (for learning only)."""
    shared_trunk: bool = False
    """One trunk for the policy and the value (true), or a trunk each (false)."""
    network: str = field(default="auto", metadata=choices("auto", "mlp", "cnn"))
    """Trunk: cnn (Nature CNN) for [C, H, W] images, tanh mlp otherwise; auto picks."""
    hidden_size: int = field(default=64, metadata=interval("[1, inf)"))
    """Width of each hidden layer of the MLP trunks."""
    hidden_layers: int = field(default=2, metadata=interval("[0, 16]"))
    """Number of hidden layers of the MLP trunks."""
    log_std_init: float = field(default=0.0, metadata=interval("[-10, 2]"))
    """Box actions: initial log sigma of the Gaussian policy (0: sigma = 1)."""
    eval_every: int = field(default=0, metadata=interval("[0, inf)"))
    """Env steps between evaluations of the deterministic policy (0: none); eval_return_mean."""
    eval_episodes: int = field(default=10, metadata=interval("[1, inf)"))
    """Episodes per evaluation during training."""
    stop_when_solved: bool = False
    """Stop once an evaluation's mean return reaches the env's reward_threshold (CartPole: 475)."""
    frame_stack: int = field(default=4, metadata=interval("[1, 16]"))
    """Atari only: frames stacked into one observation."""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the network runs: auto uses CUDA when present."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch (1 is fastest on small, shared machines)."""

    def validate(self) -> None:
        batch, sizes = self.batch_size, f"n_envs x n_steps = {self.n_envs} x {self.n_steps}"
        if self.minibatch_size > batch:
            raise ConfigError(
                f"minibatch_size = {self.minibatch_size} is larger than the batch of {sizes} = "
                f"{batch} samples; make minibatch_size <= {batch} or collect more per iteration"
            )
        if batch % self.minibatch_size:
            raise ConfigError(
                f"minibatch_size = {self.minibatch_size} does not divide the batch of {sizes} = "
                f"{batch} samples; use a divisor of {batch} such as "
                f"{' or '.join(map(str, _nearest_divisors(batch, self.minibatch_size)))}"
            )
        if self.stop_when_solved and not self.eval_every:
            raise ConfigError("stop_when_solved needs evaluations: set eval_every > 0")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device = cuda but no CUDA GPU is visible; use device = auto or cpu")

    @property
    def batch_size(self) -> int:
        """N T: samples per iteration."""
        return self.n_envs * self.n_steps

    @property
    def hidden(self) -> tuple[int, ...]:
        return (self.hidden_size,) * self.hidden_layers


def _nearest_divisors(n: int, m: int) -> list[int]:
    """The divisors of n just below and just above m."""
    below = max(d for d in range(1, m + 1) if n % d == 0)
    above = [d for d in range(m, n + 1) if n % d == 0][:1]
    return [below, *above]


Config = PPOConfig
__all__ = [
    "Config",
    "check_checkpoint",
    "check_env",
    "load_policy",
    "make_eval_env",
    "make_train_env",
    "train",
]


# ---- environments -------------------------------------------------------------------------
def _single_env(config: PPOConfig, training: bool, render_mode: str | None = None) -> gym.Env:
    """One env before normalisation: Atari with DeepMind's preprocessing, others as registered
    (with episode statistics for training)."""
    if is_atari(config.env):
        from bellman.envs.atari import make_atari_env

        return make_atari_env(
            config.env, training=training, render_mode=render_mode, frame_stack=config.frame_stack
        )
    env = make_env(config.env, render_mode=render_mode)
    return gym.wrappers.RecordEpisodeStatistics(env) if training else env


def _check_normalization(space: gym.Space, config: PPOConfig) -> None:
    """Observation normalisation is for vectors: images are scaled by the CNN, indices are not
    quantities."""
    is_vector = isinstance(space, gym.spaces.Box) and len(space.shape) != 3
    if config.normalize_observations and not is_vector:
        raise ConfigError(
            f"normalize_observations standardises vector observations, but '{config.env}' has "
            f"{space}; set normalize_observations = false"
        )


def make_train_env(config: PPOConfig) -> gym.vector.VectorEnv:
    """The N actors: a vector env that resets finished envs in the same step (the final
    observation is in `infos["final_obs"]`), each env normalised with shared statistics."""
    probe = make_env(config.env)  # a clear error for a bad id before the vector env is built
    _check_normalization(probe.observation_space, config)
    probe.close()
    shared: dict[str, RunningMeanStd] = {}  # one set of running statistics for all N envs

    def one_env() -> gym.Env:
        env = _single_env(config, training=True)
        if config.normalize_observations:
            env = gym.wrappers.NormalizeObservation(env)
            rms = env.obs_rms
            env.obs_rms = shared.setdefault(
                "obs", RunningMeanStd(shape=rms.mean.shape, dtype=rms.mean.dtype)
            )
        if config.normalize_rewards:
            env = gym.wrappers.NormalizeReward(env, gamma=config.gamma)
            env.return_rms = shared.setdefault("return", RunningMeanStd(shape=()))
        return env

    return gym.vector.SyncVectorEnv(
        [one_env] * config.n_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


def make_eval_env(config: PPOConfig, render_mode: str | None = None) -> gym.Env:
    """One env as evaluation sees it: whole games, raw rewards, and the training run's
    observation statistics, frozen (`load_policy` or `train` puts them in)."""
    env = _single_env(config, training=False, render_mode=render_mode)
    if config.normalize_observations:
        env = gym.wrappers.NormalizeObservation(env)
        env.update_running_mean = False
    return env


def _wrapper(env: gym.Env, kind: type) -> gym.Wrapper | None:
    """The outermost wrapper of type `kind` around `env`, if any."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, kind):
            return env
        env = env.env
    return None


def check_env(envs: gym.vector.VectorEnv | gym.Env, config: PPOConfig | None = None) -> None:
    """PPO needs Discrete or finite Box actions, and its network must take the observations;
    say what is wrong otherwise (before any run directory is made)."""
    space = getattr(envs, "single_action_space", envs.action_space)
    spec = getattr(envs, "envs", [envs])[0].spec
    name = spec.id if spec is not None else "the environment"
    if isinstance(space, gym.spaces.Box):
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise ConfigError(
                f"PPO clips its Gaussian actions to the action bounds, but '{name}' has a Box "
                f"action space with infinite bounds (low {space.low.tolist()}, high "
                f"{space.high.tolist()}); give the env finite action bounds"
            )
    elif not isinstance(space, gym.spaces.Discrete):
        raise ConfigError(
            f"PPO needs Discrete or Box actions, but '{name}' has {type(space).__name__} actions"
        )
    if config is not None:
        obs_space = getattr(envs, "single_observation_space", envs.observation_space)
        build_policy(config, obs_space, space)


# ---- the pieces of the pseudocode ---------------------------------------------------------
def build_policy(config: PPOConfig, obs_space: gym.Space, action_space: gym.Space):
    """pi_theta and V_theta for this config and these spaces (one network, maybe one trunk)."""
    return actor_critic_for(
        obs_space, action_space, network=config.network, hidden=config.hidden,
        shared=config.shared_trunk, log_std_init=config.log_std_init, env_id=config.env,
    )  # fmt: skip


def env_actions(actions: torch.Tensor, space: gym.Space) -> np.ndarray:
    """What the envs are sent: Discrete actions as they are, Gaussian samples [B, D] reshaped to
    the space and clipped to its bounds (the log-probability stays that of the unclipped a)."""
    array = actions.cpu().numpy()
    if isinstance(space, gym.spaces.Box):
        array = array.reshape(len(array), *space.shape)
        return np.clip(array, space.low, space.high).astype(space.dtype)
    return array


def kl_penalty_loss(log_ratio: torch.Tensor, advantages: torch.Tensor, beta: float):
    """-L^KLPEN = -E[r A - beta KL[pi_old, pi]]; beta = 0 gives -L^CPI, the plain surrogate.

    Args:
        log_ratio: [B] log r = log pi_theta(a|s) - log pi_old(a|s); advantages: [B] A_t.
        beta: the penalty coefficient.
    """
    loss = -(log_ratio.exp() * advantages).mean()
    return loss + beta * approximate_kl(log_ratio) if beta else loss


def surrogate_loss(objective: str, log_ratio, advantages, clip_range: float, beta: float):
    """-L for the config's objective: the quantity step 5 minimises (see the docstring)."""
    if objective == "clip":
        return clipped_surrogate_loss(log_ratio, advantages, clip_range)[0]
    return kl_penalty_loss(log_ratio, advantages, 0.0 if objective == "none" else beta)


def adapt_kl_beta(beta: float, kl: float, kl_target: float) -> float:
    """The paper's rule after each update: halve beta when d < d_targ / 1.5 (the policy barely
    moved), double it when d > 1.5 d_targ (it moved too far), else keep it."""
    if kl < kl_target / 1.5:
        return beta / 2
    if kl > kl_target * 1.5:
        return beta * 2
    return beta


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[R - V] / Var[R]: 1 is a perfect critic, 0 no better than a constant (NaN when the
    returns do not vary)."""
    variance = float(returns.var())
    return math.nan if variance == 0 else 1.0 - float((returns - values).var()) / variance


@dataclass
class Rollout:
    """Steps 2-3's experience: T steps of N actors, every tensor [T, N, ...]."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor  # log pi_theta_old(a_t|s_t)
    values: torch.Tensor  # V(s_t) under theta_old
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_values: torch.Tensor  # V(final observation), where a time limit cut the episode


@dataclass
class Batch:
    """The rollout flattened to N T samples for step 5, with its advantages and value targets."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def run_policy(learner: Learner, envs, obs: np.ndarray, rollout: Rollout, run: Run):
    """Steps 2-3: the N actors run pi_theta_old for T timesteps together, filling `rollout`.

    Returns:
        (the observations to continue from, their values V(s_T) [N] for the bootstrap).
    """
    policy, n = learner.policy, envs.num_envs
    for t in range(rollout.obs.shape[0]):
        obs_t = learner.tensor(obs)
        with torch.no_grad():
            actions, log_probs, values = policy.act(obs_t)
        next_obs, rewards, terminated, truncated, infos = envs.step(
            env_actions(actions, learner.action_space)
        )
        learner.step += n
        rollout.obs[t], rollout.actions[t] = obs_t, actions
        rollout.log_probs[t], rollout.values[t] = log_probs, values
        rollout.rewards[t] = learner.tensor(rewards.astype(np.float32))
        rollout.terminated[t] = learner.tensor(terminated)
        rollout.truncated[t] = learner.tensor(truncated)
        if (truncated & ~terminated).any():  # a time limit: V(s_t+1) of the final observation
            with torch.no_grad():
                rollout.final_values[t] = policy.value(
                    learner.tensor(final_observations(next_obs, infos))
                )
        log_episodes(run, learner.step, infos)
        obs = next_obs
    with torch.no_grad():
        return obs, policy.value(learner.tensor(obs))


def estimate_advantages(rollout: Rollout, last_values: torch.Tensor, gamma: float, lam: float):
    """Step 4: A_1..A_T = GAE(gamma, lambda) for every actor, and the value targets A + V.

    V(s_t+1) is the next step's V(s), after the last step the bootstrap V(s_T), and where a time
    limit cut the episode the value of its final observation.
    """
    next_values = torch.cat([rollout.values[1:], last_values.unsqueeze(0)])
    cut = rollout.truncated & ~rollout.terminated
    next_values = torch.where(cut, rollout.final_values, next_values)
    episode_end = rollout.terminated | rollout.truncated
    return generalized_advantage_estimation(
        rollout.rewards, rollout.values, next_values, rollout.terminated, episode_end, gamma, lam
    )


# ---- the learner --------------------------------------------------------------------------
class Learner:
    """pi_theta and V_theta, Adam, the normalisation statistics, beta and the counters:
    everything a checkpoint holds."""

    def __init__(self, config: PPOConfig, envs: gym.vector.VectorEnv):
        self.config = config
        self.device = resolve_device(config.device)
        self.obs_space = envs.single_observation_space
        self.action_space = envs.single_action_space
        seeding.seed_everything(config.seed)
        torch.manual_seed(config.seed)
        self.policy: ActorCritic = build_policy(config, self.obs_space, self.action_space)
        self.policy.to(self.device)
        self.optimizer = torch.optim.Adam(  # fused: one kernel for all parameters
            self.policy.parameters(), lr=config.learning_rate, eps=config.adam_epsilon, fused=True
        )
        self.parameters = list(self.policy.parameters())
        first = envs.envs[0]
        observation_normalizer = _wrapper(first, gym.wrappers.NormalizeObservation)
        self.obs_rms = getattr(observation_normalizer, "obs_rms", None)
        return_normalizer = _wrapper(first, gym.wrappers.NormalizeReward)
        self.return_rms = getattr(return_normalizer, "return_rms", None)
        self.reward_normalizers = [
            wrapper
            for wrapper in (_wrapper(env, gym.wrappers.NormalizeReward) for env in envs.envs)
            if wrapper is not None
        ]
        self.step = 0
        self.iterations = 0
        self.kl_beta = config.kl_beta

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def optimize(self, batch: Batch, learning_rate: float, clip_range: float) -> dict[str, float]:
        """Step 5: K epochs of minibatch gradient steps on -L^{+VF+S}; returns the diagnostics."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        config = self.config
        history: list[tuple[torch.Tensor, ...]] = []
        epochs = 0
        while epochs < config.n_epochs and self.epoch(batch, clip_range, history):
            epochs += 1
        with torch.no_grad():  # d: how far theta moved from theta_old, on the whole batch
            log_probs, _, _ = self.policy.evaluate(batch.obs, batch.actions)
            kl = float(approximate_kl(log_probs - batch.log_probs))
        means = torch.stack([torch.stack(s) for s in history]).mean(0).tolist() if history else []
        policy_loss, value_loss_, entropy, clip_fraction = means or [math.nan] * 4
        if not (math.isfinite(kl) and math.isfinite(policy_loss) and math.isfinite(value_loss_)):
            raise NonFiniteError(
                f"PPO loss is not finite at step {self.step} (policy loss {policy_loss}, "
                f"value loss {value_loss_}, KL {kl})"
            )
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss_,
            "entropy": entropy,
            "approx_kl": kl,
            "clip_fraction": clip_fraction,
            "explained_variance": explained_variance(batch.values, batch.returns),
            "learning_rate": learning_rate,
            "clip_range": clip_range,
            "epochs": epochs,
        }

    def epoch(self, batch: Batch, clip_range: float, history: list) -> bool:
        """One pass over the batch in a fresh random order, in minibatches of M; False when
        target_kl stopped it (the policy moved far enough this iteration)."""
        order = torch.randperm(len(batch.returns)).to(self.device)  # torch's CPU generator
        for indices in order.split(self.config.minibatch_size):
            step = self.gradient_step(batch, indices, clip_range)
            if step is None:
                return False
            history.append(step)
        return True

    def gradient_step(self, batch: Batch, indices: torch.Tensor, clip_range: float):
        """One minibatch step of step 5; None (and no step) when target_kl stops the epochs.

        Returns:
            (policy loss, value loss, entropy, clip fraction) as detached scalars.
        """
        config = self.config
        log_probs, entropy, values = self.policy.evaluate(
            batch.obs[indices], batch.actions[indices]
        )
        log_ratio = log_probs - batch.log_probs[indices]
        if config.target_kl and float(approximate_kl(log_ratio.detach())) > config.target_kl:
            return None
        advantages = batch.advantages[indices]
        if config.normalize_advantages and len(indices) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = surrogate_loss(
            config.objective, log_ratio, advantages, clip_range, self.kl_beta
        )
        value_clip = clip_range if config.clip_value_loss else None
        critic_loss = value_loss(values, batch.returns[indices], batch.values[indices], value_clip)
        entropy = entropy.mean()
        loss = policy_loss - config.ent_coef * entropy + config.vf_coef * critic_loss
        for parameter in self.parameters:
            parameter.grad = None
        loss.backward()
        clip_grad_norm(self.parameters, config.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            clipped = ((log_ratio.exp() - 1.0).abs() > clip_range).float().mean()
        return policy_loss.detach(), critic_loss.detach(), entropy.detach(), clipped

    # ---- checkpoints -----------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"policy/{k}": v.cpu().numpy() for k, v in self.policy.state_dict().items()}
        arrays.update(optimizer_arrays(self.optimizer))
        arrays["torch_rng"] = torch.get_rng_state().numpy()
        if self.device.type == "cuda":  # actions are sampled on the GPU with its own generator
            arrays["cuda_rng"] = torch.cuda.get_rng_state(self.device).numpy()
        for name, rms in (("obs", self.obs_rms), ("return", self.return_rms)):
            if rms is not None:
                arrays.update(statistics_arrays(rms, name))
        return arrays

    def state(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "kl_beta": self.kl_beta,
            "python_rng": seeding.python_random_state(),
        }

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        check_policy_arrays(arrays, self.policy)
        self.policy.load_state_dict(state_dict_from_arrays(arrays, "policy/", self.device))
        load_optimizer(self.optimizer, arrays)
        torch.set_rng_state(torch.from_numpy(arrays["torch_rng"].copy()))
        if self.device.type == "cuda" and "cuda_rng" in arrays:
            torch.cuda.set_rng_state(torch.from_numpy(arrays["cuda_rng"].copy()), self.device)
        for name, rms in (("obs", self.obs_rms), ("return", self.return_rms)):
            if rms is not None:
                load_statistics(rms, arrays, name)
        self.step = int(meta["step"])
        self.iterations = int(meta["state"]["iterations"])
        self.kl_beta = float(meta["state"]["kl_beta"])
        seeding.set_python_random_state(meta["state"]["python_rng"])


def statistics_arrays(rms, name: str) -> dict[str, np.ndarray]:
    """A gymnasium RunningMeanStd as arrays `normalize/<name>_{mean,var,count}` (at least 1-d:
    the return statistics are scalars)."""
    return {
        f"normalize/{name}_mean": np.atleast_1d(rms.mean),
        f"normalize/{name}_var": np.atleast_1d(rms.var),
        f"normalize/{name}_count": np.asarray([rms.count], dtype=np.float64),
    }


def load_statistics(rms, arrays: dict[str, np.ndarray], name: str) -> None:
    """Set a RunningMeanStd (in place: the N envs share it) from `statistics_arrays`."""
    shape = np.shape(rms.mean)
    stored = np.shape(np.atleast_1d(rms.mean))
    for field_name in ("mean", "var"):
        value = expect_array(arrays, f"normalize/{name}_{field_name}", stored, "checkpoint")
        setattr(rms, field_name, value.reshape(shape).copy())
    rms.count = float(expect_array(arrays, f"normalize/{name}_count", (1,), "checkpoint")[0])


def check_policy_arrays(arrays, policy: ActorCritic) -> None:
    """Every tensor of the network is in the checkpoint with the right shape."""
    for key, value in policy.state_dict().items():
        expect_array(arrays, f"policy/{key}", tuple(value.shape), "checkpoint")


def check_checkpoint(arrays: dict[str, np.ndarray], envs, config: PPOConfig) -> None:
    """The checkpoint's network and statistics have the shapes this config and env give
    (checked before a resume writes anything)."""
    obs_space = getattr(envs, "single_observation_space", envs.observation_space)
    action_space = getattr(envs, "single_action_space", envs.action_space)
    check_policy_arrays(arrays, build_policy(config, obs_space, action_space))
    if config.normalize_observations:
        expect_array(arrays, "normalize/obs_mean", obs_space.shape, "checkpoint")
    if config.normalize_rewards:
        expect_array(arrays, "normalize/return_var", (1,), "checkpoint")


# ---- the loop -----------------------------------------------------------------------------
def _boundary(learner: Learner, envs, config: PPOConfig) -> np.ndarray:
    """Start fresh episodes in every env, seeded from (seed, step), and restart the reward
    normaliser's running returns: at step 0 and after every checkpoint, so resumed and
    uninterrupted runs see the same episodes."""
    for wrapper in learner.reward_normalizers:
        wrapper.discounted_reward = np.array([0.0])
    obs, _ = envs.reset(seed=seeding.boundary_seeds(config.seed, learner.step, config.n_envs))
    return obs


def deterministic_policy(network: ActorCritic, action_space: gym.Space, device):
    """obs -> the mode of pi(.|s) as the env takes it (an int, or mu clipped to the bounds)."""
    discrete = isinstance(action_space, gym.spaces.Discrete)

    def policy(obs):
        with torch.no_grad():
            mode = network.mode(torch.as_tensor(np.asarray(obs)[None], device=device))
        action = env_actions(mode, action_space)[0]
        return int(action) if discrete else action

    return policy


def _rollout_storage(learner: Learner, config: PPOConfig) -> Rollout:
    """Zeroed [T, N, ...] tensors for one iteration's experience."""
    shape, device = (config.n_steps, config.n_envs), learner.device
    obs_dtype = torch.from_numpy(np.zeros(0, learner.obs_space.dtype)).dtype
    box = isinstance(learner.action_space, gym.spaces.Box)
    action_shape = (int(np.prod(learner.action_space.shape)),) if box else ()
    return Rollout(
        obs=torch.zeros((*shape, *learner.obs_space.shape), dtype=obs_dtype, device=device),
        actions=torch.zeros(
            (*shape, *action_shape), dtype=torch.float32 if box else torch.int64, device=device
        ),
        log_probs=torch.zeros(shape, device=device),
        values=torch.zeros(shape, device=device),
        rewards=torch.zeros(shape, device=device),
        terminated=torch.zeros(shape, dtype=torch.bool, device=device),
        truncated=torch.zeros(shape, dtype=torch.bool, device=device),
        final_values=torch.zeros(shape, device=device),
    )


def train(config: PPOConfig, envs: gym.vector.VectorEnv, run: Run) -> Learner:
    """Run PPO for `config.steps` env steps (see the module docstring for the pseudocode)."""
    torch.set_num_threads(config.torch_threads)
    learner = Learner(config, envs)
    if run.restored is not None:
        learner.restore(*run.restored)
    kind = "linear" if config.anneal else "constant"
    learning_rate = make_schedule(kind, config.learning_rate, 0.0, 1.0, config.steps)
    clip_range = make_schedule(kind, config.clip_range, 0.0, 1.0, config.steps)
    evaluation = TrainingEvaluation(config, lambda: make_eval_env(config))
    if evaluation.env is not None and learner.obs_rms is not None:  # live statistics, read-only
        _wrapper(evaluation.env, gym.wrappers.NormalizeObservation).obs_rms = learner.obs_rms
    rollout = _rollout_storage(learner, config)  # [T, N, ...]: obs, actions, log pi_old, V, r

    with run.session(start_step=learner.step):
        obs = _boundary(learner, envs, config)
        while learner.step < config.steps and not run.stop_requested:  # 1. for iteration
            before = learner.step
            # 2.-3. for actor = 1..N: run pi_theta_old for T timesteps (the N envs together)
            obs, last_values = run_policy(learner, envs, obs, rollout, run)
            # 4. advantage estimates A_1..A_T: GAE(gamma, lambda), for every actor
            advantages, returns = estimate_advantages(
                rollout, last_values, config.gamma, config.gae_lambda
            )
            batch = Batch(  # the N T samples, flattened
                rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1),
                rollout.log_probs.flatten(), rollout.values.flatten(),
                advantages.flatten(), returns.flatten(),
            )  # fmt: skip
            # 5. optimize the surrogate L wrt theta: K epochs, minibatches of M <= NT samples
            beta = learner.kl_beta
            stats = learner.optimize(batch, learning_rate(before), clip_range(before))
            if config.objective == "adaptive_kl":  # L^KLPEN: adapt beta to the measured d
                learner.kl_beta = adapt_kl_beta(beta, stats["approx_kl"], config.kl_target)
            if config.objective in ("adaptive_kl", "fixed_kl"):
                stats["kl_beta"] = beta
            # 6. theta_old <- theta: the next rollout samples (and scores) the updated policy
            learner.iterations += 1

            evaluated = evaluation.due(before, learner.step)
            if evaluated:
                evaluation.run(
                    deterministic_policy(learner.policy, learner.action_space, learner.device)
                )
            due = crossed(before, learner.step, config.log_every) or learner.step >= config.steps
            if evaluated or due:
                columns = evaluation.columns()  # the same columns in every row
                run.log(learner.step, iterations=learner.iterations, **stats, **columns)
            solved = evaluation.solved()
            if run.checkpoint_due(learner.step) or learner.step >= config.steps or solved:
                run.save(learner.step, learner.arrays(), learner.state())
                if solved:
                    run.notes.append(evaluation.solved_note(learner.step))
                    break
                if learner.step < config.steps and not run.stop_requested:
                    obs = _boundary(learner, envs, config)
    evaluation.close()
    return learner


def load_policy(arrays, env: gym.Env, config: PPOConfig, seed: int = 0):
    """The deterministic policy (the mode of pi) of a checkpoint, on an env from
    `make_eval_env`, whose observation statistics it sets from the checkpoint (frozen).
    `seed` is not used: the policy draws no random numbers."""
    check_env(env, config)
    network = build_policy(config, env.observation_space, env.action_space)
    check_policy_arrays(arrays, network)
    network.load_state_dict(state_dict_from_arrays(arrays, "policy/", torch.device("cpu")))
    if config.normalize_observations:
        normalizer = _wrapper(env, gym.wrappers.NormalizeObservation)
        if normalizer is None:
            raise ConfigError(
                "this run normalises observations: evaluate it on an env from "
                "bellman.algos.ppo.make_eval_env, which applies the saved statistics"
            )
        load_statistics(normalizer.obs_rms, arrays, "obs")
        normalizer.update_running_mean = False
    return deterministic_policy(network, env.action_space, torch.device("cpu"))
