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

Deviations and details (those A2C shares are in `algos/onpolicy.py`: the N actors, GAE
with the time-limit bootstrap, Gaussian actions clipped only for the env, normalisation, exact
resume):
    - Step 4: A_t is GAE(gamma, lambda); V_t^targ = A_t + V(s_t). The advantages are
      standardised per minibatch (`normalize_advantages`), as in the paper's code.
    - Step 5: the loss is -L^{+VF+S}; c1 = vf_coef, c2 = ent_coef; the value loss is
      0.5 (V - V^targ)^2, optionally clipped around the old values (`clip_value_loss`, baselines'
      PPO2). Adam, gradient-norm clipping (`max_grad_norm`); with `anneal` the learning rate and
      eps fall linearly to 0 over the run (the paper's Atari setting). Each epoch visits the NT
      samples in a new random order; M must divide NT (no ragged last minibatch), and M > NT is
      an error. With `fast` (the default) the same step is taken by `nets.fast.FastPath`, with
      the loss's gradient worked out by hand instead of by autograd (see `gradient_step`).
    - KL[pi_old, pi_theta] is estimated from the sampled actions, (r - 1) - log r (unbiased, and
      its gradient is that of the KL): in L^KLPEN per minibatch, and for adaptive_kl's d over
      the whole batch after the K epochs (one more forward pass over the NT samples). The other
      objectives log as approx_kl the mean of the last epoch's minibatch estimates, each taken
      before its step (as SB3 and CleanRL log it): that extra pass cost PPO on Atari about a
      tenth of its network time. With `target_kl` > 0 the epochs stop at the first minibatch
      whose estimate exceeds it (before its step).
    - Evaluation, logging and checkpoints happen between iterations (after step 6).
    - Checkpoints hold the network, Adam's state, the normalisation statistics, torch's and
      numpy's generators, beta and the counters.
    - `intrinsic = rnd` adds Burda et al.'s curiosity bonus (see `algos/rnd.py`): a second,
      non-episodic value V_I and the advantages A_E + c_I A_I; the extrinsic side is unchanged.
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
from bellman.algos.rnd import CuriousLearner
from bellman.config import choices, interval
from bellman.errors import ConfigError, NonFiniteError
from bellman.losses import approximate_kl, clipped_surrogate_loss, value_loss
from bellman.run import Run
from bellman.schedules import make_schedule


@dataclass(frozen=True)
class PPOConfig(ActorCriticConfig):
    """Hyperparameters of PPO; the defaults are the paper's MuJoCo settings (Table 3)."""

    minibatch_size: int = field(default=64, metadata=interval("[1, inf)"))
    """M: samples per gradient step; must divide N x T (more minibatches: more, noisier steps)."""
    n_epochs: int = field(default=10, metadata=interval("[1, inf)"))
    """K: passes over the batch per iteration (too many: the policy moves too far from pi_old)."""
    adam_epsilon: float = field(default=1e-5, metadata=interval("(0, inf)"))
    """Adam's epsilon (1e-5 as in OpenAI baselines; PyTorch's default is 1e-8)."""
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
    clip_value_loss: bool = False
    """Clip V around the rollout's values by eps too (OpenAI baselines' PPO2)."""
    intrinsic: str = field(default="none", metadata=choices("none", "rnd"))
    """Curiosity bonus: rnd adds random network distillation's intrinsic advantages (rnd.py)."""
    intrinsic_coef: float = field(default=1.0, metadata=interval("[0, inf)"))
    """c_I of RND: the advantages are A_E + c_I A_I (0: the bonus is computed but not used)."""
    intrinsic_gamma: float = field(default=0.99, metadata=interval("[0, 1]"))
    """gamma_I of RND: the discount of the non-episodic intrinsic returns (gamma is gamma_E)."""
    rnd_embedding: int = field(default=64, metadata=interval("[1, inf)"))
    """RND: outputs of the random target f and the predictor f_hat."""
    rnd_update_proportion: float = field(default=0.25, metadata=interval("(0, 1]"))
    """RND: the fraction of each minibatch the predictor learns from."""
    rnd_epochs: int = field(default=4, metadata=interval("[1, inf)"))
    """RND: passes over each batch that train f_hat and V_I (in minibatches of M)."""

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
        super().validate()


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


# ---- the pieces of the pseudocode ---------------------------------------------------------
def surrogate(objective: str, log_ratio: torch.Tensor, advantages, clip_range: float, beta: float):
    """L, the surrogate objective step 5 maximises (see the module docstring), and the fraction
    of samples whose r_t lies outside [1 - eps, 1 + eps] (logged for every objective).

    Args:
        objective: clip (L^CLIP), adaptive_kl or fixed_kl (L^KLPEN), none (L^CPI).
        log_ratio: [B] log r_t = log pi_theta(a_t|s_t) - log pi_old(a_t|s_t).
        advantages: [B] A_t.
        clip_range: eps; beta: the KL penalty's coefficient.
    """
    ratio = log_ratio.exp()
    clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    if objective == "clip":
        return -clipped_surrogate_loss(log_ratio, advantages, clip_range)[0], clip_fraction
    objective_value = (ratio * advantages).mean()  # L^CPI = E[r A]
    if objective != "none":  # L^KLPEN = E[r A - beta KL[pi_old, pi]]
        objective_value = objective_value - beta * approximate_kl(log_ratio)
    return objective_value, clip_fraction


def adapt_kl_beta(beta: float, kl: float, kl_target: float) -> float:
    """The paper's rule after each update: halve beta when d < d_targ / 1.5 (the policy barely
    moved), double it when d > 1.5 d_targ (it moved too far), else keep it."""
    if kl < kl_target / 1.5:
        return beta / 2
    if kl > kl_target * 1.5:
        return beta * 2
    return beta


# ---- step 5 -------------------------------------------------------------------------------
def make_learner(config: PPOConfig, envs: gym.vector.VectorEnv) -> ActorCriticLearner:
    """pi_theta, V_theta and Adam (fused: one kernel for all parameters); beta in `scalars`;
    with intrinsic = rnd, RND's networks too (`rnd.CuriousLearner`)."""
    kind = CuriousLearner if config.intrinsic == "rnd" else ActorCriticLearner
    learner = kind(
        config, envs,
        lambda parameters: torch.optim.Adam(
            parameters, lr=config.learning_rate, eps=config.adam_epsilon, fused=True
        ),
    )  # fmt: skip
    learner.scalars["kl_beta"] = config.kl_beta
    return learner


def optimize(
    learner: ActorCriticLearner, batch: RolloutBatch, learning_rate: float, clip_range: float
):
    """Step 5: K epochs of minibatch gradient steps on -L^{+VF+S}; returns the diagnostics."""
    learner.set_learning_rate(learning_rate)
    config = learner.config
    history: list[tuple[torch.Tensor, ...]] = []
    epochs = 0
    while epochs < config.n_epochs and epoch(learner, batch, clip_range, history):
        epochs += 1
    steps = torch.stack([torch.stack(s) for s in history]) if history else None
    means = steps.mean(0).tolist() if history else []
    policy_loss, value_loss_, entropy, clip_fraction, _ = means or [math.nan] * 5
    if config.objective == "adaptive_kl":  # d: how far theta moved from theta_old, whole batch
        with torch.no_grad():
            log_probs, _, _ = learner.policy.evaluate(batch.obs, batch.actions)
            kl = float(approximate_kl(log_probs - batch.log_probs))
    else:  # the last epoch's minibatch estimates (no extra forward pass over the batch)
        per_epoch = max(1, len(batch.returns) // config.minibatch_size)
        kl = float(steps[-per_epoch:, 4].mean()) if history else math.nan
    if not (math.isfinite(kl) and math.isfinite(policy_loss) and math.isfinite(value_loss_)):
        raise NonFiniteError(
            f"PPO loss is not finite at step {learner.step} (policy loss {policy_loss}, "
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


def epoch(
    learner: ActorCriticLearner, batch: RolloutBatch, clip_range: float, history: list
) -> bool:
    """One pass over the batch in a fresh random order, in minibatches of M; False when
    target_kl stopped it (the policy moved far enough this iteration)."""
    for minibatch in batch.minibatches(learner.config.minibatch_size):
        step = gradient_step(learner, minibatch, clip_range)
        if step is None:
            return False
        history.append(step)
    return True


def gradient_step(learner: ActorCriticLearner, minibatch: RolloutBatch, clip_range: float):
    """One minibatch step of step 5 on the loss -L^{+VF+S} = -(L - c1 VF + c2 S); None (and no
    step) when the minibatch's KL estimate exceeds target_kl.

    With `fast` on (the default) `nets.fast.FastPath.ppo_step` takes the same step with the
    loss's gradient worked out by hand and backpropagated by hand through stacked MLPs: on a
    small MLP policy autograd's graph costs more than the network. tests/algos/test_ppo.py
    checks that both paths take autograd's gradients through the textbook loss (every objective
    and head) and train to the same weights.

    Returns:
        (policy loss -L, value loss, entropy, clip fraction, the minibatch's KL estimate before
        the step) as scalars.
    """
    config = learner.config
    beta = learner.scalars["kl_beta"]
    advantages = minibatch.advantages
    if config.normalize_advantages:
        advantages = standardize(advantages)
    if learner.fast is not None:
        return learner.fast.ppo_step(
            learner.optimizer, config, minibatch, advantages, clip_range, beta
        )
    log_probs, entropy, values = learner.policy.evaluate(minibatch.obs, minibatch.actions)
    log_ratio = log_probs - minibatch.log_probs  # log r_t(theta)
    kl = approximate_kl(log_ratio.detach())
    if config.target_kl and float(kl) > config.target_kl:
        return None
    objective, clip_fraction = surrogate(config.objective, log_ratio, advantages, clip_range, beta)
    value_clip = clip_range if config.clip_value_loss else None
    critic_loss = value_loss(values, minibatch.returns, minibatch.values, value_clip)
    entropy = entropy.mean()
    loss = -(objective - config.vf_coef * critic_loss + config.ent_coef * entropy)
    learner.optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(learner.parameters, config.max_grad_norm)
    learner.optimizer.step()
    return -objective.detach(), critic_loss.detach(), entropy.detach(), clip_fraction, kl


# ---- the loop -----------------------------------------------------------------------------
def train(config: PPOConfig, envs: gym.vector.VectorEnv, run: Run) -> ActorCriticLearner:
    """Run PPO for `config.steps` env steps (see the module docstring for the pseudocode)."""
    torch.set_num_threads(config.torch_threads)
    learner = make_learner(config, envs)
    if run.restored is not None:
        learner.restore(*run.restored)
    kind = "linear" if config.anneal else "constant"
    learning_rate = make_schedule(kind, config.learning_rate, 0.0, 1.0, config.steps)
    clip_range = make_schedule(kind, config.clip_range, 0.0, 1.0, config.steps)
    evaluation = training_evaluation(learner, config)
    rollout = rollout_storage(learner, config)  # [T, N, ...]: obs, actions, log pi_old, V, r

    with run.session(start_step=learner.step):
        obs = boundary(learner, envs, config)
        while learner.step < config.steps:  # 1. for iteration
            before = learner.step
            # 2.-3. for actor = 1..N: run pi_theta_old for T timesteps (the N envs together)
            obs, experience, last_values = run_policy(learner, envs, obs, rollout, run)
            # 4. advantage estimates A_1..A_T: GAE(gamma, lambda), for every actor
            advantages, returns = estimate_advantages(
                experience, last_values, config.gamma, config.gae_lambda
            )
            if config.intrinsic == "rnd":  # curiosity: A = A_E + c_I A_I (algos/rnd.py, 4-10)
                advantages, intrinsic = learner.rnd.advantages(experience, obs, advantages)
            batch = RolloutBatch.of(experience, advantages, returns)  # the N T samples, flattened
            # 5. optimize the surrogate L wrt theta: K epochs, minibatches of M <= NT samples
            beta = learner.scalars["kl_beta"]
            stats = optimize(learner, batch, learning_rate(before), clip_range(before))
            if config.intrinsic == "rnd":  # and the predictor f_hat and V_I (algos/rnd.py, 11)
                stats.update(learner.rnd.update(batch.obs, intrinsic))
            if config.objective == "adaptive_kl":  # L^KLPEN: adapt beta to the measured d
                learner.scalars["kl_beta"] = adapt_kl_beta(
                    beta, stats["approx_kl"], config.kl_target
                )
            if config.objective in ("adaptive_kl", "fixed_kl"):
                stats["kl_beta"] = beta
            # 6. theta_old <- theta: the next rollout samples (and scores) the updated policy
            learner.iterations += 1
            # evaluate, log, solved?, checkpoint, fresh episodes after a checkpoint
            stop, obs = end_iteration(learner, envs, run, evaluation, before, stats, obs)
            if stop:
                break
    evaluation.close()
    return learner
