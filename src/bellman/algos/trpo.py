"""TRPO: trust region policy optimization, with GAE advantages and a regressed value function.

Schulman, Levine, Moritz, Jordan and Abbeel, "Trust Region Policy Optimization", ICML 2015,
section 6 (practical algorithm) and appendix C (solving the trust-region problem), with the
advantage estimator and value regression of Schulman, Moritz, Levine, Jordan and Abbeel,
"High-Dimensional Continuous Control Using Generalized Advantage Estimation", 2016, Algorithm 1:

     1. for iteration i = 0, 1, 2, ... do
     2.     Run pi_theta_old for T timesteps in each of N actors ("single path" sampling)
     3.     Compute the advantage estimates A_t = GAE(gamma, lambda) with V_phi
     4.     Form the surrogate and the constraint (eq. 14), estimated on the samples:
                maximise_theta  L(theta) = E_t[pi_theta(a_t|s_t) / pi_old(a_t|s_t) A_t]
                subject to      KL_bar(theta) = E_t[KL(pi_old(.|s_t) || pi_theta(.|s_t))] <= delta
     5.     g = grad_theta L at theta_old
     6.     Search direction s ~= F^-1 g by conjugate gradient, where F is the Fisher information
            matrix (the Hessian of KL_bar at theta_old), used only through products
            F v = grad_theta (grad_theta KL_bar . v): F is never built
     7.     Maximal step: beta = sqrt(2 delta / s^T F s), so that the quadratic model of the KL
            is exactly delta at theta_old + beta s
     8.     Line search: for j = 0, 1, ...: theta = theta_old + shrink^j beta s; accept the first
            theta whose surrogate improves, L(theta) > L(theta_old), and whose exact KL_bar is
            <= delta; if none of `line_search_steps` tries is accepted, keep theta_old
     9.     Fit V_phi by regression on the value targets A_t + V_phi_old(s_t)
    10. end for

Deviations and details (those A2C and PPO share are in `algos/onpolicy.py`: the N actors, GAE
with the time-limit bootstrap, Gaussian actions clipped only for the env, normalisation, exact
resume):
    - The policy and the value are separate MLP trunks (stacked for speed, `nets.StackedTrunks`);
      `shared_trunk` is refused, since step 9 would then move the policy outside the trust
      region. theta is every parameter but the value's (`policy_parameters`): stacked trunks
      keep both halves in one tensor, and the critic's half gets no gradient from L or KL_bar,
      so conjugate gradient never moves it; separate trunks (Atari's CNNs) leave the critic's
      trunk out.
    - Step 3: the advantages are standardised over the batch (`normalize_advantages`), as in
      the reference implementation; step 4 adds c2 E[S[pi_theta](s_t)] to L when ent_coef > 0.
    - Step 6: F + cg_damping I is inverted (damping keeps CG stable when F is nearly singular),
      for `cg_iterations` iterations or until the residual is below 1e-10.
    - Step 8: the paper shrinks beta "exponentially until the objective improves" with the KL
      constraint as an infinite barrier; `line_search_shrink` is the factor.
    - Step 9: `value_epochs` passes of Adam (`learning_rate`) over the batch in minibatches of
      `value_minibatch_size`, on 0.5 (V - V^targ)^2, gradient norm clipped at max_grad_norm
      (the GAE paper solves a trust-region problem for V instead). vf_coef is not used.
    - The speed path (`fast`, on by default; nets/fast.py): with stacked MLP trunks the
      Fisher-vector products of step 6 are J^T M J v worked out by hand (one forward-mode and
      one backward pass, no double backpropagation) and step 9's value steps backpropagate by
      hand through the critic alone; the same numbers up to float rounding (tests).
    - The numbers logged: the surrogate's improvement, the KL_bar reached, the line search's
      backtracks (-1 when no step was taken), the norm of g and the step's fraction of beta.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
from bellman.config import interval
from bellman.errors import ConfigError, NonFiniteError
from bellman.losses import value_loss
from bellman.nets import ActorCritic, CategoricalHead
from bellman.nets.fast import fisher_vector_product as fast_fisher_vector_product
from bellman.nets.fast import supports_fisher_by_hand
from bellman.run import Run
from bellman.schedules import make_schedule


@dataclass(frozen=True)
class TRPOConfig(ActorCriticConfig):
    """Hyperparameters of TRPO; the defaults are the papers' (delta 0.01, CG 10 iterations,
    damping 0.1, GAE lambda 0.97) with a batch of one actor x 2048 steps."""

    max_kl: float = field(default=0.01, metadata=interval("(0, inf)"))
    """delta: the bound on the mean KL(pi_old || pi_theta) of one update (larger: bolder steps)."""
    cg_iterations: int = field(default=10, metadata=interval("[1, 1000]"))
    """Conjugate gradient iterations for the search direction F^-1 g."""
    cg_damping: float = field(default=0.1, metadata=interval("[0, inf)"))
    """Added to F's diagonal: CG solves (F + damping I) s = g (0: none, may be unstable)."""
    line_search_steps: int = field(default=10, metadata=interval("[1, 100]"))
    """Tries of the backtracking line search before the update is skipped."""
    line_search_shrink: float = field(default=0.8, metadata=interval("(0, 1)"))
    """The factor the step shrinks by at each try of the line search."""
    gae_lambda: float = field(default=0.97, metadata=interval("[0, 1]"))
    """GAE lambda: 0 is the one-step TD error (biased), 1 the n-step return (noisy)."""
    learning_rate: float = field(default=1e-3, metadata=interval("(0, inf)"))
    """Adam's step size for the value regression (at the start of the run when anneal is on)."""
    value_epochs: int = field(default=5, metadata=interval("[1, inf)"))
    """Passes of the value regression over the batch per iteration."""
    value_minibatch_size: int = field(default=64, metadata=interval("[1, inf)"))
    """Samples per gradient step of the value regression; must divide N x T."""

    def validate(self) -> None:
        batch = self.batch_size
        if self.shared_trunk:
            raise ConfigError(
                "TRPO bounds how far each update moves the policy, and regressing the value on "
                "a shared trunk would move it too; set shared_trunk = false"
            )
        if self.value_minibatch_size > batch or batch % self.value_minibatch_size:
            raise ConfigError(
                f"value_minibatch_size = {self.value_minibatch_size} must divide the batch of "
                f"n_envs x n_steps = {self.n_envs} x {self.n_steps} = {batch} samples; use a "
                f"divisor of {batch} such as {_largest_divisor(batch, self.value_minibatch_size)}"
            )
        super().validate()


