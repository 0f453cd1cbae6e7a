"""Torch state as named numpy arrays, for checkpoints (safetensors + JSON, never pickle), and the
device a config names. Every pillar that trains a torch network (algos/, zero/, lm/) saves and
restores its networks and optimiser through these functions.
"""

from __future__ import annotations

import numpy as np
import torch

from bellman.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when a GPU is visible, else the CPU; `cpu` and `cuda` are themselves."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = cuda but no CUDA GPU is visible; use device = auto or cpu")
    return torch.device(name)


def state_dict_from_arrays(arrays, prefix: str, device) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint whose names start with `prefix`, prefix removed."""
    return {
        key[len(prefix) :]: torch.from_numpy(value.copy()).to(device)
        for key, value in arrays.items()
        if key.startswith(prefix)
    }


def optimizer_arrays(optimizer: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """Adam's moments and step counts, flattened to named arrays `optim/<param>/<name>`."""
    arrays = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            arrays[f"optim/{index}/{name}"] = tensor.detach().cpu().numpy()
    return arrays


def load_optimizer(optimizer: torch.optim.Optimizer, arrays: dict[str, np.ndarray]) -> None:
    """Put the state saved by `optimizer_arrays` back into `optimizer`."""
    state_dict = optimizer.state_dict()
    for key, value in arrays.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/")
            state_dict["state"].setdefault(int(index), {})[name] = torch.from_numpy(value.copy())
    optimizer.load_state_dict(state_dict)


def step_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step(); for a plain fused Adam (one parameter group, no amsgrad, maximize,
    weight decay or capturable) the same fused kernel is called directly, bit for bit the same
    update without optimizer.step()'s Python bookkeeping (~100 us a call, 5 times the kernel on
    a small MLP). `torch._fused_adam_` is private: there is no public way to call the kernel
    alone, so anything else (other optimisers, the first step, which creates Adam's state, a
    torch without it) goes through optimizer.step()."""
    kernel = getattr(torch, "_fused_adam_", None)
    group = optimizer.param_groups[0]
    params, state = group["params"], optimizer.state
    plain = (
        kernel is not None and type(optimizer) is torch.optim.Adam
        and len(optimizer.param_groups) == 1 and group.get("fused")
        and not any(group.get(flag) for flag in (
            "amsgrad", "maximize", "weight_decay", "capturable", "differentiable",
            "decoupled_weight_decay",
        ))
        and all(p.grad is not None and p in state for p in params)
    )  # fmt: skip
    if not plain:
        optimizer.step()
        return
    moments = [state[p] for p in params]
    steps = [moment["step"] for moment in moments]
    torch._foreach_add_(steps, 1)  # then the kernel, as torch.optim.adam._fused_adam does
    beta1, beta2 = group["betas"]
    kernel(
        params, [p.grad for p in params], [moment["exp_avg"] for moment in moments],
        [moment["exp_avg_sq"] for moment in moments], [], steps, amsgrad=False, lr=group["lr"],
        beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"], maximize=False,
        grad_scale=None, found_inf=None,
    )  # fmt: skip
