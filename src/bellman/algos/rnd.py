"""RND: exploration by random network distillation, the curiosity bonus of PPO (`intrinsic=rnd`).

Burda, Edwards, Storkey and Klimov, "Exploration by Random Network Distillation", 2018,
Algorithm 1 (the steps PPO's loop gains, numbered as there):

     1. N_opt, K, M: as PPO's; initialise the observation normalisation (here: from the first
        rollout's observations)
     2. for i = 1..N do
     3.     for t = 1..K: sample a_t ~ pi(a_t|s_t), observe s_t+1, e_t
     4.         i_t = || f_hat(s_t+1) - f(s_t+1) ||^2            (intrinsic reward: the error of
                                                                  the predictor f_hat against a
                                                                  fixed random target f)
     5.     end for
     6.     normalise the intrinsic rewards by a running estimate of the standard deviation of
            the intrinsic returns (discounted sums of i_t, run forward in time per env)
     7.     R_I, A_I: intrinsic returns and advantages from V_I with gamma_I, non-episodic: a
            game over does not stop the intrinsic return (novelty is a property of the world)
     8.     R_E, A_E: extrinsic returns and advantages from V_E with gamma_E, episodic
     9.     A = A_E + c_I A_I                                    (c_I: `intrinsic_coef`)
    10.     update the observation normalisation with the rollout's observations
    11.     optimise the PPO objective on A (theta), V_E on R_E, V_I on R_I, and f_hat on the
            distillation loss ||f_hat(s) - f(s)||^2
    12. end for

The observations the RND networks see are standardised by running statistics and clipped to
[-5, 5] (f is random and fixed, so without it its outputs would carry little information about
where the observations vary).

Deviations and details:
    - V_I is a network of its own (the same MLP or CNN trunk as V_E, a linear head) rather than a
      second head on V_E's trunk, and it is trained with f_hat, by their own Adam, after PPO's K
      epochs on the same batch (`rnd_epochs` passes in minibatches of PPO's size); PPO's own
      step (and its speed path) is unchanged. f_hat learns on a random `rnd_update_proportion`
      of each minibatch, as in the paper, so that it does not learn faster with more actors.
    - s_t+1 of step t is the observation the actor continues from: after an episode ends, the
      next episode's first observation (the non-episodic intrinsic return flows on into it).
    - f and f_hat: the MLP trunk (or the Nature CNN, without its /255 scaling, for images) then a
      linear layer to `rnd_embedding` outputs; f_hat has one more hidden layer than f (the
      paper's predictor is deeper than its target). i_t is the mean of the squared errors.
    - Step 10 happens before step 4 of the same rollout, so the first rollout is normalised by
      its own statistics (the paper warms them up with a random policy).
    - Everything here (f, f_hat, V_I, their Adam, the three running statistics and each env's
      running intrinsic return) is saved in checkpoints under `rnd/`, so a resumed run is bit
      for bit the run that never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bellman.advantages import generalized_advantage_estimation
from bellman.algos.onpolicy import ActorCriticLearner, Rollout
from bellman.envs import RunningMeanStd
from bellman.errors import CheckpointError
from bellman.losses import value_loss
from bellman.nets import NatureCNN, layer_init, orthogonal_init, trunk_for
from bellman.torch_state import check_arrays, load_module, load_optimizer, optimizer_arrays

#: The clip of the standardised observations the RND networks see (the paper's).
OBS_CLIP = 5.0


@dataclass
class IntrinsicBatch:
    """What step 11 needs of a rollout's intrinsic side: s_t+1 [B, ...] (B = N T), the
    intrinsic value targets R_I [B], and the diagnostics of steps 4-9."""

    next_obs: torch.Tensor
    returns: torch.Tensor
    stats: dict[str, float]


class Features(nn.Module):
    """A trunk, then a linear layer: [B, ...] -> [B, out]; images skip NatureCNN's /255 (their
    input is already standardised)."""

    def __init__(self, trunk: nn.Module, out: int, extra_hidden: int = 0):
        super().__init__()
        self.trunk = trunk
        layers: list[nn.Module] = []
        width = trunk.out_dim
        if extra_hidden:
            layers += [layer_init(nn.Linear(width, extra_hidden)), nn.ReLU()]
            width = extra_hidden
        self.head = nn.Sequential(*layers, layer_init(nn.Linear(width, out), gain=1.0))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if isinstance(self.trunk, NatureCNN):
            return self.head(self.trunk.fc(self.trunk.convs(obs.float())))
        return self.head(self.trunk(obs))


def rnd_obs_statistics_update(rms: RunningMeanStd, obs: torch.Tensor) -> None:
    """Step 10: fold a batch of observations [B, ...] into the running statistics (the batch's
    mean and variance in float64 where the batch lies, so that a GPU rollout of frames is not
    copied to the CPU; the parallel-variance rule of `RunningMeanStd.update_from_moments`)."""
    x = obs.reshape(len(obs), *rms.mean.shape).double()
    mean, var = x.mean(0), x.var(0, unbiased=False)
    rms.update_from_moments(mean.cpu().numpy(), var.cpu().numpy(), len(x))


def normalize_obs(obs: torch.Tensor, rms: RunningMeanStd) -> torch.Tensor:
    """(s - mean) / std clipped to [-OBS_CLIP, OBS_CLIP], as float32 [B, ...]."""
    mean = torch.as_tensor(rms.mean, dtype=torch.float32, device=obs.device)
    std = torch.as_tensor(np.sqrt(rms.var + 1e-8), dtype=torch.float32, device=obs.device)
    return ((obs.float() - mean) / std).clamp(-OBS_CLIP, OBS_CLIP)


class IntrinsicReturnFilter:
    """Step 6: each env's running discounted sum of intrinsic rewards, u <- gamma_I u + i_t,
    and the running variance of those sums; the rewards are divided by its square root."""

    def __init__(self, n_envs: int, gamma: float):
        self.gamma = gamma
        self.returns = np.zeros(n_envs, dtype=np.float64)
        self.rms = RunningMeanStd(shape=())

    def normalize(self, rewards: np.ndarray) -> np.ndarray:
        """[T, N] raw i_t -> [T, N] i_t / std(u), after folding the T steps' u into the
        statistics (the sums run on across rollouts and episodes: non-episodic)."""
        sums = np.empty_like(rewards, dtype=np.float64)
        for t in range(len(rewards)):
            self.returns = self.gamma * self.returns + rewards[t]
            sums[t] = self.returns
        self.rms.update(sums.reshape(-1))
        return (rewards / np.sqrt(self.rms.var + 1e-8)).astype(np.float32)


def non_episodic_advantages(rewards, values, last_values, gamma: float, lam: float):
    """Step 7: GAE(gamma_I, lambda) of the intrinsic rewards as one stream per env, where no
    episode end (termination or time limit) cuts the return or the advantage trace.

    Args:
        rewards: [T, N] normalised i_t; values: [T, N] V_I(s_t); last_values: [N] V_I(s_T+1).

    Returns:
        (A_I [T, N], R_I = A_I + V_I [T, N]).
    """
    next_values = torch.cat([values[1:], last_values.unsqueeze(0)])
    never = torch.zeros_like(rewards, dtype=torch.bool)
    return generalized_advantage_estimation(rewards, values, next_values, never, never, gamma, lam)


class RandomNetworkDistillation:
    """f (fixed), f_hat (trained), V_I, their Adam and the statistics of the RND steps.

    Args:
        config: a PPOConfig with intrinsic = "rnd".
        obs_space: one env's observation space.
        device: where the networks run.
    """

    def __init__(self, config, obs_space: gym.Space, device: torch.device):
        self.config, self.device = config, device
        hidden = config.hidden

        def trunk(activation: str) -> nn.Module:
            return orthogonal_init(trunk_for(obs_space, config.network, hidden, config.env,
                                             activation=activation))  # fmt: skip

        self.target = Features(trunk("relu"), config.rnd_embedding).to(device)
        self.target.requires_grad_(False)  # f stays the random function it was drawn as
        self.predictor = Features(
            trunk("relu"), config.rnd_embedding, extra_hidden=config.hidden_size
        ).to(device)
        self.value = Features(trunk("tanh"), 1).to(device)  # V_I
        self.parameters = [*self.predictor.parameters(), *self.value.parameters()]
        self.optimizer = torch.optim.Adam(self.parameters, lr=config.learning_rate)
        for parameter in self.parameters:  # Adam's own initial state, made now, so that every
            self.optimizer.state[parameter] = {  # checkpoint holds the same arrays
                "step": torch.tensor(0.0),
                "exp_avg": torch.zeros_like(parameter),
                "exp_avg_sq": torch.zeros_like(parameter),
            }
        self.obs_rms = RunningMeanStd(shape=obs_space.shape)
        self.reward_filter = IntrinsicReturnFilter(config.n_envs, config.intrinsic_gamma)

    # ---- steps 4, 6, 7 and 9 ----------------------------------------------------------------
    def intrinsic_reward(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Step 4: i = mean_k (f_hat(s')_k - f(s')_k)^2 on standardised s': [B, ...] -> [B]."""
        with torch.no_grad():
            x = normalize_obs(next_obs, self.obs_rms)
            return ((self.predictor(x) - self.target(x)) ** 2).mean(-1)

    def advantages(
        self, rollout: Rollout, last_obs: np.ndarray, extrinsic: torch.Tensor
    ) -> tuple[torch.Tensor, IntrinsicBatch]:
        """Steps 10, 4, 6, 7 and 9 for one rollout [T, N].

        Args:
            rollout: the rollout as tensors (its obs are s_1..s_T).
            last_obs: [N, ...] s_T+1, the observations the actors continue from.
            extrinsic: [T, N] A_E.

        Returns:
            (A = A_E + c_I A_I [T, N], what step 11 needs: s_t+1 and R_I flattened, diagnostics).
        """
        config = self.config
        steps, n = rollout.obs.shape[:2]
        last = torch.as_tensor(last_obs, device=self.device)
        next_obs = torch.cat([rollout.obs[1:], last.unsqueeze(0)])  # s_t+1 of every step t
        rnd_obs_statistics_update(self.obs_rms, next_obs.flatten(0, 1))  # 10.
        raw = self.intrinsic_reward(next_obs.flatten(0, 1)).view(steps, n)  # 4.
        rewards = torch.as_tensor(
            self.reward_filter.normalize(raw.cpu().numpy()), device=self.device
        )  # 6. fmt: skip
        with torch.no_grad():  # 7. non-episodic: no episode end stops the intrinsic return
            values = self.value(rollout.obs.flatten(0, 1)).view(steps, n)
            last_values = self.value(last).view(n)
        intrinsic, returns = non_episodic_advantages(
            rewards, values, last_values, config.intrinsic_gamma, config.gae_lambda
        )
        stats = {"intrinsic_reward": float(rewards.mean()), "rnd_error": float(raw.mean()),
                 "intrinsic_advantage": float(intrinsic.abs().mean())}  # fmt: skip
        batch = IntrinsicBatch(next_obs.flatten(0, 1), returns.flatten(), stats)
        return extrinsic + config.intrinsic_coef * intrinsic, batch  # 9.

    # ---- step 11 (f_hat and V_I) ------------------------------------------------------------
    def update(self, obs: torch.Tensor, batch: IntrinsicBatch) -> dict[str, float]:
        """`rnd_epochs` passes over the batch (obs [B, ...] = s_t) in PPO's minibatches: f_hat's
        distillation loss on a random `rnd_update_proportion` of each minibatch, plus V_I's
        value loss 0.5 (V_I - R_I)^2; returns the diagnostics, with their mean losses."""
        config = self.config
        next_obs, returns = batch.next_obs, batch.returns
        target = normalize_obs(next_obs, self.obs_rms)
        with torch.no_grad():
            embedding = self.target(target)
        size = min(config.minibatch_size, len(returns))
        distill, critic = [], []
        for _ in range(config.rnd_epochs):
            for index in torch.randperm(len(returns)).to(self.device).split(size):
                errors = ((self.predictor(target[index]) - embedding[index]) ** 2).mean(-1)
                keep = (torch.rand(len(index)) < config.rnd_update_proportion).to(errors)
                distillation = (errors * keep).sum() / keep.sum().clamp(min=1.0)
                v_loss = value_loss(self.value(obs[index]).squeeze(-1), returns[index])
                self.optimizer.zero_grad()
                (distillation + v_loss).backward()
                torch.nn.utils.clip_grad_norm_(self.parameters, config.max_grad_norm)
                self.optimizer.step()
                distill.append(distillation.detach())
                critic.append(v_loss.detach())
        return {**batch.stats, "rnd_loss": float(torch.stack(distill).mean()),
                "intrinsic_value_loss": float(torch.stack(critic).mean())}  # fmt: skip

    # ---- checkpoints ------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Everything above as named arrays (without the `rnd/` prefix the learner adds)."""
        arrays: dict[str, np.ndarray] = {}
        for name, module in (("target", self.target), ("predictor", self.predictor),
                             ("value", self.value)):  # fmt: skip
            arrays.update({f"{name}/{k}": v.cpu().numpy() for k, v in module.state_dict().items()})
        arrays.update(optimizer_arrays(self.optimizer))
        rms, filtered = self.obs_rms, self.reward_filter
        arrays.update({
            "obs_mean": np.asarray(rms.mean, dtype=np.float64),
            "obs_var": np.asarray(rms.var, dtype=np.float64),
            "obs_count": np.asarray([rms.count], dtype=np.float64),
            "return_moments": np.asarray(
                [filtered.rms.mean, filtered.rms.var, filtered.rms.count], dtype=np.float64
            ),
            "running_returns": filtered.returns.copy(),
        })  # fmt: skip
        return arrays

    def check(self, arrays: dict[str, np.ndarray], where: str) -> None:
        """Every array of `arrays()` against the live ones (keys, shapes, dtypes) and the
        statistics for sense (finite, variances >= 0, counts > 0); CheckpointError if not."""
        live = self.arrays()
        check_arrays(arrays, {k: (v.shape, v.dtype) for k, v in live.items()}, f"{where} rnd/")
        rms = [arrays["obs_mean"], arrays["obs_var"], arrays["obs_count"],
               arrays["return_moments"], arrays["running_returns"]]  # fmt: skip
        mean_var_counts = (arrays["obs_var"], arrays["return_moments"][1:])
        if not (all(np.isfinite(a).all() for a in rms) and all((a >= 0).all() for a in
                mean_var_counts) and arrays["obs_count"][0] > 0
                and arrays["return_moments"][2] > 0):  # fmt: skip
            raise CheckpointError(
                f"{where}: the RND statistics are not running means and variances (observation"
                f" count {arrays['obs_count'][0]}, return moments "
                f"{arrays['return_moments'].tolist()})"
            )

    def load(self, arrays: dict[str, np.ndarray], where: str) -> None:
        """Put `arrays()` back, after `check`."""
        self.check(arrays, where)
        for name, module in (("target", self.target), ("predictor", self.predictor),
                             ("value", self.value)):  # fmt: skip
            load_module(module, arrays, f"{name}/", self.device, where)
        load_optimizer(self.optimizer, arrays, where)
        self.obs_rms.mean = arrays["obs_mean"].copy()
        self.obs_rms.var = arrays["obs_var"].copy()
        self.obs_rms.count = float(arrays["obs_count"][0])
        mean, var, count = arrays["return_moments"].tolist()
        filtered = self.reward_filter.rms
        filtered.mean, filtered.var, filtered.count = np.float64(mean), np.float64(var), count
        self.reward_filter.returns = arrays["running_returns"].copy()


class CuriousLearner(ActorCriticLearner):
    """PPO's learner with RND: the same, plus `rnd` and its arrays (under `rnd/`) in every
    checkpoint; its restore checks and loads them too."""

    def __init__(self, config, envs, make_optimizer):
        super().__init__(config, envs, make_optimizer)
        self.rnd = RandomNetworkDistillation(config, self.obs_space, self.device)

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, state = super().checkpoint()
        arrays.update({f"rnd/{key}": value for key, value in self.rnd.arrays().items()})
        return arrays, state

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """RND's arrays are checked first, then the learner's restore checks and loads the
        rest (the rnd/ arrays' keys, shapes and dtypes again), then RND's are loaded."""
        found = {k[len("rnd/") :]: v for k, v in arrays.items() if k.startswith("rnd/")}
        self.rnd.check(found, f"checkpoint step-{meta['step']}")
        super().restore(arrays, meta)
        self.rnd.load(found, f"checkpoint step-{meta['step']}")