def _largest_divisor(n: int, m: int) -> int:
    """The largest divisor of n that is at most m."""
    return max(d for d in range(1, min(m, n) + 1) if n % d == 0)


Config = TRPOConfig
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
def conjugate_gradient(
    matrix_vector: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iterations: int,
    tolerance: float = 1e-10,
) -> torch.Tensor:
    """Step 6: x ~= A^-1 b for a symmetric positive-definite A known only through products A v
    (Hestenes and Stiefel 1952), starting from x = 0:

        r = p = b
        repeat: alpha = r.r / p.Ap;  x += alpha p;  r -= alpha Ap
                p = r + (r_new.r_new / r_old.r_old) p          until r.r < tolerance

    On an n x n system it is exact (up to rounding) after n iterations.
    """
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    r_dot_r = torch.dot(r, r)
    for _ in range(iterations):
        if float(r_dot_r) < tolerance:
            break
        a_p = matrix_vector(p)
        alpha = r_dot_r / torch.dot(p, a_p)
        x += alpha * p
        r -= alpha * a_p
        new_r_dot_r = torch.dot(r, r)
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
    return x


def mean_kl(head, old_params: torch.Tensor, params: torch.Tensor, old_log_std=None):
    """KL_bar = E_s[KL(pi_old(.|s) || pi_theta(.|s))] in closed form, differentiable in `params`
    (and, for a Gaussian, in the head's log sigma):

        categorical: KL = sum_a p_old(a) (log p_old(a) - log p(a))
        Gaussian:    KL = sum_i log(sigma_i / sigma_old_i)
                          + (sigma_old_i^2 + (mu_old_i - mu_i)^2) / (2 sigma_i^2) - 1/2

    Args:
        head: the policy head (CategoricalHead or DiagonalGaussianHead).
        old_params: [B, A] logits or [B, D] means of pi_old (no gradient).
        params: [B, A] or [B, D] of pi_theta.
        old_log_std: [D] log sigma of pi_old (Gaussian heads only; no gradient).
    """
    if isinstance(head, CategoricalHead):
        old_log_p = old_params.log_softmax(dim=-1)
        return (old_log_p.exp() * (old_log_p - params.log_softmax(dim=-1))).sum(-1).mean()
    return gaussian_kl(old_params, old_log_std, params, head.log_std)


