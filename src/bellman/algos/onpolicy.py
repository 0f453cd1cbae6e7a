"""What the actor-critic algorithms (A2C and PPO) share: their common config fields, the N
actors (a vector env with optional observation/reward normalisation), the rollout of T steps,
the advantage estimates, the learner's state and checkpoints, and the deterministic policy.

Both algorithms follow the same outer loop (Mnih et al. 2016, Algorithm S3; Schulman et al.
2017, Algorithm 1): N actors run pi_theta for T steps, advantages are estimated for every actor,
and theta is optimised on the N T samples. Only the optimisation differs (A2C: one gradient
step on the whole batch; PPO: K epochs of minibatches on a surrogate), so that step lives in
each algorithm's file and everything around it lives here, once.

Details both share:
    - The N actors are `n_envs` environments in a gymnasium vector env, stepped together;
      `steps` counts env steps summed over them, so an iteration is N T steps.
    - Advantages are GAE(gamma, lambda) (`bellman.advantages`); with lambda = 1 they are A2C's
      n-step returns minus V(s_t): q_t = r_t + gamma r_t+1 + ... + gamma^(T-t) V(s_T). A
      terminated episode bootstraps nothing; one cut by a time limit (truncation) bootstraps
      V(final observation).
    - Box actions: a ~ N(mu(s), diag(sigma^2)) is sampled unbounded and clipped to the action
      bounds only when it is sent to the environment; the log-probability is that of the
      unclipped sample (as in Stable-Baselines3 and CleanRL). Infinite bounds are refused.
      Evaluation plays the mode: argmax_a pi(a|s), or mu(s) clipped to the bounds.
    - `normalize_observations` / `normalize_rewards` wrap each of the N envs in gymnasium's
      NormalizeObservation / NormalizeReward, and the N wrappers share one set of running
      statistics (as a VecNormalize would; gymnasium's vector versions need NEXT_STEP autoreset,
      the loops use SAME_STEP). Reward scaling is for learning only; logged returns are raw. The
      statistics are saved in checkpoints; evaluation uses them frozen.
    - Acting: a ~ pi_theta(.|s) is drawn from the learner's numpy generator (saved in
      checkpoints) for every network. The rollout is written into numpy arrays and handed to the
      learner as tensors once per iteration. Two MLP trunks are stacked (`nets.StackedTrunks`).
    - `fast` (on by default) takes the speed path of `nets.fast.FastPath`: MLP policies on the
      CPU act with numpy, PPO backpropagates by hand, the parameters live in one buffer and a
      fused Adam is one kernel call. The same numbers as the plain path up to float rounding
      (the tests train both from one seed and compare the weights).
    - At every checkpoint the environments are reset with seeds derived from (seed, step) and the
      reward normaliser's running returns restart, in the uninterrupted run as in a resumed one,
      so a run resumed from a checkpoint is bit-for-bit the run that never stopped. After an
      iteration, `end_iteration` evaluates, logs, checks "solved" and checkpoints in the one
      order of `bellman.loop.after_iteration`; Ctrl-C or SIGTERM makes the run train on to its
      next checkpoint and stop there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bellman import seeding
from bellman.advantages import generalized_advantage_estimation
from bellman.algos import check_checkpoint_arrays
from bellman.checkpoint import expect_array
from bellman.config import TrainConfig, check_deep_fields, choices, interval
from bellman.envs import (
    RunningMeanStd,
    check_vector_settings,
    final_observations,
    log_episodes,
    make_env,
    make_vector_env,
)
from bellman.envs.atari import is_atari
from bellman.errors import CheckpointError, ConfigError
from bellman.evaluation import TrainingEvaluation
from bellman.loop import after_iteration
from bellman.nets import ActorCritic, NatureCNN, actor_critic_for, resolve_device
from bellman.nets.fast import FastPath, bf16_convolutions, channels_last_inputs
from bellman.run import Run
from bellman.torch_state import check_arrays, load_module, load_optimizer, optimizer_arrays


@dataclass(frozen=True)
class ActorCriticConfig(TrainConfig):
    """The family base of A2C and PPO: the fields they share, the defaults PPO's (each algorithm
    sets its own). The fields up to ray_address are those of every deep algorithm
    (`config.DeepConfig`)."""

    eval_every: int = field(default=0, metadata=interval("[0, inf)"))
    """Env steps between evaluations during training (0: none); logged as eval_return_mean."""
    eval_episodes: int = field(default=10, metadata=interval("[1, inf)"))
    """Episodes per evaluation during training."""
    stop_when_solved: bool = False
    """Stop once an evaluation's mean return reaches the env's reward_threshold (CartPole: 475)."""
    frame_stack: int = field(default=4, metadata=interval("[1, 16]"))
    """Atari only: frames stacked into one observation."""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the networks run: auto uses CUDA when present."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch (1 is fastest on small, shared machines)."""
    env_threads: int = field(default=0, metadata=interval("[0, 1024]"))
    """Atari backend: emulator threads of ale-py's vector env (0: one per core)."""
    atari_backend: str = field(default="ale_vector", metadata=choices("ale_vector", "gymnasium"))
    """ALE ids: ale_vector (ale-py's AtariVectorEnv, C++ threads) or gymnasium (one wrapped env
    per game, stepped in turn: the readable reference)."""
    channels_last: bool = True
    """Nature-CNN networks take their image batches in channels-last memory order (faster
    convolutions on CPUs; the same numbers up to float rounding). false: the plain layout."""
    bf16_autocast: bool = False
    """Nature-CNN networks compute their convolutions and fully connected layer under bfloat16
    autocast, the features back in float32 for the heads (`nets.fast.bf16_convolutions`;
    parameters, optimizer and checkpoints stay float32). Pays where the hardware has bfloat16
    arithmetic (CPUs with AVX512-BF16 or AMX, GPUs; on a CPU batches under 8 frames stay
    float32); rounds to 8 significant bits, so not the float32 run bit for bit. false: the plain
    float32 path."""
    backend: str = field(default="local", metadata=choices("local", "ray"))
    """local: one process, exactly as before; ray: actors on a Ray cluster (see ray_address)."""
    workers: int = field(default=0, metadata=interval("[0, 1024]"))
    """backend = ray: Ray actors the work is spread over (0: one per environment, n_envs)."""
    ray_address: str = ""
    """backend = ray: HOST:PORT of a running cluster (`ray start --head`); empty: a local Ray on
    this machine's cores."""
    acting: str = field(default="learner", metadata=choices("learner", "actors"))
    """backend = ray: who runs pi_theta. learner: one batched forward pass a step here and one
    round trip to the actors a step (bit for bit the one-process run); actors: every actor runs
    a copy of pi_theta over its envs for the whole rollout, one round trip an iteration
    (`distributed.rollout.RayActingEnv`: scales with actors; reproducible, not the one-process
    run, whose actions come from one generator)."""
    env_overlap: bool = False
    """Atari backend: the n_envs games in two groups, pi_theta acting for one while the other's
    games step (`run_policy_overlapped`; n_envs even). false: act, then step all N."""
    steps: int = field(default=1_000_000, metadata=interval("[1, inf)"))
    """Total number of environment steps of the run, summed over the n_envs environments."""
    n_envs: int = field(default=1, metadata=interval("[1, 256]"))
    """N: actors (environments of a gymnasium vector env) collecting experience in parallel."""
    n_steps: int = field(default=2048, metadata=interval("[1, inf)"))
    """T: steps each actor runs per iteration; a batch is N x T samples."""
    learning_rate: float = field(default=3e-4, metadata=interval("(0, inf)"))
    """Step size of the optimiser (at the start of the run when anneal is on)."""
    anneal: bool = False
    """Anneal the learning rate (and PPO's eps) linearly to 0 over the run."""
    gamma: float = field(default=0.99, metadata=interval("[0, 1]"))
    """Discount factor gamma."""
    gae_lambda: float = field(default=0.95, metadata=interval("[0, 1]"))
    """GAE lambda: 0 is the one-step TD error (biased), 1 the n-step return (noisy)."""
    vf_coef: float = field(default=0.5, metadata=interval("[0, inf)"))
    """c1: weight of the value loss."""
    ent_coef: float = field(default=0.0, metadata=interval("[0, inf)"))
    """c2: weight of the entropy bonus S (more: more exploration, slower convergence)."""
    normalize_advantages: bool = True
    """Standardise the advantages of each (mini)batch to mean 0, std 1."""
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
    fast: bool = True
    """Take the speed path (nets/fast.py: numpy acting, gradients by hand, one fused Adam call);
    false takes the plain autograd path, slower on small CPU networks, the same numbers."""
    device_rollout: bool = False
    """Discrete actions: keep the rollout on the network's device (observations copied there once
    per step, actions drawn there); the same numbers as the host rollout, for GPUs."""
    compile_network: bool = False
    """torch.compile the network's forward pass (unmeasured: off by default)."""

    @property
    def batch_size(self) -> int:
        """N T: samples per iteration."""
        return self.n_envs * self.n_steps

    def validate(self) -> None:
        check_deep_fields(self)
        check_vector_settings(self)
        if self.acting == "actors" and self.backend != "ray":
            raise ConfigError(
                "acting = actors runs the policy in Ray actors: set backend = ray, or leave "
                "acting = learner"
            )
        if self.acting == "actors" and self.device_rollout:
            raise ConfigError(
                "device_rollout keeps the rollout on the learner's device, but with acting = "
                "actors the Ray actors collect it: set one of them off"
            )

    @property
    def hidden(self) -> tuple[int, ...]:
        return (self.hidden_size,) * self.hidden_layers


