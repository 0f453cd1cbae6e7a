"""The speed path: the computations of `bellman.nets` and of the actor-critic losses redone for
small networks on a CPU, where torch's per-call overhead, not the arithmetic, is the cost. One
switch picks it: `fast` in the actor-critic configs (on by default), which makes the learner
build a `FastPath`. Each piece here has a plain counterpart that reads like the paper (autograd,
torch.optim, torch.nn.utils, the modules of `bellman.nets`) and a test that proves the two equal
(tests/test_nets.py, tests/test_advantages_losses.py, tests/algos/test_ppo.py): the same numbers
up to float rounding, and whole PPO runs that end with the same weights.

    `FastPath`            the interface: one per actor-critic learner, everything below behind it
    numpy acting          a ~ pi(.|s) with numpy on views of the CPU parameters (`NumpyTrunks`):
                          for a handful of observations torch's per-call overhead is several
                          times the arithmetic; the same draws from the same numpy generator as
                          `ActorCritic.sample`; DQN's greedy actions likewise (`NumpyGreedy`)
    gradients by hand     PPO's loss differentiated wrt the network's outputs without autograd
                          (`surrogate_gradient`, `value_loss_gradient`,
                          `log_prob_entropy_backward`), then backpropagated by hand through
                          stacked MLP trunks (`stacked_backward`) or by autograd from the outputs
                          (other trunks): on a small MLP the graph costs more than the network
    Fisher products       TRPO's F v as J^T M J v (`fisher_vector_product`): one forward-mode and
                          one backward pass by hand through the actor's MLP instead of autograd's
                          double backpropagation (`algos.trpo.PolicyDistance`'s plain product)
    optimiser steps       `FlatParameters` (parameters and gradients in one buffer each: zeroing,
                          the clip and Adam are one call each), `step_optimizer` (the fused Adam
                          kernel called directly), `clip_grad_norm` (torch's clip, less overhead)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bellman.losses import approximate_kl, value_loss
from bellman.nets import (
    ActorCritic,
    CategoricalHead,
    NatureCNN,
    QNetwork,
    StackedTrunks,
    VectorTrunk,
    gaussian_sample,
    vector_inputs,
)


# ---- the interface ------------------------------------------------------------------------
class FastPath:
    """The speed path of an actor-critic learner: acting, PPO's gradient step and the optimiser
    step, each the same as the plain path's (`ActorCritic.sample`; `algos.ppo.gradient_step`'s
    autograd loss; optimizer.zero_grad(), clip_grad_norm_, optimizer.step()).

    Built once, after the network is on its device and before the optimiser takes a step: it
    moves the parameters into one buffer (`FlatParameters`), then makes numpy views of them.

    Args:
        policy: the ActorCritic.
        parameters: its parameters in the optimiser's order (default: policy.parameters()).
    """

    def __init__(self, policy: ActorCritic, parameters: list[torch.Tensor] | None = None):
        self.policy = policy
        self.flat = FlatParameters(list(policy.parameters()) if parameters is None else parameters)
        self.numpy_trunks = NumpyTrunks(policy.trunks) if supports_numpy(policy) else None
        if self.numpy_trunks is not None:
            layer, value = policy_layer(policy), policy.value_head
            head = policy.policy_head
            tensors = [layer.weight, layer.bias, value.weight, value.bias]
            log_std = [] if isinstance(head, CategoricalHead) else [head.log_std]
            self.head_views = [t.detach().numpy() for t in tensors + log_std]

    def sample(self, obs: np.ndarray, rng: np.random.Generator):
        """`ActorCritic.sample` (a ~ pi(.|s) from `rng`: numpy actions, log pi(a|s), V(s)),
        computed with numpy when the network allows it (`supports_numpy`)."""
        if self.numpy_trunks is None:
            return self.policy.sample(obs, rng)
        actor, critic = self.numpy_trunks(obs)
        weight, bias, value_weight, value_bias, *log_std = self.head_views
        params = actor @ weight.T + bias
        values = critic @ value_weight[0] + value_bias
        if log_std:
            actions, log_probs = gaussian_sample(params, log_std[0], rng)
        else:
            actions, log_probs = self.policy.policy_head.sample_numpy(params, rng)
        return actions, log_probs, values

    def zero_grad(self) -> None:
        """optimizer.zero_grad(): the gradients, one buffer, zeroed in place."""
        self.flat.zero_grad()

    def clip_grad_norm(self, max_norm: float) -> None:
        """torch.nn.utils.clip_grad_norm_ on the parameters: one norm of one buffer."""
        self.flat.clip_grad_norm(max_norm)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step(): for a plain fused Adam, one kernel call on the buffers."""
        self.flat.step(optimizer)

    def ppo_step(self, optimizer, config, minibatch, advantages, clip_range: float, beta: float):
        """One minibatch step of PPO's step 5, as `algos.ppo.gradient_step`'s plain path takes
        it: the loss -(L - c1 VF + c2 S) and its gradients, a clip of their norm, Adam. Here the
        loss's gradient wrt the network's outputs is worked out by hand (`surrogate_gradient`,
        `value_loss_gradient`, `log_prob_entropy_backward`) and flows back through the network
        by hand (`backward_from_outputs`): autograd's gradients, without its graph.

        Args:
            optimizer: Adam over the parameters.
            config: the PPOConfig (objective, target_kl, clip_value_loss, vf_coef, ent_coef,
                max_grad_norm).
            minibatch: obs, actions, log_probs (pi_old's), values (the rollout's), returns.
            advantages: [B] A_t, standardised when the config says so.
            clip_range: eps now; beta: the KL penalty's coefficient now.

        Returns:
            (-L, value loss, entropy, clip fraction, KL estimate before the step) as scalars, or
            None (and no step) when the minibatch's KL estimate exceeds target_kl.
        """
        policy = self.policy
        head = policy.policy_head
        params, values, tape = outputs_for_backward(policy, minibatch.obs)
        with torch.no_grad():
            log_probs, entropy = head.log_prob_entropy(params, minibatch.actions)
            log_ratio = log_probs - minibatch.log_probs
            kl = approximate_kl(log_ratio)
            if config.target_kl and float(kl) > config.target_kl:
                return None
            policy_loss, clip_fraction, log_ratio_grad = surrogate_gradient(
                config.objective, log_ratio, advantages, clip_range, beta
            )
            value_clip = clip_range if config.clip_value_loss else None
            critic_loss = value_loss(values, minibatch.returns, minibatch.values, value_clip)
            values_grad = value_loss_gradient(
                values, minibatch.returns, minibatch.values, value_clip
            )
            self.flat.zero_grad()
            # d(loss)/d(outputs): log pi(a|s) through -L, V through c1 VF, and the entropy
            # bonus, -c2 S averaged over the n samples
            params_grad = log_prob_entropy_backward(
                head, params, minibatch.actions, log_ratio_grad, -config.ent_coef / len(log_ratio)
            )
        backward_from_outputs(policy, tape, params_grad, values_grad.mul_(config.vf_coef))
        self.flat.clip_grad_norm(config.max_grad_norm)
        self.flat.step(optimizer)
        return policy_loss, critic_loss, entropy.mean(), clip_fraction, kl

    def value_step(self, optimizer, obs, returns, max_grad_norm: float) -> torch.Tensor:
        """One minibatch step of a value regression (TRPO's step 9) as the plain path takes it:
        the loss 0.5 (V - R)^2 (`losses.value_loss`) of V = `ActorCritic.value`, its gradients,
        a clip of their norm, Adam. dL/dV by hand (`value_loss_gradient`); through stacked
        trunks, only the critic's half is computed and backpropagated by hand (the actor's
        half gets zeros, as autograd gives it); other trunks go through autograd.
        Returns the loss."""
        policy, value = self.policy, self.policy.value_head
        trunks = policy.trunks
        if not isinstance(trunks, StackedTrunks):
            params, values, tape = outputs_for_backward(policy, obs)
            with torch.no_grad():
                critic_loss = value_loss(values, returns)
                values_grad = value_loss_gradient(values, returns)
                self.flat.zero_grad()
            backward_from_outputs(policy, tape, torch.zeros_like(params), values_grad)
        else:
            with torch.no_grad():
                activation = INPLACE_ACTIVATIONS[trunks.activation]
                features = [vector_inputs(obs, trunks.one_hot)]
                for weight, bias in zip(trunks.weights, trunks.biases, strict=True):
                    features.append(activation(torch.addmm(bias[1], features[-1], weight[1])))
                values = nn.functional.linear(features[-1], value.weight, value.bias).squeeze(-1)
                critic_loss = value_loss(values, returns)
                values_grad = value_loss_gradient(values, returns)
                self.flat.zero_grad()
                critic_backward(trunks, value, features, values_grad)
        self.flat.clip_grad_norm(max_grad_norm)
        self.flat.step(optimizer)
        return critic_loss