def gaussian_kl(old_mean, old_log_std, mean, log_std) -> torch.Tensor:
    """E_s[KL(N(mu_old, sigma_old^2) || N(mu, sigma^2))] of diagonal Gaussians, summed over the
    D dimensions: means [B, D], log sigmas [D]."""
    variance_ratio = torch.exp(2 * (old_log_std - log_std))
    squared = (old_mean - mean) ** 2 * torch.exp(-2 * log_std)
    return (log_std - old_log_std + 0.5 * (variance_ratio + squared - 1.0)).sum(-1).mean()


def accept_step(improvement: float, kl: float, max_kl: float) -> bool:
    """Step 8's rule: a step is taken only if the surrogate improves and the exact KL_bar stays
    within the trust region (a non-finite value is never accepted)."""
    return math.isfinite(improvement) and math.isfinite(kl) and improvement > 0 and kl <= max_kl


def backtracking_line_search(
    evaluate: Callable[[float], tuple[float, float]],
    max_kl: float,
    shrink: float,
    tries: int,
) -> tuple[int, float, float]:
    """Step 8: try fractions 1, shrink, shrink^2, ... of the maximal step until `accept_step`.

    Args:
        evaluate: fraction -> (L(theta_old + fraction beta s) - L(theta_old), KL_bar there),
            leaving theta at that point.
        max_kl: delta.
        shrink: the factor between two tries, in (0, 1).
        tries: how many fractions to try.

    Returns:
        (the accepted try's index j, or -1 when none was, the improvement, the KL_bar) of the
        accepted step, or of the last try when none was accepted.
    """
    improvement = kl = math.nan
    for j in range(tries):
        improvement, kl = evaluate(shrink**j)
        if accept_step(improvement, kl, max_kl):
            return j, improvement, kl
    return -1, improvement, kl


class PolicyDistance:
    """L(theta) and KL_bar(theta) of one batch, with theta_old's distribution fixed: the
    objective and the constraint of step 4, and Fisher-vector products (step 6).

    Args:
        policy: the ActorCritic; theta is `policy_parameters(policy)`.
        obs: [B, ...] observations; actions: [B] or [B, D]; old_log_probs: [B] log pi_old(a|s).
        advantages: [B] A_t; ent_coef: c2 of the entropy bonus.
    """

    def __init__(self, policy: ActorCritic, obs, actions, old_log_probs, advantages, ent_coef):
        self.policy, self.head = policy, policy.policy_head
        self.obs, self.actions, self.advantages = obs, actions, advantages
        self.old_log_probs, self.ent_coef = old_log_probs, ent_coef
        self.parameters = policy_parameters(policy)
        with torch.no_grad():
            self.old_params = self.distribution_parameters()
            self.old_log_std = getattr(self.head, "log_std", None)
            if self.old_log_std is not None:
                self.old_log_std = self.old_log_std.detach().clone()

    def distribution_parameters(self) -> torch.Tensor:
        """pi_theta's logits or means on the batch: [B, A] or [B, D]."""
        return self.head(self.policy.trunks.actor_features(self.obs))

    def surrogate(self) -> torch.Tensor:
        """L(theta) = E[exp(log pi_theta(a|s) - log pi_old(a|s)) A] (+ c2 E[S])."""
        params = self.distribution_parameters()
        log_probs, entropy = self.head.log_prob_entropy(params, self.actions)
        objective = ((log_probs - self.old_log_probs).exp() * self.advantages).mean()
        return objective + self.ent_coef * entropy.mean() if self.ent_coef else objective

    def kl(self) -> torch.Tensor:
        """KL_bar(theta) = E_s[KL(pi_old(.|s) || pi_theta(.|s))], in closed form."""
        return mean_kl(self.head, self.old_params, self.distribution_parameters(), self.old_log_std)

    def fisher_vector_product(
        self, damping: float, by_hand: bool = False
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """v -> (F + damping I) v at theta_old, where F = Hessian of KL_bar (the Fisher matrix):
        F v = grad (grad KL_bar . v), by double backpropagation (F is never built). With
        `by_hand` (the speed path, stacked MLP trunks only) the same product as J^T M J v,
        worked out without autograd (`nets.fast.fisher_vector_product`)."""
        if by_hand:
            return fast_fisher_vector_product(self.policy, self.obs, self.parameters, damping)
        grads = torch.autograd.grad(self.kl(), self.parameters, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])

        def product(v: torch.Tensor) -> torch.Tensor:
            hessian_v = torch.autograd.grad(flat @ v, self.parameters, retain_graph=True)
            return torch.cat([h.reshape(-1) for h in hessian_v]) + damping * v

        return product