# ---- environments -------------------------------------------------------------------------
def single_env(
    config: ActorCriticConfig, training: bool, render_mode: str | None = None
) -> gym.Env:
    """One env before normalisation: Atari with DeepMind's preprocessing, others as registered
    (with episode statistics for training)."""
    if is_atari(config.env):
        from bellman.envs.atari import make_atari_env

        return make_atari_env(
            config.env, training=training, render_mode=render_mode, frame_stack=config.frame_stack
        )
    env = make_env(config.env, render_mode=render_mode)
    return gym.wrappers.RecordEpisodeStatistics(env) if training else env


def _check_normalization(space: gym.Space, config: ActorCriticConfig) -> None:
    """Observation normalisation is for vectors: images are scaled by the CNN, indices are not
    quantities."""
    is_vector = isinstance(space, gym.spaces.Box) and len(space.shape) != 3
    if config.normalize_observations and not is_vector:
        raise ConfigError(
            f"normalize_observations standardises vector observations, but '{config.env}' has "
            f"{space}; set normalize_observations = false"
        )


def make_train_env(config: ActorCriticConfig) -> gym.vector.VectorEnv:
    """The N actors: a vector env that resets finished envs in the same step (the final
    observation is in `infos["final_obs"]`), each env normalised with shared statistics."""
    probe = make_env(config.env)  # a clear error for a bad id before the vector env is built
    _check_normalization(probe.observation_space, config)
    probe.close()
    shared: dict[str, RunningMeanStd] = {}  # one set of running statistics for all N envs

    def normalized(env: gym.Env) -> gym.Env:
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

    def one_env() -> gym.Env:
        return normalized(single_env(config, training=True))

    if is_atari(config.env) and config.normalize_rewards and config.atari_backend == "ale_vector":
        raise ConfigError(
            "normalize_rewards wraps each env of the gymnasium path; Atari's rewards are already "
            "clipped to {-1, 0, 1}: set normalize_rewards = false (or atari_backend = gymnasium)"
        )
    if config.backend == "ray":  # the envs step in Ray actors, the normalisation stays here
        from bellman.distributed.rollout import RayVectorEnv

        if config.acting == "actors":  # the actors run pi_theta and normalise themselves
            from bellman.distributed.rollout import Acting, RayActingEnv

            acting = Acting(acting_learner, rollout_storage, run_policy)
            return RayActingEnv(one_env, config, acting, wrap=normalized)
        in_actor = functools.partial(single_env, config, True)
        return RayVectorEnv(
            in_actor, config.n_envs, config.workers, config.ray_address, wrap=normalized
        )
    return make_vector_env(config, one_env)


