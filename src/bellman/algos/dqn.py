"""DQN: deep Q-learning with experience replay and a target network, and its improvements.

Mnih et al., "Human-level control through deep reinforcement learning", Nature 518, 2015:

    Algorithm 1: deep Q-learning with experience replay
     1. Initialize replay memory D to capacity N
     2. Initialize action-value function Q with random weights theta
     3. Initialize target action-value function Q^ with weights theta- = theta
     4. For episode = 1, M do
     5.     Initialize sequence s_1 = {x_1} and preprocessed sequence phi_1 = phi(s_1)
     6.     For t = 1, T do
     7.         With probability epsilon select a random action a_t,
                otherwise select a_t = argmax_a Q(phi(s_t), a; theta)
     8.         Execute action a_t in emulator and observe reward r_t and image x_t+1
     9.         Set s_t+1 = s_t, a_t, x_t+1 and preprocess phi_t+1 = phi(s_t+1)
    10.         Store transition (phi_t, a_t, r_t, phi_t+1) in D
    11.         Sample random minibatch of transitions (phi_j, a_j, r_j, phi_j+1) from D
    12.         Set y_j = r_j if the episode terminates at step j+1,
                    otherwise y_j = r_j + gamma max_a' Q^(phi_j+1, a'; theta-)
    13.         Perform a gradient descent step on (y_j - Q(phi_j, a_j; theta))^2 w.r.t. theta
    14.         Every C steps reset Q^ = Q
    15.     End For
    16. End For

The improvements, each a config switch:
    double_dqn   (van Hasselt et al. 2016)  y_j = r_j + gamma Q^(phi_j+1, argmax_a' Q(phi_j+1, a'))
    dueling      (Wang et al. 2016)         Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')
    prioritized  (Schaul et al. 2016)       P(j) ~ |delta_j|^alpha, weights (N P(j))^-beta
    n_step       (Sutton 1988; Hessel 2018) y_j = G_j^(n) + gamma^n max_a' Q^(phi_j+n, a')

Deviations and details:
    - Steps 5-10 run on `n_envs` environments at once (a gymnasium vector env); `steps`,
      `learning_starts`, `train_frequency`, `target_update_interval` and the epsilon schedule
      count env steps summed over the environments, as Stable-Baselines3 does.
    - Step 11 waits until `learning_starts` env steps (the warm-up) and then runs
      `gradient_steps` updates every `train_frequency` env steps. Within such a round neither
      Q^ nor D changes, so (uniform replay, plain targets) its minibatches are sampled at once
      and their y_j computed in one pass of Q^.
    - Step 12 uses `terminated` only: a time limit (truncation) still bootstraps.
    - Step 13 uses the Huber loss (quadratic within |delta| < 1, as the paper's error clipping),
      Adam and gradient-norm clipping.
    - Step 14 copies theta into theta- (tau = 1) or moves it by Polyak averaging
      theta- <- tau theta + (1 - tau) theta- (tau < 1).
    - Checkpoints hold the networks, the optimizer, the replay memory (unless save_replay is
      off), the step counters and the generator states. At every checkpoint the environments are
      reset with seeds derived from (seed, step), in the uninterrupted run as in a resumed one,
      so a run resumed from a checkpoint is bit-for-bit the run that never stopped. Ctrl-C or
      SIGTERM makes the run train on to its next checkpoint and stop there
      (`bellman.loop.after_iteration`).
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bellman import seeding
from bellman.algos import check_checkpoint_arrays
from bellman.buffers import ReplayMemory
from bellman.config import DeepConfig, choices, interval
from bellman.envs import (
    check_vector_settings,
    final_observations,
    log_episodes,
    make_env,
    make_vector_env,
)
from bellman.errors import CheckpointError, ConfigError, NonFiniteError
from bellman.evaluation import TrainingEvaluation
from bellman.loop import after_iteration, crossed
from bellman.nets import NatureCNN, QNetwork, resolve_device, trunk_for
from bellman.nets.fast import (
    NumpyGreedy,
    bf16_convolutions,
    channels_last_inputs,
    clip_grad_norm,
    step_optimizer,
)
from bellman.run import Run
from bellman.schedules import make_schedule
from bellman.torch_state import load_module, load_optimizer, optimizer_arrays


@dataclass(frozen=True)
class DQNConfig(DeepConfig):
    """Hyperparameters of DQN; the defaults are the Nature paper's (with Adam)."""

    steps: int = field(default=10_000_000, metadata=interval("[1, inf)"))
    """Total number of environment steps of the run, summed over the n_envs environments."""
    n_envs: int = field(default=1, metadata=interval("[1, 256]"))
    """Number of environments collecting experience in parallel (a gymnasium vector env)."""
    gamma: float = field(default=0.99, metadata=interval("[0, 1]"))
    """Discount factor gamma."""
    buffer_size: int = field(default=1_000_000, metadata=interval("[1, inf)"))
    """Capacity N of the replay memory D, in transitions."""
    batch_size: int = field(default=32, metadata=interval("[1, inf)"))
    """Transitions per minibatch."""
    learning_starts: int = field(default=50_000, metadata=interval("[0, inf)"))
    """Env steps of warm-up (random-ish experience) before the first gradient step."""
    train_frequency: int = field(default=4, metadata=interval("[1, inf)"))
    """Env steps between two rounds of gradient steps."""
    gradient_steps: int = field(default=1, metadata=interval("[1, inf)"))
    """Gradient steps per round."""
    target_update_interval: int = field(default=10_000, metadata=interval("[1, inf)"))
    """C: env steps between two target-network updates."""
    tau: float = field(default=1.0, metadata=interval("(0, 1]"))
    """Target update: 1 copies theta into theta-; < 1 is Polyak averaging with this weight."""
    learning_rate: float = field(default=1e-4, metadata=interval("(0, inf)"))
    """Adam step size."""
    adam_epsilon: float = field(default=1.5e-4, metadata=interval("(0, inf)"))
    """Adam's epsilon (1.5e-4 as in Rainbow; PyTorch's default is 1e-8)."""
    max_grad_norm: float = field(default=10.0, metadata=interval("(0, inf)"))
    """Gradients are rescaled so that their global L2 norm is at most this."""
    loss: str = field(default="huber", metadata=choices("huber", "mse"))
    """TD loss: huber (the paper's error clipping) or mse."""
    epsilon: float = field(default=1.0, metadata=interval("[0, 1]"))
    """Exploration rate epsilon at the start of the run."""
    epsilon_end: float = field(default=0.1, metadata=interval("[0, 1]"))
    """Exploration rate after the linear decay."""
    epsilon_fraction: float = field(default=0.1, metadata=interval("(0, 1]"))
    """Fraction of the run over which epsilon decays linearly."""
    eval_epsilon: float = field(default=0.05, metadata=interval("[0, 1]"))
    """Exploration rate of `bellman eval` and of the evaluations during training (Nature: 0.05)."""
    double_dqn: bool = False
    """Double DQN: the online network picks a', the target network evaluates it."""
    dueling: bool = False
    """Dueling head: Q = V + A - mean(A)."""
    prioritized: bool = False
    """Proportional prioritized replay with importance-sampling weights (Ape-X's replay,
    backend = ray, always is)."""
    priority_alpha: float = field(default=0.6, metadata=interval("[0, 1]"))
    """Prioritization exponent alpha (0 = uniform)."""
    priority_beta: float = field(default=0.4, metadata=interval("[0, 1]"))
    """Importance-sampling exponent beta at the start, annealed linearly to 1 over the run."""
    priority_eps: float = field(default=1e-6, metadata=interval("(0, inf)"))
    """Added to |delta| so that no transition has priority 0."""
    n_step: int = field(default=1, metadata=interval("[1, 100]"))
    """Length n of the multi-step return."""
    network: str = field(default="auto", metadata=choices("auto", "mlp", "cnn"))
    """Trunk: cnn (Nature CNN) for [C, H, W] images, mlp otherwise; auto picks."""
    hidden_size: int = field(default=256, metadata=interval("[1, inf)"))
    """Width of each hidden layer of the MLP trunk."""
    hidden_layers: int = field(default=2, metadata=interval("[0, 16]"))
    """Number of hidden layers of the MLP trunk."""
    save_replay: bool = True
    """Store the replay memory in checkpoints (needed for an exact resume; large for Atari)."""
    apex_epsilon: float = field(default=0.4, metadata=interval("[0, 1]"))
    """Ape-X (backend = ray): actor i of N explores with eps_i = apex_epsilon^(1 + apex_alpha
    i / (N - 1)), fixed for the run (Horgan et al. 2018: 0.4)."""
    apex_alpha: float = field(default=7.0, metadata=interval("[0, inf)"))
    """Ape-X: the exponent's spread alpha of the actors' exploration rates (the paper: 7)."""
    actor_batch: int = field(default=50, metadata=interval("[1, inf)"))
    """Ape-X: B, env steps an actor gathers in its local buffer before it computes their
    priorities and sends them to its replay shard (the paper: 50)."""
    publish_every: int = field(default=100, metadata=interval("[1, inf)"))
    """Ape-X: K, gradient steps between two versions of the weights the actors fetch."""
    replay_shards: int = field(default=1, metadata=interval("[1, 64]"))
    """Ape-X: replay shards (Ray actors holding a part of D each; actor i writes to shard
    i mod replay_shards); the learner samples across them by priority."""

    def validate(self) -> None:
        if self.buffer_size < self.batch_size:
            raise ConfigError(
                f"the replay capacity (buffer_size = {self.buffer_size}) is smaller than the "
                f"batch (batch_size = {self.batch_size}); make buffer_size >= batch_size"
            )
        needed = self.n_envs * (self.n_step + self.frame_stack + 2)
        if self.buffer_size < needed:
            raise ConfigError(
                f"buffer_size = {self.buffer_size} is too small for n_envs = {self.n_envs}, "
                f"n_step = {self.n_step} and frame_stack = {self.frame_stack}: use >= {needed}"
            )
        if self.backend == "ray":  # Ape-X: one ring per actor in its replay shard
            actors = self.workers or self.n_envs
            rings = -(-actors // min(self.replay_shards, actors))
            needed = (self.n_step + self.frame_stack + 2) * rings * self.replay_shards
            if self.buffer_size < needed:
                raise ConfigError(
                    f"buffer_size = {self.buffer_size} is too small for {actors} Ape-X actors in "
                    f"{self.replay_shards} replay shard(s) with n_step = {self.n_step}: use >= "
                    f"{needed}"
                )
        check_vector_settings(self)
        super().validate()

    @property
    def hidden(self) -> tuple[int, ...]:
        return (self.hidden_size,) * self.hidden_layers


Config = DQNConfig


# ---- environments -------------------------------------------------------------------------
def _is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def make_eval_env(config: DQNConfig, render_mode: str | None = None) -> gym.Env:
    """One environment as evaluation sees it: whole games, raw scores (no reward clipping)."""
    if _is_atari(config.env):
        from bellman.envs.atari import make_atari_env

        return make_atari_env(
            config.env, training=False, render_mode=render_mode, frame_stack=config.frame_stack
        )
    return make_env(config.env, render_mode=render_mode)


def _make_training_env(config: DQNConfig):
    if _is_atari(config.env):
        from bellman.envs.atari import make_atari_env

        return make_atari_env(config.env, training=True, frame_stack=config.frame_stack)
    return gym.wrappers.RecordEpisodeStatistics(make_env(config.env))


def make_train_env(config: DQNConfig) -> gym.vector.VectorEnv:
    """`n_envs` training environments in a vector env that resets finished ones in the same step
    (so the final observation of an episode is in `infos["final_obs"]`)."""
    make_env(config.env).close()  # a clear error for a bad id before the vector env is built
    return make_vector_env(config, lambda: _make_training_env(config))


def check_env(envs: gym.vector.VectorEnv | gym.Env, config: DQNConfig | None = None) -> None:
    """DQN needs a Discrete action space, and the config's network must take the observations;
    say what is wrong otherwise (before any run directory is made)."""
    space = getattr(envs, "single_action_space", envs.action_space)
    if not isinstance(space, gym.spaces.Discrete):
        spec = getattr(envs, "envs", [envs])[0].spec
        name = spec.id if spec is not None else "the environment"
        raise ConfigError(
            f"DQN needs a Discrete action space, but '{name}' has "
            f"{type(space).__name__}{getattr(space, 'shape', '')} actions; "
            "DQN picks argmax_a Q(s, a) over a finite set of actions"
        )
    if config is not None:
        obs_space = getattr(envs, "single_observation_space", envs.observation_space)
        trunk_for(obs_space, config.network, config.hidden, config.env)


# ---- the pieces of the pseudocode ---------------------------------------------------------
def build_q_network(config: DQNConfig, obs_space: gym.Space, n_actions: int) -> QNetwork:
    """Q(s, .; theta) for this config and observation space (step 2)."""
    trunk = trunk_for(obs_space, config.network, config.hidden, config.env)
    return QNetwork(trunk, n_actions, dueling=config.dueling)


def exploration_draws(n: int, n_actions: int, epsilon: float, rng: np.random.Generator):
    """For n states: which ones explore (probability epsilon) and the random action each would
    take, from one call to the generator."""
    uniform = rng.random((2, n))
    return uniform[0] < epsilon, (uniform[1] * n_actions).astype(np.int64)


def epsilon_greedy_actions(q_values: torch.Tensor, epsilon: float, rng: np.random.Generator):
    """Step 7 for a batch of states: [N, A] values -> [N] actions."""
    explore, random_actions = exploration_draws(len(q_values), q_values.shape[1], epsilon, rng)
    return np.where(explore, random_actions, q_values.argmax(dim=1).cpu().numpy())


def td_target(returns, discounts, next_q_target, next_q_online=None):
    """Step 12: y = G + discount * Q^(s', a'), a' = argmax Q^ (DQN) or argmax Q (double DQN).

    Args:
        returns: [B] (n-step) returns; discounts: [B] gamma^k, 0 after a terminal state.
        next_q_target: [B, A] Q^(phi_j+k, .); next_q_online: [B, A] Q(phi_j+k, .) for double DQN.
    """
    chooser = next_q_target if next_q_online is None else next_q_online
    next_actions = chooser.argmax(dim=1, keepdim=True)
    return returns + discounts * next_q_target.gather(1, next_actions).squeeze(1)


def td_loss(q_taken, targets, weights, kind: str):
    """Step 13's loss, averaged over the batch with importance weights (None: all ones):
    Huber with delta = 1 (the paper's error clipping) or half the squared error."""
    if weights is None:
        if kind == "huber":
            return nn.functional.smooth_l1_loss(q_taken, targets)
        return 0.5 * nn.functional.mse_loss(q_taken, targets)
    if kind == "huber":
        per_sample = nn.functional.smooth_l1_loss(q_taken, targets, reduction="none")
    else:
        per_sample = 0.5 * (q_taken - targets) ** 2
    return (weights * per_sample).mean()


def update_target(target_network: nn.Module, q_network: nn.Module, tau: float) -> None:
    """Step 14: theta- <- theta (tau = 1) or theta- <- tau theta + (1 - tau) theta-."""
    with torch.no_grad():
        pairs = zip(target_network.parameters(), q_network.parameters(), strict=True)
        for target, online in pairs:
            target.copy_(online) if tau >= 1.0 else target.lerp_(online, tau)
        for target, online in zip(target_network.buffers(), q_network.buffers(), strict=True):
            target.copy_(online)


# ---- the learner --------------------------------------------------------------------------
class DQNLearner:
    """Q, Q^, the optimizer, D and the counters: everything a checkpoint holds."""

    def __init__(self, config: DQNConfig, envs: gym.vector.VectorEnv, replay: bool = True):
        """replay = False: no replay memory here (Ape-X's is in its replay shards)."""
        self.config = config
        self.device = resolve_device(config.device)
        obs_space = envs.single_observation_space
        self.n_actions = int(envs.single_action_space.n)
        self.rng = seeding.seed_everything(config.seed)
        torch.manual_seed(config.seed)
        frame_stack = config.frame_stack if _is_atari(config.env) else 1
        self.replay_memory = None  # (Ape-X: D is in its replay shards)
        if replay:
            self.replay_memory = ReplayMemory(  # 1. replay memory D of capacity N
                config.buffer_size,
                obs_space.shape or (),
                obs_space.dtype,
                config.n_envs,
                frame_stack=frame_stack,
                n_step=config.n_step,
                gamma=config.gamma,
                prioritized=config.prioritized,
                alpha=config.priority_alpha,
                eps=config.priority_eps,
            )
        self.q_network = build_q_network(config, obs_space, self.n_actions).to(self.device)  # 2.
        self.target_network = copy.deepcopy(self.q_network)  # 3. theta- = theta
        self.target_network.requires_grad_(False)
        for network in (self.q_network, self.target_network):  # speed switches (nets.fast)
            if config.channels_last and isinstance(self.q_network.trunk, NatureCNN):
                channels_last_inputs(network)
            if config.bf16_autocast:  # (the config refused it for networks without a CNN)
                bf16_convolutions(network)
        self.optimizer = torch.optim.Adam(  # fused: one kernel for all parameters (CPU and CUDA)
            self.q_network.parameters(), lr=config.learning_rate, eps=config.adam_epsilon,
            fused=True,
        )  # fmt: skip
        self.parameters = list(self.q_network.parameters())
        numpy_greedy = NumpyGreedy.supports(self.q_network)  # on a small CPU MLP (nets.fast)
        self.numpy_greedy = NumpyGreedy(self.q_network) if numpy_greedy else None
        self.step = 0
        self.updates = 0
        #: Importance weights in the loss: prioritized replay, which Ape-X's always is.
        self.prioritized = config.prioritized or config.backend == "ray"

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def act(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """Step 7 for every environment (the network runs only if some env acts greedily)."""
        explore, actions = exploration_draws(len(obs), self.n_actions, epsilon, self.rng)
        if not explore.all():
            if self.numpy_greedy is not None:
                greedy = self.numpy_greedy(obs)
            else:
                with torch.no_grad():
                    greedy = self.q_network(self.tensor(obs)).argmax(dim=1).cpu().numpy()
            actions = np.where(explore, actions, greedy)
        return actions

    def training_round(self, updates: int, beta: float) -> tuple[list[float], list[float]]:
        """Steps 11-13 `updates` times in a row; returns the losses and mean Qs.

        Q^ and D do not change during a round (step 14 and new transitions come after it), so
        with uniform replay and plain DQN targets the round's minibatches are drawn in one call
        and all their y_j come from one forward pass of Q^: the same distribution as drawing them
        one by one, with a fraction of the calls. Prioritized replay (priorities change after
        every step) and double DQN (its argmax uses the current Q) go one minibatch at a time.
        """
        size = self.config.batch_size
        if self.config.prioritized or self.config.double_dqn:
            losses, q_means = [], []
            for _ in range(updates):
                batch = self.replay_memory.sample(size, self.rng, beta)  # 11.
                loss, q_mean, td_errors = self.update(batch)
                if self.config.prioritized:
                    self.replay_memory.update_priorities(batch.indices, td_errors)
                losses.append(loss)
                q_means.append(q_mean)
            return losses, q_means
        batch = self.replay_memory.sample(size * updates, self.rng, beta)  # 11. (all at once)
        obs, actions, targets, _ = self._prepare(batch)  # 12. y_j for the whole round
        results = [
            self._descend(obs[k : k + size], actions[k : k + size], targets[k : k + size], None)
            for k in range(0, size * updates, size)
        ]  # 13. one gradient step per minibatch
        return [r[0] for r in results], [float(r[1].detach().mean()) for r in results]

    def _prepare(self, batch):
        """Tensors of a sampled batch and its targets y_j (step 12)."""
        obs, next_obs = self.tensor(batch.obs), self.tensor(batch.next_obs)
        actions = self.tensor(batch.actions).unsqueeze(1)
        with torch.no_grad():
            next_q_target = self.target_network(next_obs)
            next_q_online = self.q_network(next_obs) if self.config.double_dqn else None
            targets = td_target(
                self.tensor(batch.returns), self.tensor(batch.discounts), next_q_target,
                next_q_online,
            )  # fmt: skip
        weights = self.tensor(batch.weights) if self.prioritized else None
        return obs, actions, targets, weights

    def update(self, batch) -> tuple[float, float, np.ndarray]:
        """Steps 12-13 on one sampled minibatch: (loss, mean Q, the TD errors delta_j, from
        which prioritized replay sets the new priorities)."""
        obs, actions, targets, weights = self._prepare(batch)
        loss, q_taken = self._descend(obs, actions, targets, weights)
        td_errors = (targets - q_taken).detach().cpu().numpy()
        return loss, float(q_taken.detach().mean()), td_errors

    def _descend(self, obs, actions, targets, weights) -> tuple[float, torch.Tensor]:
        """Step 13 once: a gradient step on the TD loss; returns it and Q(phi_j, a_j)."""
        q_taken = self.q_network(obs).gather(1, actions).squeeze(1)
        loss = td_loss(q_taken, targets, weights, self.config.loss)
        for parameter in self.parameters:
            parameter.grad = None
        loss.backward()
        clip_grad_norm(self.parameters, self.config.max_grad_norm)
        step_optimizer(self.optimizer)
        self.updates += 1
        return float(loss.detach()), q_taken

    # ---- checkpoints -----------------------------------------------------------------------
    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, state) of a checkpoint: Q, Q^, Adam's state, D, the counters and every
        generator (`seeding.capture_rngs`: Python's, torch's CPU and CUDA ones, the agent's)."""
        arrays = {f"q/{k}": v.cpu().numpy() for k, v in self.q_network.state_dict().items()}
        target = self.target_network.state_dict()
        arrays.update({f"target/{k}": v.cpu().numpy() for k, v in target.items()})
        arrays.update(optimizer_arrays(self.optimizer))
        rng_arrays, rng_state = seeding.capture_rngs(self.device, numpy_rng=self.rng)
        arrays.update(rng_arrays)
        has_replay = self.config.save_replay and self.replay_memory is not None
        if has_replay:
            arrays.update(self.replay_memory.state_arrays())
        state = {"updates": self.updates, **rng_state, "has_replay": has_replay}
        return arrays, state

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Put a checkpoint back. Every array is checked against the live networks, optimizer
        and replay memory (key set, shape, dtype) and every state value against what this
        learner saves before it is used: a file that does not fit is a CheckpointError."""
        where = f"checkpoint step-{meta['step']}"
        state = meta["state"]
        updates, has_replay = state.get("updates"), state.get("has_replay")
        if type(updates) is not int or updates < 0 or type(has_replay) is not bool:
            raise CheckpointError(
                f"{where} does not fit dqn: its state needs 'updates' (an integer >= 0) and "
                f"'has_replay' (true or false), found {updates!r} and {has_replay!r}"
            )
        live = {k: v for k, v in self.checkpoint()[0].items() if not k.startswith("replay/")}
        if has_replay:
            live.update(self.replay_memory.state_arrays())
        check_checkpoint_arrays(arrays, live, where)  # every key, shape and dtype
        load_module(self.q_network, arrays, "q/", self.device, where)
        load_module(self.target_network, arrays, "target/", self.device, where)
        load_optimizer(self.optimizer, arrays, where)
        if has_replay:
            self.replay_memory.load_state_arrays(arrays, where)
        seeding.restore_rngs(arrays, state, self.device, numpy_rng=self.rng)
        self.step, self.updates = int(meta["step"]), updates


def check_checkpoint(arrays: dict[str, np.ndarray], envs, config: DQNConfig) -> None:
    """The checkpoint's networks have the keys, shapes and dtypes this config and env give
    (checked before a resume writes anything; the learner's restore checks the rest)."""
    obs_space = getattr(envs, "single_observation_space", envs.observation_space)
    action_space = getattr(envs, "single_action_space", envs.action_space)
    network = build_q_network(config, obs_space, int(action_space.n))
    for prefix in ("q/", "target/"):
        load_module(network, arrays, prefix, torch.device("cpu"), "checkpoint")


# ---- the loop -----------------------------------------------------------------------------
def _boundary(learner: DQNLearner, envs, config: DQNConfig) -> np.ndarray:
    """Start fresh episodes in every env, seeded from (seed, step): at step 0 and after every
    checkpoint, so resumed and uninterrupted runs see the same episodes."""
    memory = learner.replay_memory
    if learner.step > 0:
        for e in range(config.n_envs):  # the episodes in flight end here, as truncation
            memory.end_episode(e)
    seeds = seeding.boundary_seeds(config.seed, learner.step, config.n_envs)
    obs, _ = envs.reset(seed=seeds)
    memory.start(np.arange(config.n_envs), obs)  # 5. phi_1
    return obs


def _eval_policy(learner: DQNLearner, config: DQNConfig):
    """The policy evaluated during training: epsilon-greedy with eval_epsilon, its own
    generator seeded from (seed, step) so that evaluations leave the training stream alone."""
    rng = np.random.default_rng([config.seed, learner.step, 1])

    def policy(obs):
        with torch.no_grad():
            q_values = learner.q_network(learner.tensor(np.asarray(obs)[None]))
        return int(epsilon_greedy_actions(q_values, config.eval_epsilon, rng)[0])

    return policy


def train(config: DQNConfig, envs: gym.vector.VectorEnv, run: Run) -> DQNLearner:
    """Run DQN for `config.steps` env steps (see the module docstring for the pseudocode)."""
    torch.set_num_threads(config.torch_threads)
    if config.backend == "ray":  # Ape-X: actors and replay shards on Ray, this learner
        return _train_apex(config, envs, run)
    learner = DQNLearner(config, envs)  # 1.-3. D, Q, Q^
    if run.restored is not None:
        learner.restore(*run.restored)
    epsilon = make_schedule(
        "linear", config.epsilon, config.epsilon_end, config.epsilon_fraction, config.steps
    )
    beta = make_schedule("linear", config.priority_beta, 1.0, 1.0, config.steps)
    evaluation = TrainingEvaluation(config, lambda: make_eval_env(config))
    # A run resumed without its replay memory (save_replay = false) warms up again.
    refilled = run.restored is not None and not run.restored[1]["state"]["has_replay"]
    warm_until = learner.step + config.learning_starts if refilled else config.learning_starts
    n = config.n_envs
    losses: list[float] = []  # since the last metrics row
    q_means: list[float] = []

    def log(columns: dict[str, float]) -> None:
        _log(run, learner, epsilon, beta, losses, q_means, columns)
        losses.clear()
        q_means.clear()

    def new_episodes() -> None:  # after a checkpoint: 4.-5. new episodes, phi_1
        nonlocal obs
        obs = _boundary(learner, envs, config)

    with run.session(start_step=learner.step):
        obs = _boundary(learner, envs, config)  # 4.-5. new episodes, phi_1
        while learner.step < config.steps:  # 6. for t = 1, T
            actions = learner.act(obs, epsilon(learner.step))  # 7. epsilon-greedy
            next_obs, rewards, terminated, truncated, infos = envs.step(actions)  # 8.-9.
            before, learner.step = learner.step, learner.step + n
            final_obs = final_observations(next_obs, infos)
            learner.replay_memory.add(  # 10. store (phi_t, a_t, r_t, phi_t+1) in D
                actions, rewards, terminated, truncated, final_obs, reset_obs=next_obs
            )
            log_episodes(run, learner.step, infos)
            obs = next_obs
            if learner.step >= warm_until:  # 11.-13. minibatch updates
                rounds = crossed(before, learner.step, config.train_frequency)
                if rounds:
                    round_losses, round_q_means = learner.training_round(
                        rounds * config.gradient_steps, beta(learner.step)
                    )
                    losses += round_losses
                    q_means += round_q_means
                if not math.isfinite(losses[-1] if losses else 0.0):
                    raise NonFiniteError(f"loss is {losses[-1]} at step {learner.step}")
            if crossed(before, learner.step, config.target_update_interval):  # 14. Q^ = Q
                update_target(learner.target_network, learner.q_network, config.tau)
            # evaluate, log, solved?, checkpoint, new episodes after a checkpoint
            if after_iteration(
                run, learner.step, before, save=learner.checkpoint, log=log,
                evaluation=evaluation, policy=lambda: _eval_policy(learner, config),
                reset=new_episodes,
            ):  # fmt: skip
                break
    evaluation.close()
    return learner


def _train_apex(config: DQNConfig, envs: gym.vector.VectorEnv, run: Run) -> DQNLearner:
    """Ape-X DQN (`bellman.distributed.apex`) with this module's learner, loss and targets."""
    from bellman.distributed import apex

    pieces = apex.DQNPieces(
        make_env=functools.partial(_make_training_env, config),
        build_network=functools.partial(build_q_network, config),
        td_target=td_target, exploration_draws=exploration_draws, update_target=update_target,
        eval_policy=functools.partial(_eval_policy, config=config),
        make_eval_env=functools.partial(make_eval_env, config),
    )  # fmt: skip
    return apex.train(config, envs, run, DQNLearner(config, envs, replay=False), pieces)


def _log(run: Run, learner: DQNLearner, epsilon, beta, losses, q_means, extra) -> None:
    scalars = {
        "epsilon": epsilon(learner.step),
        "loss": float(np.mean(losses)) if losses else math.nan,
        "q_mean": float(np.mean(q_means)) if q_means else math.nan,
        "updates": learner.updates,
        "replay_size": len(learner.replay_memory),
    }
    if learner.config.prioritized:
        scalars["priority_beta"] = beta(learner.step)
    run.log(learner.step, **scalars, **extra)


def load_policy(arrays, env: gym.Env, config: DQNConfig, seed: int = 0):
    """The epsilon-greedy policy (epsilon = eval_epsilon) of a checkpoint's Q-network."""
    check_env(env, config)
    network = build_q_network(config, env.observation_space, int(env.action_space.n))
    load_module(network, arrays, "q/", torch.device("cpu"), "checkpoint")
    network.eval()
    rng = np.random.default_rng(seed)

    def policy(obs) -> int:
        with torch.no_grad():
            q_values = network(torch.as_tensor(np.asarray(obs)[None]))
        return int(epsilon_greedy_actions(q_values, config.eval_epsilon, rng)[0])

    return policy