# ---- numpy acting -------------------------------------------------------------------------
#: The MLP nonlinearities in numpy.
NUMPY_ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh}


def supports_numpy(policy: ActorCritic) -> bool:
    """Whether numpy acting applies: stacked MLP trunks of vector observations, on the CPU."""
    on_cpu = all(p.device.type == "cpu" for p in policy.parameters())
    trunks = policy.trunks
    return isinstance(trunks, StackedTrunks) and trunks.one_hot is None and on_cpu


class NumpyTrunks:
    """`StackedTrunks.forward` with numpy, on views of the CPU parameters (optimiser steps and
    load_state_dict write into that memory, so the views stay current; build it after anything
    that gives the parameters new memory, such as .to() or `FlatParameters`)."""

    def __init__(self, trunks: StackedTrunks):
        self.activation = NUMPY_ACTIVATIONS[trunks.activation]
        pairs = zip(trunks.weights, trunks.biases, strict=True)
        self.layers = [(weight.detach().numpy(), bias.detach().numpy()) for weight, bias in pairs]

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B, ...] vector observations -> (actor features [B, H], critic features [B, H])."""
        x = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        for weight, bias in self.layers:
            x = self.activation(x @ weight + bias)  # [2, B, out]
        if not self.layers:
            return x, x
        return x[0], x[1]


class NumpyGreedy:
    """argmax_a Q(s, a) (DQN's greedy action) with numpy on views of a QNetwork's CPU parameters,
    which the optimizer updates in place: for acting in a small MLP, torch's per-call overhead
    is 5-10 times the arithmetic. The same actions as q_network(obs).argmax(1)."""

    def __init__(self, q_network: QNetwork):
        layers = [
            *q_network.trunk.layers,
            q_network.advantage if q_network.dueling else q_network.head,
        ]
        self.layers = [
            (layer.weight.detach().numpy(), layer.bias.detach().numpy()) for layer in layers
        ]

    @staticmethod
    def supports(q_network: QNetwork) -> bool:
        """Whether it applies: a ReLU MLP trunk of vector observations, on the CPU."""
        trunk = q_network.trunk
        on_cpu = all(p.device.type == "cpu" for p in q_network.parameters())
        is_relu_mlp = isinstance(trunk, VectorTrunk) and trunk.activation == "relu"
        return is_relu_mlp and trunk.one_hot is None and on_cpu

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(s, a) for [N, D] float observations: -> [N]."""
        *hidden, (head_weight, head_bias) = self.layers
        x = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        for weight, bias in hidden:
            x = np.maximum(x @ weight.T + bias, 0.0)
        # The dueling value and the mean advantage do not change the argmax over actions.
        return np.argmax(x @ head_weight.T + head_bias, axis=1)


# ---- gradients by hand --------------------------------------------------------------------
def _tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place as 2 sigmoid(2 x) - 1: on a CPU torch's float32 sigmoid is about 4 times
    faster than its tanh (which is accurate to 1 ulp), and this is within 2e-7 of it."""
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


#: The nonlinearities in place, outside autograd (`stacked_forward`).
INPLACE_ACTIVATIONS = {"relu": torch.relu_, "tanh": _tanh_}

#: The nonlinearities' backward passes, from their outputs y: (dL/dy, y) -> dL/dx.
ACTIVATION_BACKWARDS = {
    "relu": lambda grad, y: torch.ops.aten.threshold_backward(grad, y, 0),  # dL/dy (y > 0)
    "tanh": torch.ops.aten.tanh_backward,  # dL/dy (1 - y^2)
}


def accumulate_grad(parameter: torch.Tensor, grad: torch.Tensor) -> None:
    """parameter.grad += grad (or = grad when it has none), as backward() accumulates."""
    if parameter.grad is None:
        parameter.grad = grad
    else:
        parameter.grad += grad


def write_grad(parameter: torch.Tensor, op, *args, **kwargs) -> None:
    """parameter.grad = op(*args, **kwargs), computed straight into the existing gradient's
    memory when there is one (op's out=): the backpropagation by hand writes each gradient
    once, into the zeroed views of `FlatParameters`, without an extra addition."""
    if parameter.grad is None:
        parameter.grad = op(*args, **kwargs)
    else:
        op(*args, **kwargs, out=parameter.grad)


@torch.no_grad()
def stacked_forward(trunks: StackedTrunks, obs: torch.Tensor):
    """`StackedTrunks.forward` outside autograd, nonlinearities in place: (actor features,
    critic features, the activations [2, B, .] of every layer, input first) for
    `stacked_backward`."""
    x = vector_inputs(obs, trunks.one_hot)
    x = x.expand(2, *x.shape)  # [2, B, D]: the same input for both trunks
    activations = [x]
    activation = INPLACE_ACTIVATIONS[trunks.activation]
    for weight, bias in zip(trunks.weights, trunks.biases, strict=True):
        x = activation(torch.baddbmm(bias, x, weight))
        activations.append(x)
    return x[0], x[1], activations


@torch.no_grad()
def stacked_backward(trunks: StackedTrunks, activations: list[torch.Tensor], grad) -> None:
    """Backpropagation by hand: writes into the weights' and biases' .grad (`write_grad`) the
    gradients of a loss whose gradient wrt the features is `grad` [2, B, H] (actor's, critic's),
    given the activations of `stacked_forward`. For each layer from the last, with
    y = f(x W + b): dL/d(x W + b) = f'(.) dL/dy, dL/dW = x^T that, dL/db its sum over the
    batch, dL/dx = that W^T (not needed for the observations)."""
    activation_backward = ACTIVATION_BACKWARDS[trunks.activation]
    for index in reversed(range(len(trunks.weights))):
        weight, bias = trunks.weights[index], trunks.biases[index]
        grad = activation_backward(grad, activations[index + 1])
        write_grad(weight, torch.bmm, activations[index].transpose(1, 2), grad)
        write_grad(bias, torch.sum, grad, 1, keepdim=True)
        if index:
            grad = torch.bmm(grad, weight.transpose(1, 2))


@torch.no_grad()
def critic_backward(trunks: StackedTrunks, value: nn.Linear, features: list, values_grad) -> None:
    """`stacked_backward` for the critic's half alone: the gradients of a loss whose gradient wrt
    V = value(critic features) is values_grad [B], into the value head's and the critic half's
    .grad (which must be zero before), given the critic's activations `features` (input first).
    """
    write_grad(value.weight, torch.mm, values_grad.unsqueeze(0), features[-1])
    write_grad(value.bias, torch.sum, values_grad, 0, keepdim=True)
    derivative = ACTIVATION_BACKWARDS[trunks.activation]
    grad = values_grad.unsqueeze(1) * value.weight  # [B, H]
    for index in reversed(range(len(trunks.weights))):
        weight, bias = trunks.weights[index], trunks.biases[index]
        grad = derivative(grad, features[index + 1])
        torch.mm(features[index].t(), grad, out=weight.grad[1])
        torch.sum(grad, 0, keepdim=True, out=bias.grad[1])
        if index:
            grad = grad @ weight[1].t()


def policy_layer(policy: ActorCritic) -> nn.Linear:
    """The policy head's linear layer (logits or mean)."""
    head = policy.policy_head
    return head.logits if isinstance(head, CategoricalHead) else head.mean


def outputs_for_backward(policy: ActorCritic, obs: torch.Tensor):
    """`ActorCritic.forward`'s (distribution parameters, values), detached, and a tape for
    `backward_from_outputs`. Stacked MLP trunks run without autograd and keep their activations
    for the backpropagation by hand; other trunks record autograd's graph."""
    if not isinstance(policy.trunks, StackedTrunks):
        params, values = policy(obs)
        return params.detach(), values.detach(), (params, values)
    with torch.no_grad():
        actor, critic, activations = stacked_forward(policy.trunks, obs)
        value = policy.value_head
        values = nn.functional.linear(critic, value.weight, value.bias)
        return policy.policy_head(actor), values.squeeze(-1), (actor, critic, activations)


def backward_from_outputs(policy: ActorCritic, tape, params_grad, values_grad) -> None:
    """The gradients of a loss whose gradients wrt the outputs of `outputs_for_backward` are
    params_grad [B, A or D] and values_grad [B], into the parameters' .grad, which must be zero
    or None before (`FlatParameters.zero_grad`): written by hand through the linear heads and
    `stacked_backward`, or added by autograd."""
    if not isinstance(policy.trunks, StackedTrunks):
        torch.autograd.backward(tape, (params_grad, values_grad))
        return
    actor, critic, activations = tape
    with torch.no_grad():
        layer, value = policy_layer(policy), policy.value_head
        write_grad(layer.weight, torch.mm, params_grad.t(), actor)
        write_grad(layer.bias, torch.sum, params_grad, 0)
        write_grad(value.weight, torch.mm, values_grad.unsqueeze(0), critic)
        write_grad(value.bias, torch.sum, values_grad, 0, keepdim=True)
        features_grad = actor.new_empty((2, *actor.shape))  # the actor's, the critic's
        torch.mm(params_grad, layer.weight, out=features_grad[0])
        torch.mul(values_grad.unsqueeze(1), value.weight, out=features_grad[1])
    stacked_backward(policy.trunks, activations, features_grad)


@torch.no_grad()
def log_prob_entropy_backward(head, params, actions, log_probs_grad, entropy_grad: float):
    """The backward pass of the head's `log_prob_entropy`, without autograd: dL/dparams [B, A
    or D] for dL/dlog pi(a|s) = log_probs_grad [B] and dL/dH = entropy_grad (the same for every
    sample); a Gaussian head's dL/dlog sigma is added to `log_std.grad`.

    Categorical, with p = softmax(logits): d log p_a / dlogits = onehot(a) - p and
    dH / dlogits_j = -p_j (log p_j + H).
    Gaussian, with z = (a - mu) / sigma: d log pi / dmu = z / sigma,
    d log pi / dlog sigma = z^2 - 1, dH / dlog sigma = 1.
    """
    weight = log_probs_grad.unsqueeze(-1)
    if isinstance(head, CategoricalHead):
        log_p = params.log_softmax(dim=-1)
        p = log_p.exp()
        grad = p * -weight
        grad.scatter_add_(-1, actions.long().unsqueeze(-1), weight)
        if entropy_grad:
            entropy = -(p * log_p).sum(dim=-1, keepdim=True)
            grad -= entropy_grad * p * (log_p + entropy)
        return grad
    inverse_std = torch.exp(-head.log_std.detach())
    z = (actions - params) * inverse_std
    log_std_grad = ((z * z - 1.0) * weight).sum(0)
    if entropy_grad:
        log_std_grad += entropy_grad * len(params)
    accumulate_grad(head.log_std, log_std_grad)
    return (z * inverse_std).mul_(weight)


def surrogate_gradient(objective: str, log_ratio, advantages, clip_range: float, beta: float):
    """-L for PPO's objective (`algos.ppo.surrogate`), the fraction of samples whose r_t lies
    outside [1 - eps, 1 + eps], and d(-L)/d log r_t [B] (`clipped_surrogate_gradient`,
    `kl_penalty_gradient`), all without autograd."""
    if objective == "clip":
        return clipped_surrogate_gradient(log_ratio, advantages, clip_range)
    loss, log_ratio_grad = kl_penalty_gradient(
        log_ratio, advantages, 0.0 if objective == "none" else beta
    )
    clip_fraction = ((log_ratio.exp() - 1.0).abs() > clip_range).float().mean()
    return loss, clip_fraction, log_ratio_grad


def clipped_surrogate_gradient(log_ratio, advantages, clip_range: float):
    """-L^CLIP (`losses.clipped_surrogate_loss`), the clip fraction and d(-L)/d log r, without
    autograd. With r = exp(log r), n samples and the mean's 1/n:

    d(-L)/d log r_t = -r_t A_t / n   where r_t A_t <= clip(r_t) A_t (the unclipped term is the
                                     min, or ties it: then clip(r_t) = r_t lies in the range
                                     and both terms carry r's gradient, half each),
                      0              elsewhere (clipped: r_t is outside the range, flat).
    """
    ratio = log_ratio.exp()
    clipped_ratio = ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    unclipped, clipped = ratio * advantages, clipped_ratio * advantages
    unclipped_is_min = unclipped <= clipped
    loss = -torch.where(unclipped_is_min, unclipped, clipped).mean()
    clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    log_ratio_grad = torch.where(unclipped_is_min, unclipped, 0.0).mul_(-1.0 / unclipped.numel())
    return loss, clip_fraction, log_ratio_grad


def kl_penalty_gradient(log_ratio, advantages, beta: float):
    """-L^KLPEN = -E[r A - beta KL[pi_old, pi]] and its gradient wrt log r; beta = 0 gives -L^CPI,
    the plain surrogate. With the KL estimate (r - 1) - log r and n samples:
    d(-L)/d log r_t = (-r_t A_t + beta (r_t - 1)) / n."""
    ratio = log_ratio.exp()
    weighted = ratio * advantages
    loss = -weighted.mean()
    if beta:
        loss = loss + beta * approximate_kl(log_ratio)
        weighted = weighted - beta * (ratio - 1.0)
    return loss, weighted.mul_(-1.0 / len(weighted))


def value_loss_gradient(values, returns, old_values=None, clip_range: float | None = None):
    """d `losses.value_loss` / dV, without autograd: (V - R) / n; with clipping, (V - R) / n
    where the unclipped square is the larger, (V_clip - R) / n where the clipped one is and
    V - V_old lies within [-eps, eps] (else V_clip does not move with V), the mean of the two at
    a tie (as autograd's maximum splits it)."""
    scale = 1.0 / values.numel()
    error = values - returns
    if clip_range is None or old_values is None:
        return error.mul_(scale)
    change = values - old_values
    clipped_error = old_values + change.clamp(-clip_range, clip_range) - returns
    squared, clipped_squared = error * error, clipped_error * clipped_error
    clipped_error = torch.where(change.abs() <= clip_range, clipped_error, 0.0)
    larger = torch.where(squared > clipped_squared, error, clipped_error)
    tie = (error + clipped_error) / 2
    return torch.where(squared == clipped_squared, tie, larger).mul_(scale)


# ---- Fisher-vector products ---------------------------------------------------------------
def supports_fisher_by_hand(policy: ActorCritic) -> bool:
    """Whether `fisher_vector_product` handles the policy: stacked MLP trunks (whose actor half
    it differentiates by hand) and a categorical or diagonal Gaussian head."""
    return isinstance(policy.trunks, StackedTrunks)


@torch.no_grad()
def fisher_vector_product(policy: ActorCritic, obs: torch.Tensor, parameters: list, damping: float):
    """v -> (F + damping I) v, F the Hessian at theta_old of KL_bar(theta) = E_s[KL(pi_old(.|s) ||
    pi_theta(.|s))] over the batch `obs` (TRPO's step 6), without autograd.

    At theta = theta_old the KL's Hessian is the Gauss-Newton matrix F = J^T M J: J the Jacobian
    of the distribution's parameters z(s) (logits, or means) wrt theta, M the Hessian of the KL
    wrt z at z_old, averaged over the B states: for a categorical, (diag(p) - p p^T) / B; for a
    diagonal Gaussian, diag(1/sigma^2) / B for the means and 2 I for log sigma (no cross term).
    So F v = J^T (M (J v)): J v is one forward-mode pass through the actor's MLP and its head
    (for y = f(x W + b): dy = f'(.) (dx W + x dW + db)), J^T u one backward pass
    (`stacked_backward`'s rule). The critic's parameters get F v = 0 (plus damping v): KL_bar
    does not depend on them. The same product as autograd's double backpropagation
    (`algos.trpo.PolicyDistance.fisher_vector_product`) up to float rounding (tests/algos/
    test_trpo.py), several times cheaper on small MLPs.

    Args:
        policy: an ActorCritic with StackedTrunks (`supports_fisher_by_hand`), at theta_old.
        obs: [B, ...] the batch's observations.
        parameters: theta, in the order of v (`algos.trpo.policy_parameters`).
        damping: added to F's diagonal.
    """
    trunks, head, layer = policy.trunks, policy.policy_head, policy_layer(policy)
    activation = INPLACE_ACTIVATIONS[trunks.activation]
    derivative = ACTIVATION_BACKWARDS[trunks.activation]  # (dy, y) -> f'(x) dy, as in backward
    weights = [w[0] for w in trunks.weights]  # the actor's half: [in, out]
    biases = [b[0] for b in trunks.biases]  # [1, out]
    features = [vector_inputs(obs, trunks.one_hot)]
    for weight, bias in zip(weights, biases, strict=True):
        features.append(activation(torch.addmm(bias, features[-1], weight)))
    z = nn.functional.linear(features[-1], layer.weight, layer.bias)
    batch = z.shape[0]
    categorical = isinstance(head, CategoricalHead)
    curvature = z.softmax(-1) if categorical else torch.exp(-2 * head.log_std).expand_as(z)
    slices, offset = {}, 0
    for parameter in parameters:
        slices[id(parameter)] = (offset, parameter)
        offset += parameter.numel()

    @torch.no_grad()
    def product(v: torch.Tensor) -> torch.Tensor:
        def part(parameter):
            start, _ = slices[id(parameter)]
            return v[start : start + parameter.numel()].view_as(parameter)

        # J v: forward mode through the actor's layers and the head
        tangent = None
        for index, weight in enumerate(weights):
            d_pre = torch.addmm(part(trunks.biases[index])[0], features[index],
                                part(trunks.weights[index])[0])  # fmt: skip
            if tangent is not None:
                d_pre.addmm_(tangent, weight)
            tangent = derivative(d_pre, features[index + 1])
        dz = nn.functional.linear(features[-1], part(layer.weight), part(layer.bias))
        dz.addmm_(tangent, layer.weight.t())
        # M (J v)
        if categorical:
            u = curvature * dz
            u.sub_(curvature * u.sum(-1, keepdim=True)).div_(batch)
        else:
            u = dz.mul_(curvature).div_(batch)
        # J^T u: backward through the head and the actor's layers
        out = {id(layer.weight): u.t() @ features[-1], id(layer.bias): u.sum(0)}
        grad = u @ layer.weight
        for index in reversed(range(len(weights))):
            grad = derivative(grad, features[index + 1])
            weight_out = torch.zeros_like(trunks.weights[index])
            bias_out = torch.zeros_like(trunks.biases[index])
            torch.mm(features[index].t(), grad, out=weight_out[0])
            bias_out[0] = grad.sum(0, keepdim=True)
            out[id(trunks.weights[index])], out[id(trunks.biases[index])] = weight_out, bias_out
            if index:
                grad = grad @ weights[index].t()
        if not categorical:
            out[id(head.log_std)] = 2.0 * part(head.log_std)
        fv = torch.cat([out[id(p)].reshape(-1) if id(p) in out else torch.zeros(p.numel())
                        for p in parameters])  # fmt: skip
        return fv.add_(v, alpha=damping)

    return product


# ---- optimiser steps ----------------------------------------------------------------------
def step_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step(); for a plain fused Adam (one parameter group, no amsgrad, maximize,
    weight decay or capturable) the same fused kernel is called directly, bit for bit the same
    update without optimizer.step()'s Python bookkeeping (~100 us a call, 5 times the kernel on
    a small MLP). `torch._fused_adam_` is private: there is no public way to call the kernel
    alone, so anything else (other optimisers, the first step, which creates Adam's state, a
    torch without it) goes through optimizer.step()."""
    params, state = optimizer.param_groups[0]["params"], optimizer.state
    ready = all(p.grad is not None and p in state for p in params)  # (after the first step)
    if not (ready and _plain_fused_adam(optimizer)):
        optimizer.step()
        return
    moments = [state[p] for p in params]
    steps = [moment["step"] for moment in moments]
    torch._foreach_add_(steps, 1)  # then the kernel, as torch.optim.adam._fused_adam does
    _fused_adam(
        optimizer, params, [p.grad for p in params], [moment["exp_avg"] for moment in moments],
        [moment["exp_avg_sq"] for moment in moments], steps,
    )  # fmt: skip


def _plain_fused_adam(optimizer: torch.optim.Optimizer) -> bool:
    """Whether optimizer.step() is the bare fused Adam kernel (see `step_optimizer`)."""
    group = optimizer.param_groups[0]
    return (
        hasattr(torch, "_fused_adam_") and type(optimizer) is torch.optim.Adam
        and len(optimizer.param_groups) == 1 and bool(group.get("fused"))
        and not any(group.get(flag) for flag in (
            "amsgrad", "maximize", "weight_decay", "capturable", "differentiable",
            "decoupled_weight_decay",
        ))
    )  # fmt: skip


def _fused_adam(optimizer, params, grads, exp_avgs, exp_avg_sqs, steps) -> None:
    """The fused Adam kernel with the optimizer's settings (steps already incremented)."""
    group = optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    torch._fused_adam_(
        params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
        beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"], maximize=False,
        grad_scale=None, found_inf=None,
    )  # fmt: skip


def clip_gradients(grads: list[torch.Tensor], max_norm: float) -> None:
    """Rescale `grads` in place so that their global L2 norm is at most max_norm (the same
    result as torch.nn.utils.clip_grad_norm_, with a fraction of its per-call overhead on small
    nets)."""
    norms = torch._foreach_norm(grads)
    total = torch.linalg.vector_norm(torch.stack(norms)) if len(norms) > 1 else norms[0]
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def clip_grad_norm(parameters: list[torch.Tensor], max_norm: float) -> None:
    """Rescale the parameters' gradients so that their global L2 norm is at most max_norm."""
    clip_gradients([p.grad for p in parameters if p.grad is not None], max_norm)


class FlatParameters:
    """A network's parameters and their gradients, each kept in one contiguous buffer that the
    tensors are views of (set up once, before anything else holds the parameters' memory). On a
    small network the per-tensor calls dominate: zeroing the gradients, their global norm and
    clip, and a fused Adam step (whose moments and step counts are moved into buffers of their
    own after the first step) are then one operation each. Every other user of the parameters
    (modules, state dicts, optimizer.step(), checkpoints) sees ordinary tensors.

    Args:
        parameters: the tensors to keep together, all of one dtype and device.
    """

    def __init__(self, parameters: list[torch.Tensor]):
        self.parameters = list(parameters)
        self.data = torch.cat([p.detach().reshape(-1) for p in self.parameters])
        self.grad = torch.zeros_like(self.data)
        with torch.no_grad():
            for parameter, data, grad in zip(
                self.parameters, self._views(self.data), self._views(self.grad), strict=True
            ):
                parameter.data = data
                parameter.grad = grad
        self.grads = [p.grad for p in self.parameters]
        self.pointers = [p.data_ptr() for p in self.parameters]
        self.moments: tuple | None = None  # Adam's (exp_avg, exp_avg_sq, steps) buffers
        self.moment_views: tuple = ()  # the optimizer state's tensors that view them

    def _views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        views, offset = [], 0
        for parameter in self.parameters:
            views.append(buffer[offset : offset + parameter.numel()].view_as(parameter))
            offset += parameter.numel()
        return views

    def zero_grad(self) -> None:
        """Zero the gradients in place (backward, autograd's or by hand, adds into them); a
        gradient replaced or set to None elsewhere is pointed back at its view."""
        for parameter, grad in zip(self.parameters, self.grads, strict=True):
            if parameter.grad is not grad:
                parameter.grad = grad
        self.grad.zero_()

    def clip_grad_norm(self, max_norm: float) -> None:
        """`clip_gradients` on the whole buffer."""
        clip_gradients([self.grad], max_norm)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """`step_optimizer` for an optimizer over these parameters: a plain fused Adam is one
        kernel call on the buffers, the same update element by element."""
        state = optimizer.state
        flat = (
            _plain_fused_adam(optimizer)
            and _same_tensors(optimizer.param_groups[0]["params"], self.parameters)
            and all(p in state for p in self.parameters)
            and [p.data_ptr() for p in self.parameters] == self.pointers
            and _same_tensors([p.grad for p in self.parameters], self.grads)
        )
        if not flat:
            step_optimizer(optimizer)
            return
        states = [state[p] for p in self.parameters]
        if self.moments is None or any(
            s[name] is not view
            for name, views in zip(MOMENTS, self.moment_views, strict=True)
            for s, view in zip(states, views, strict=True)
        ):
            self._gather_moments(states)
        exp_avg, exp_avg_sq, steps = self.moments
        steps.add_(1)  # every parameter's count: they are views of this buffer
        _fused_adam(optimizer, [self.data], [self.grad], [exp_avg], [exp_avg_sq], [steps[0]])

    def _gather_moments(self, states: list[dict]) -> None:
        """Copy Adam's moments and step counts (new after the first step or a load_state_dict)
        into buffers, and make the optimizer's state views of them."""
        exp_avg = torch.cat([s["exp_avg"].reshape(-1) for s in states])
        exp_avg_sq = torch.cat([s["exp_avg_sq"].reshape(-1) for s in states])
        steps = torch.stack([s["step"] for s in states])
        if not bool((steps == steps[0]).all()):
            raise RuntimeError("Adam's step counts differ between parameters")
        self.moments = exp_avg, exp_avg_sq, steps
        self.moment_views = self._views(exp_avg), self._views(exp_avg_sq), list(steps)
        for name, views in zip(MOMENTS, self.moment_views, strict=True):
            for s, view in zip(states, views, strict=True):
                s[name] = view


#: Adam's per-parameter state that `FlatParameters` keeps in buffers.
MOMENTS = ("exp_avg", "exp_avg_sq", "step")


def _same_tensors(tensors: list, others: list) -> bool:
    """The same tensor objects in the same order (tensors' == compares values)."""
    return len(tensors) == len(others) and all(a is b for a, b in zip(tensors, others, strict=True))


def channels_last_inputs(network: nn.Module) -> None:
    """Feed the Nature-CNN trunks of `network` their image batches in channels-last memory
    order: the same [B, C, H, W] tensor, laid out [B, H, W, C], which the CPU's convolutions
    (oneDNN) run faster (measured on 2 busy cores: the Nature CNN's forward + backward on a
    minibatch of 256, 1.4x). The trunk lays the frames out before it converts them to floats
    (`NatureCNN.memory_format`). Only the layout changes: the same numbers up to float
    rounding (the plain path is `channels_last = false`; tests/algos/test_ppo_atari.py compares
    the two); parameters and checkpoints are untouched."""
    for module in network.modules():
        if isinstance(module, NatureCNN):
            module.memory_format = torch.channels_last


def bf16_convolutions(network: nn.Module) -> None:
    """`bf16_autocast`: run the Nature-CNN trunks of `network` (convolutions and their fully
    connected layer) under bfloat16 autocast (`NatureCNN.compute_dtype`): bfloat16 products,
    float32 accumulation, the 512 features back in float32, so the heads (Q-values, logits,
    values) and everything after them stay float32, as do parameters, gradients, the optimizer
    and checkpoints. Pays where the hardware has bfloat16 arithmetic (CPUs with AVX512-BF16 or
    AMX, GPUs); on a CPU, batches of fewer than `nets.BF16_MIN_BATCH` frames (acting with a few
    envs) stay float32, where bf16 is slower. The numbers change by bfloat16's rounding (8
    significant bits): the plain path is `bf16_autocast = false`; tests compare the two. (An MLP
    has no such trunk: there the switch would do nothing, so the config refuses it,
    `config.check_deep_fields`.)"""
    for module in network.modules():
        if isinstance(module, NatureCNN):
            module.compute_dtype = torch.bfloat16