def make_eval_env(config: ActorCriticConfig, render_mode: str | None = None) -> gym.Env:
    """One env as evaluation sees it: whole games, raw rewards, and the training run's
    observation statistics, frozen (`load_policy` or `train` puts them in)."""
    env = single_env(config, training=False, render_mode=render_mode)
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


def check_env(
    envs: gym.vector.VectorEnv | gym.Env, config: ActorCriticConfig | None = None
) -> None:
    """A2C and PPO need Discrete or finite Box actions, and their network must take the
    observations; say what is wrong otherwise (before any run directory is made)."""
    space = getattr(envs, "single_action_space", envs.action_space)
    spec = getattr(envs, "envs", [envs])[0].spec
    name = spec.id if spec is not None else "the environment"
    if isinstance(space, gym.spaces.Box):
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise ConfigError(
                f"A2C and PPO clip Gaussian actions to the action bounds, but '{name}' has a Box "
                f"action space with infinite bounds (low {space.low.tolist()}, high "
                f"{space.high.tolist()}); give the env finite action bounds"
            )
    elif not isinstance(space, gym.spaces.Discrete):
        raise ConfigError(
            f"A2C and PPO need Discrete or Box actions, but '{name}' has "
            f"{type(space).__name__} actions"
        )
    if config is not None:
        obs_space = getattr(envs, "single_observation_space", envs.observation_space)
        build_policy(config, obs_space, space)


