"""The speed path: the computations of `bellman.nets` (and of the losses on top of them) redone
for small networks on a CPU, where torch's per-call overhead, not the arithmetic, is the cost.
Every function here has a plain counterpart that reads like the paper (autograd, torch.optim,
torch.nn.utils); tests/test_nets.py, tests/test_advantages_losses.py and tests/algos/test_ppo.py
prove each equal to it.

Optimiser steps:
    `FlatParameters`   a network's parameters and gradients in one buffer each, so zeroing, the
                       gradient clip and Adam are one call each;
    `step_optimizer`   optimizer.step(), calling the fused Adam kernel directly;
    `clip_grad_norm`   torch.nn.utils.clip_grad_norm_ with a fraction of its per-call overhead.
"""

from __future__ import annotations

import torch


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