def policy_parameters(policy: ActorCritic) -> list[torch.Tensor]:
    """theta: every parameter of the network but the value's (its head, and its trunk where the
    trunks are separate modules; stacked trunks are one tensor each, see the module docstring)."""
    critic = ("value_head.", "trunks.critic.")
    return [p for name, p in policy.named_parameters() if not name.startswith(critic)]


def flat(tensors) -> torch.Tensor:
    """The tensors as one vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def set_flat(parameters: list[torch.Tensor], vector: torch.Tensor) -> None:
    """Write `vector` into the parameters in place (their storage is kept: the speed path's
    flat buffer and numpy views see the new values)."""
    offset = 0
    with torch.no_grad():
        for parameter in parameters:
            parameter.copy_(vector[offset : offset + parameter.numel()].view_as(parameter))
            offset += parameter.numel()


# ---- steps 4-8 ----------------------------------------------------------------------------
def trust_region_step(learner: ActorCriticLearner, batch: RolloutBatch) -> dict[str, float]:
    """Steps 4-8: one natural-gradient step on L within KL_bar <= delta; returns the diagnostics."""
    config = learner.config
    advantages = standardize(batch.advantages) if config.normalize_advantages else batch.advantages
    # 4. the surrogate and the constraint on the batch, pi_old fixed
    problem = PolicyDistance(
        learner.policy, batch.obs, batch.actions, batch.log_probs, advantages, config.ent_coef
    )
    parameters = problem.parameters
    theta_old = flat(parameters).detach().clone()
    # 5. g = grad L(theta_old)
    surrogate_old = problem.surrogate()
    g = flat(torch.autograd.grad(surrogate_old, parameters))
    surrogate_old = float(surrogate_old.detach())
    # 6. s ~= (F + damping I)^-1 g by conjugate gradient on Fisher-vector products
    by_hand = learner.fast is not None and supports_fisher_by_hand(learner.policy)
    fisher = problem.fisher_vector_product(config.cg_damping, by_hand)
    s = conjugate_gradient(fisher, g, config.cg_iterations)
    # 7. beta = sqrt(2 delta / s^T F s): the quadratic model of the KL reaches delta
    curvature = float(s @ fisher(s))
    beta = math.sqrt(2 * config.max_kl / curvature) if curvature > 0 else 0.0
    full_step = beta * s

    # 8. backtracking line search: the first fraction that improves L with KL_bar <= delta
    def evaluate(fraction: float) -> tuple[float, float]:
        set_flat(parameters, theta_old + fraction * full_step)
        with torch.no_grad():
            return float(problem.surrogate()) - surrogate_old, float(problem.kl())

    backtracks, improvement, kl = (
        backtracking_line_search(
            evaluate, config.max_kl, config.line_search_shrink, config.line_search_steps
        )
        if beta > 0
        else (-1, math.nan, math.nan)
    )
    if backtracks < 0:  # no step was accepted: theta stays theta_old
        set_flat(parameters, theta_old)
    if not (math.isfinite(surrogate_old) and math.isfinite(float(g.norm()))):
        raise NonFiniteError(
            f"TRPO surrogate is not finite at step {learner.step} (L {surrogate_old}, "
            f"|g| {float(g.norm())})"
        )
    accepted = backtracks >= 0
    return {
        "surrogate": surrogate_old,
        "improvement": improvement if accepted else 0.0,
        "approx_kl": kl if accepted else 0.0,
        "backtracks": backtracks,
        "step_fraction": config.line_search_shrink**backtracks if accepted else 0.0,
        "gradient_norm": float(g.norm()),
    }


# ---- step 9 -------------------------------------------------------------------------------
def make_learner(config: TRPOConfig, envs: gym.vector.VectorEnv) -> ActorCriticLearner:
    """pi_theta, V_phi and Adam for the value regression. Adam holds every parameter (the
    learner's speed path keeps them in one buffer), but only V_phi's get gradients from the
    value loss: Adam's moments for theta stay 0 and so do its steps."""
    return ActorCriticLearner(
        config, envs,
        lambda parameters: torch.optim.Adam(parameters, lr=config.learning_rate, fused=True),
    )  # fmt: skip


def fit_value(learner: ActorCriticLearner, batch: RolloutBatch, learning_rate: float) -> dict:
    """Step 9: regress V_phi(s_t) on the targets A_t + V_old(s_t), `value_epochs` passes of
    minibatch Adam steps on 0.5 (V - V^targ)^2; returns the mean loss."""
    config = learner.config
    learner.set_learning_rate(learning_rate)
    losses = []
    for _ in range(config.value_epochs):
        for minibatch in batch.minibatches(config.value_minibatch_size):
            if learner.fast is not None:  # the same step, gradients by hand (nets/fast.py)
                loss = learner.fast.value_step(
                    learner.optimizer, minibatch.obs, minibatch.returns, config.max_grad_norm
                )
            else:
                learner.zero_grad()
                loss = value_loss(learner.policy.value(minibatch.obs), minibatch.returns)
                loss.backward()
                learner.update(config.max_grad_norm)
            losses.append(loss.detach())
    mean_loss = float(torch.stack(losses).mean())
    if not math.isfinite(mean_loss):
        raise NonFiniteError(f"TRPO value loss is not finite at step {learner.step}")
    return {"value_loss": mean_loss, "learning_rate": learning_rate}


# ---- the loop -----------------------------------------------------------------------------
def train(config: TRPOConfig, envs: gym.vector.VectorEnv, run: Run) -> ActorCriticLearner:
    """Run TRPO for `config.steps` env steps (see the module docstring for the pseudocode)."""
    torch.set_num_threads(config.torch_threads)
    learner = make_learner(config, envs)
    if run.restored is not None:
        learner.restore(*run.restored)
    kind = "linear" if config.anneal else "constant"
    learning_rate = make_schedule(kind, config.learning_rate, 0.0, 1.0, config.steps)
    evaluation = training_evaluation(learner, config)
    rollout = rollout_storage(learner, config)  # [T, N, ...]: obs, actions, log pi_old, V, r

    with run.session(start_step=learner.step):
        obs = boundary(learner, envs, config)
        while learner.step < config.steps:  # 1. for iteration i
            before = learner.step
            # 2. run pi_theta_old for T timesteps in each of the N actors
            obs, experience, last_values = run_policy(learner, envs, obs, rollout, run)
            # 3. advantage estimates: GAE(gamma, lambda) with V_phi
            advantages, returns = estimate_advantages(
                experience, last_values, config.gamma, config.gae_lambda
            )
            batch = RolloutBatch.of(experience, advantages, returns)  # the N T samples
            # 4.-8. the trust-region step on theta: CG on F v, beta, the line search
            stats = trust_region_step(learner, batch)
            # 9. fit V_phi by regression on the value targets
            stats.update(fit_value(learner, batch, learning_rate(before)))
            stats["explained_variance"] = explained_variance(batch.values, batch.returns)
            learner.iterations += 1
            # evaluate, log, solved?, checkpoint, fresh episodes after a checkpoint
            stop, obs = end_iteration(learner, envs, run, evaluation, before, stats, obs)
            if stop:
                break
    evaluation.close()
    return learner