# ---- the pieces of the loop ---------------------------------------------------------------
def build_policy(config: ActorCriticConfig, obs_space: gym.Space, action_space: gym.Space):
    """pi_theta and V_theta for this config and these spaces (one network, maybe one trunk)."""
    return actor_critic_for(
        obs_space, action_space, network=config.network, hidden=config.hidden,
        shared=config.shared_trunk, log_std_init=config.log_std_init, env_id=config.env,
    )  # fmt: skip


def env_actions(actions: torch.Tensor | np.ndarray, space: gym.Space) -> np.ndarray:
    """What the envs are sent: Discrete actions as they are, Gaussian samples [B, D] reshaped to
    the space and clipped to its bounds (the log-probability stays that of the unclipped a)."""
    array = actions.cpu().numpy() if torch.is_tensor(actions) else np.asarray(actions)
    if isinstance(space, gym.spaces.Box):
        array = array.reshape(len(array), *space.shape)  # (np.clip's wrapper costs 3x this)
        return np.minimum(np.maximum(array, space.low), space.high).astype(space.dtype, copy=False)
    return array


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[R - V] / Var[R]: 1 is a perfect critic, 0 no better than a constant (NaN when the
    returns do not vary)."""
    variance = float(returns.var())
    return math.nan if variance == 0 else 1.0 - float((returns - values).var()) / variance


def standardize(advantages: torch.Tensor) -> torch.Tensor:
    """Advantages scaled to mean 0 and standard deviation 1 (unchanged for a single sample)."""
    if len(advantages) < 2:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


@dataclass
class Rollout:
    """The experience of one iteration: T steps of N actors, every array [T, N, ...]: numpy
    arrays while the actors fill it (`rollout_storage`), tensors for the learner (`tensors`)."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor  # log pi_theta_old(a_t|s_t)
    values: torch.Tensor  # V(s_t) under theta_old
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_values: torch.Tensor  # V(final observation), where a time limit cut the episode

    def tensors(self, device: torch.device) -> Rollout:
        """The same experience as tensors on `device` (on the CPU they share the arrays' memory:
        no copy)."""
        return Rollout(
            *(torch.as_tensor(getattr(self, f.name), device=device) for f in fields(self))
        )


@dataclass
class RolloutBatch:
    """The rollout flattened to N T samples, with its advantages and value targets."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    @classmethod
    def of(cls, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> RolloutBatch:
        return cls(
            rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1),
            rollout.log_probs.flatten(), rollout.values.flatten(),
            advantages.flatten(), returns.flatten(),
        )  # fmt: skip

    def minibatches(self, size: int) -> Iterator[RolloutBatch]:
        """One epoch: the samples in a fresh random order (from torch's CPU generator) in
        minibatches of `size`; the batch itself, unshuffled, when `size` is all of it (a loss
        that averages over the samples does not depend on their order)."""
        if size >= len(self.returns):
            yield self
            return
        order = torch.randperm(len(self.returns)).to(self.returns.device)
        shuffled = [getattr(self, f.name)[order] for f in fields(self)]  # one gather per field
        parts = zip(*(x.split(size) for x in shuffled), strict=True)
        yield from (RolloutBatch(*minibatch) for minibatch in parts)


def sample_actions(learner: ActorCriticLearner, obs: np.ndarray):
    """a_t ~ pi_theta(.|s_t) for the N actors' observations [N, ...], drawn from the learner's
    numpy generator: (actions, log pi(a|s) [N], V(s) [N]) as numpy arrays (`ActorCritic.sample`;
    on the fast path MLP policies on the CPU compute the same with numpy)."""
    acting = learner.policy if learner.fast is None else learner.fast
    return acting.sample(obs, learner.rng)


def run_policy(learner: ActorCriticLearner, envs, obs: np.ndarray, rollout: Rollout, run: Run):
    """The N actors run pi_theta for T timesteps together, filling `rollout` (numpy arrays, or
    device tensors with `device_rollout`: `act_on_device`). With `env_overlap` (the Atari
    backend's two groups of envs) pi_theta acts for one group while the other's games step
    (`run_policy_overlapped`).

    Returns:
        (the observations to continue from, the rollout as tensors on the learner's device,
         their values V(s_T) [N] for the bootstrap).
    """
    if getattr(envs, "acts", False):  # acting = actors: Ray actors run pi_theta for T steps
        return envs.run_policy(learner, rollout, run)
    act = act_on_device if torch.is_tensor(rollout.obs) else act_on_host
    if len(getattr(envs, "groups", ())) > 1:
        run_policy_overlapped(learner, envs, obs, rollout, run, act)
    else:
        every = slice(None)
        for t in range(rollout.obs.shape[0]):
            step = envs.step(act(learner, rollout, t, every, obs))  # a_t ~ pi(.|s_t), stored
            record_step(learner, rollout, t, every, step, run)
            obs = step[0]
    with torch.no_grad():
        return obs, rollout.tensors(learner.device), learner.policy.value(learner.tensor(obs))


def run_policy_overlapped(
    learner: ActorCriticLearner, envs, obs: np.ndarray, rollout: Rollout, run: Run, act
) -> None:
    """`run_policy`'s T steps with env stepping overlapped with acting: the N envs are two
    groups (`envs.groups`); group g's actions go to its emulator threads (`envs.send`), and while
    its games step pi_theta acts for the other group. Every actor's experience is what the
    synchronous loop gives: the same games (same emulators and seeds), a_t drawn from the same
    numpy generator in the same env order (group 0's N/2 uniforms, then group 1's); pi_theta
    scores N/2 observations a call instead of N (the same numbers up to float rounding; tested).
    Finished games are logged with the step count of their group's half step. `obs` is updated
    in place."""
    steps = rollout.obs.shape[0]
    for t in range(steps + 1):
        for g, group in enumerate(envs.groups):
            if t > 0:  # group g's step t - 1, which ran while the other group acted
                step = envs.recv(g)
                record_step(learner, rollout, t - 1, group, step, run)
                obs[group] = step[0]
            if t < steps:
                envs.send(act(learner, rollout, t, group, obs[group]), g)


def act_on_host(learner: ActorCriticLearner, rollout: Rollout, t: int, actors, obs):
    """a_t ~ pi_theta(.|s_t) for the actors `actors` (a slice of the N) with observations `obs`,
    stored with s_t, log pi(a_t|s_t) and V(s_t) in the numpy rollout; returns the env actions."""
    actions, log_probs, values = sample_actions(learner, obs)
    rollout.obs[t, actors], rollout.actions[t, actors] = obs, actions
    rollout.log_probs[t, actors], rollout.values[t, actors] = log_probs, values
    return env_actions(actions, learner.action_space)


def act_on_device(learner: ActorCriticLearner, rollout: Rollout, t: int, actors, obs):
    """`act_on_host` with the rollout on the learner's device: the observations go to the
    device once (into `rollout.obs[t]`, which the network reads), a ~ pi(.|s) is drawn there by
    inverting the CDF at u ~ U[0, 1) from the learner's numpy generator (the uniforms
    `CategoricalHead.sample_numpy` draws, so the same actions as the host path up to float
    rounding), and only the actions come back to the host for the envs. Log-probs and values
    never leave the device; rewards and episode ends are [T, N] numbers moved once."""
    rollout.obs[t, actors].copy_(torch.as_tensor(obs), non_blocking=True)
    with torch.no_grad():
        logits, values = learner.policy(rollout.obs[t, actors])
        log_pi = logits.float().log_softmax(dim=1)
        cdf = log_pi.exp().cumsum(dim=1)
        u = learner.tensor(learner.rng.random(len(obs), dtype=np.float32))[:, None] * cdf[:, -1:]
        actions = ((cdf <= u).sum(dim=1)).clamp_(max=logits.shape[1] - 1)
        rollout.actions[t, actors], rollout.values[t, actors] = actions, values
        rollout.log_probs[t, actors] = log_pi.gather(1, actions[:, None])[:, 0]
    return actions.cpu().numpy()


def record_step(
    learner: ActorCriticLearner, rollout: Rollout, t: int, actors, step, run: Run
) -> None:
    """After the envs' step t (of the actors `actors`, a slice of the N): count it, store r_t
    and the episode ends, V(final observation) where a time limit cut an episode, and hand the
    finished games to the run."""
    next_obs, rewards, terminated, truncated, infos = step
    learner.step += len(rewards)
    rollout.rewards[t, actors], rollout.terminated[t, actors] = rewards, terminated
    rollout.truncated[t, actors] = truncated
    if (truncated & ~terminated).any():  # a time limit: V(s_t+1) of the final observation
        with torch.no_grad():
            final_obs = learner.tensor(final_observations(next_obs, infos))
            rollout.final_values[t, actors] = learner.policy.value(final_obs).cpu().numpy()
    log_episodes(run, learner.step, infos)


def estimate_advantages(rollout: Rollout, last_values: torch.Tensor, gamma: float, lam: float):
    """A_1..A_T = GAE(gamma, lambda) for every actor, and the value targets A + V.

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


def rollout_storage(learner: ActorCriticLearner, config: ActorCriticConfig) -> Rollout:
    """Zeroed [T, N, ...] numpy arrays for one iteration's experience; with `device_rollout` the
    observations, actions, log-probabilities and values are tensors on the learner's device
    (`act_on_device` fills them) and the rest, [T, N] numbers from the envs, numpy."""
    shape = (config.n_steps, config.n_envs)
    box = isinstance(learner.action_space, gym.spaces.Box)
    action_shape = (int(np.prod(learner.action_space.shape)),) if box else ()
    if getattr(config, "device_rollout", False):
        if box:
            raise ConfigError(
                f"device_rollout draws Discrete actions on the device, but '{config.env}' has "
                f"Box actions; set device_rollout = false"
            )
        device, dtype = learner.device, torch.as_tensor(np.zeros(0, learner.obs_space.dtype)).dtype
        return Rollout(
            obs=torch.zeros((*shape, *learner.obs_space.shape), dtype=dtype, device=device),
            actions=torch.zeros(shape, dtype=torch.int64, device=device),
            log_probs=torch.zeros(shape, device=device),
            values=torch.zeros(shape, device=device),
            rewards=np.zeros(shape, dtype=np.float32),
            terminated=np.zeros(shape, dtype=bool),
            truncated=np.zeros(shape, dtype=bool),
            final_values=np.zeros(shape, dtype=np.float32),
        )
    return Rollout(
        obs=np.zeros((*shape, *learner.obs_space.shape), dtype=learner.obs_space.dtype),
        actions=np.zeros((*shape, *action_shape), dtype=np.float32 if box else np.int64),
        log_probs=np.zeros(shape, dtype=np.float32),
        values=np.zeros(shape, dtype=np.float32),
        rewards=np.zeros(shape, dtype=np.float32),
        terminated=np.zeros(shape, dtype=bool),
        truncated=np.zeros(shape, dtype=bool),
        final_values=np.zeros(shape, dtype=np.float32),
    )


# ---- the learner --------------------------------------------------------------------------
def speed_switches(policy: ActorCritic, config, device: torch.device) -> None:
    """`channels_last`, `bf16_autocast` and `compile_network`: wrap the network's forward pass in
    place (its parameters and state_dict stay as they are, so checkpoints do not change). The
    last two are off by default: bf16 changes the numbers (PPO on Breakout, 2 cores with
    AVX512-BF16: about 1.5x the env steps/s, benchmarks/atari_throughput.py), and compiling has
    not been measured to pay on this project's machines."""
    cnn = any(isinstance(module, NatureCNN) for module in policy.modules())
    if getattr(config, "channels_last", False) and cnn:
        channels_last_inputs(policy)
    if getattr(config, "bf16_autocast", False):
        bf16_convolutions(policy)  # (the config refused it for networks without a CNN)
    if getattr(config, "compile_network", False):
        policy.forward = torch.compile(policy.forward)


class ActorCriticLearner:
    """pi_theta and V_theta, the optimiser, the normalisation statistics and the counters:
    everything a checkpoint holds. `scalars` carries an algorithm's own numbers (PPO's beta).

    Args:
        config: the algorithm's config.
        envs: the N actors (their spaces and normalisation wrappers).
        make_optimizer: parameters -> the torch optimiser.
        build: (config, observation space, action space) -> the ActorCritic network.
    """

    def __init__(
        self,
        config: ActorCriticConfig,
        envs: gym.vector.VectorEnv,
        make_optimizer: Callable[[list], torch.optim.Optimizer],
        build: Callable[..., ActorCritic] | None = None,
    ):
        self.config = config
        self.device = resolve_device(config.device)
        self.obs_space = envs.single_observation_space
        self.action_space = envs.single_action_space
        self.rng = seeding.seed_everything(config.seed)  # numpy acting samples from it
        torch.manual_seed(config.seed)
        build = build or build_policy
        self.policy: ActorCritic = build(config, self.obs_space, self.action_space)
        self.policy.to(self.device)
        speed_switches(self.policy, config, self.device)
        self.parameters = list(self.policy.parameters())
        # the speed path (numpy acting, gradients by hand, flat parameters) or None: the plain one
        # (REINFORCE, which shares this learner, has no `fast` switch: it takes the plain path)
        fast = getattr(config, "fast", False)
        self.fast = FastPath(self.policy, self.parameters) if fast else None
        self.optimizer = make_optimizer(self.parameters)
        every = getattr(envs, "envs", [])  # the gymnasium path's wrapped envs (none on ale-py's)
        first = every[0] if every else None
        observation_normalizer = _wrapper(first, gym.wrappers.NormalizeObservation)
        self.obs_rms = getattr(observation_normalizer, "obs_rms", None)
        return_normalizer = _wrapper(first, gym.wrappers.NormalizeReward)
        self.return_rms = getattr(return_normalizer, "return_rms", None)
        self.reward_normalizers = [
            wrapper
            for wrapper in (_wrapper(env, gym.wrappers.NormalizeReward) for env in every)
            if wrapper is not None
        ]
        self.step = 0
        self.iterations = 0
        self.scalars: dict[str, float] = {}

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def set_learning_rate(self, learning_rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate

    def zero_grad(self) -> None:
        """optimizer.zero_grad() (on the fast path: the one gradient buffer, zeroed)."""
        if self.fast is None:
            self.optimizer.zero_grad()
        else:
            self.fast.zero_grad()

    def update(self, max_grad_norm: float) -> None:
        """Rescale the gradients to a global L2 norm of at most max_grad_norm, then take one
        optimiser step (on the fast path: one call each on the flat buffers)."""
        if self.fast is None:
            torch.nn.utils.clip_grad_norm_(self.parameters, max_grad_norm)
            self.optimizer.step()
        else:
            self.fast.clip_grad_norm(max_grad_norm)
            self.fast.step(self.optimizer)

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, state) of a checkpoint: the network, the optimiser's state, the
        normalisation statistics, the counters, `scalars` and every generator
        (`seeding.capture_rngs`: Python's, torch's CPU and CUDA ones, the numpy one acting
        draws from)."""
        arrays = {f"policy/{k}": v.cpu().numpy() for k, v in self.policy.state_dict().items()}
        arrays.update(optimizer_arrays(self.optimizer))
        rng_arrays, rng_state = seeding.capture_rngs(self.device, numpy_rng=self.rng)
        arrays.update(rng_arrays)
        for name, rms in (("obs", self.obs_rms), ("return", self.return_rms)):
            if rms is not None:
                arrays.update(statistics_arrays(rms, name))
        return arrays, {"iterations": self.iterations, **self.scalars, **rng_state}

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Put a checkpoint back. Every array is checked against the live learner's (key set,
        shape, dtype: `check_checkpoint_arrays`, `load_module`, `load_optimizer`), every state
        value against what this learner saves, the statistics and generators for sense: a file
        that does not fit is a CheckpointError before the run writes anything."""
        where = f"checkpoint step-{meta['step']}"
        state = meta["state"]
        iterations = state.get("iterations")
        scalars = {name: state.get(name) for name in self.scalars}
        if (
            type(iterations) is not int
            or iterations < 0
            or not all(
                type(value) in (int, float) and math.isfinite(value) for value in scalars.values()
            )
        ):
            raise CheckpointError(
                f"{where} does not fit: its state needs 'iterations' (an integer >= 0) and "
                f"finite {', '.join(repr(n) for n in scalars) or 'scalars'}; found "
                f"{iterations!r} and {scalars}"
            )
        check_checkpoint_arrays(arrays, self.checkpoint()[0], where)
        load_module(self.policy, arrays, "policy/", self.device, where)
        load_optimizer(self.optimizer, arrays, where)
        for name, rms in (("obs", self.obs_rms), ("return", self.return_rms)):
            if rms is not None:
                load_statistics(rms, arrays, name, where)
        seeding.restore_rngs(arrays, state, self.device, numpy_rng=self.rng)
        self.step, self.iterations = int(meta["step"]), iterations
        self.scalars.update({name: float(value) for name, value in scalars.items()})


def acting_learner(config: ActorCriticConfig, envs) -> ActorCriticLearner:
    """The acting half of a learner, for a Ray actor that runs pi_theta itself (`acting =
    actors`): pi_theta on its speed path, its generator, the statistics of `envs`' wrappers;
    its optimiser never steps."""
    return ActorCriticLearner(config, envs, lambda parameters: torch.optim.SGD(parameters, 0.0))


def statistics_arrays(rms, name: str) -> dict[str, np.ndarray]:
    """A gymnasium RunningMeanStd as arrays `normalize/<name>_{mean,var,count}` (at least 1-d:
    the return statistics are scalars)."""
    return {
        f"normalize/{name}_mean": np.atleast_1d(rms.mean),
        f"normalize/{name}_var": np.atleast_1d(rms.var),
        f"normalize/{name}_count": np.asarray([rms.count], dtype=np.float64),
    }


def load_statistics(rms, arrays: dict[str, np.ndarray], name: str, where="checkpoint") -> None:
    """Set a RunningMeanStd (in place: the N envs share it) from `statistics_arrays`, after
    checking their shapes and dtypes against the live ones and their values for sense (finite,
    a variance >= 0, a count > 0)."""
    live = statistics_arrays(rms, name)
    found = {key: arrays.get(key) for key in live if key in arrays}
    check_arrays(found, {key: (v.shape, v.dtype) for key, v in live.items()}, where)
    mean, var, count = (found[f"normalize/{name}_{part}"] for part in ("mean", "var", "count"))
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()
            and math.isfinite(count[0]) and count[0] > 0):  # fmt: skip
        raise CheckpointError(
            f"{where}: the {name} normalisation statistics are not a running mean and variance "
            f"(count {count[0]}, variance min {var.min()})"
        )
    shape = np.shape(rms.mean)
    rms.mean, rms.var = mean.reshape(shape).copy(), var.reshape(shape).copy()
    rms.count = float(count[0])


def check_checkpoint(arrays: dict[str, np.ndarray], envs, config: ActorCriticConfig) -> None:
    """The checkpoint's network has the keys, shapes and dtypes this config and env give, and
    its statistics the shapes (checked before a resume writes anything; the learner's restore
    checks the rest)."""
    obs_space = getattr(envs, "single_observation_space", envs.observation_space)
    action_space = getattr(envs, "single_action_space", envs.action_space)
    network = build_policy(config, obs_space, action_space)
    load_module(network, arrays, "policy/", torch.device("cpu"), "checkpoint")
    if config.normalize_observations:
        expect_array(arrays, "normalize/obs_mean", obs_space.shape, "checkpoint")
    if config.normalize_rewards:
        expect_array(arrays, "normalize/return_var", (1,), "checkpoint")


# ---- around the iterations ----------------------------------------------------------------
def boundary(learner: ActorCriticLearner, envs, config: ActorCriticConfig) -> np.ndarray:
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


def training_evaluation(
    learner: ActorCriticLearner, config: ActorCriticConfig
) -> TrainingEvaluation:
    """Evaluation during training, on an env that reads the live observation statistics."""
    evaluation = TrainingEvaluation(config, lambda: make_eval_env(config))
    if evaluation.env is not None and learner.obs_rms is not None:  # live statistics, read-only
        _wrapper(evaluation.env, gym.wrappers.NormalizeObservation).obs_rms = learner.obs_rms
    return evaluation


def end_iteration(
    learner: ActorCriticLearner,
    envs,
    run: Run,
    evaluation: TrainingEvaluation,
    before: int,
    stats: dict,
    obs: np.ndarray,
) -> tuple[bool, np.ndarray]:
    """After an iteration that took the run from step `before` to `learner.step`: evaluate, log,
    solved?, checkpoint and, after a checkpoint, fresh episodes (`loop.after_iteration`).

    Returns:
        (whether training stops here, the observations to continue from: `obs`, or the fresh
         episodes' first observations after a checkpoint).
    """
    fresh = [obs]
    stop = after_iteration(
        run, learner.step, before, save=learner.checkpoint,
        log=lambda columns: run.log(
            learner.step, iterations=learner.iterations, **stats, **columns
        ),
        evaluation=evaluation,
        policy=lambda: deterministic_policy(learner.policy, learner.action_space, learner.device),
        reset=lambda: fresh.append(boundary(learner, envs, learner.config)),
    )  # fmt: skip
    return stop, fresh[-1]


def load_policy(arrays, env: gym.Env, config: ActorCriticConfig, seed: int = 0):
    """The deterministic policy (the mode of pi) of a checkpoint, on an env from
    `make_eval_env`, whose observation statistics it sets from the checkpoint (frozen).
    `seed` is not used: the policy draws no random numbers."""
    check_env(env, config)
    network = build_policy(config, env.observation_space, env.action_space)
    load_module(network, arrays, "policy/", torch.device("cpu"), "checkpoint")
    if config.normalize_observations:
        normalizer = _wrapper(env, gym.wrappers.NormalizeObservation)
        if normalizer is None:
            raise ConfigError(
                "this run normalises observations: evaluate it on an env from "
                "make_eval_env, which applies the saved statistics"
            )
        load_statistics(normalizer.obs_rms, arrays, "obs")
        normalizer.update_running_mean = False
    return deterministic_policy(network, env.action_space, torch.device("cpu"))
