"""Torch state as named numpy arrays, for checkpoints (safetensors + JSON, never pickle). Every
pillar that trains a torch network (algos/, zero/, lm/) saves and restores its networks and
optimiser through these functions, which check every array against the live model first.
"""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from bellman.errors import CheckpointError


def flush_denormals(on: bool = True) -> None:
    """Make this thread's CPU float math treat subnormal numbers (|x| < 1.18e-38 in float32)
    as zero (x86's FTZ and DAZ; threads started afterwards inherit it). Training turns it on:
    weights and Adam moments of units that stop receiving gradient decay into subnormals, and
    every multiply that touches one then takes ~100 times as long. MuZero on tic-tac-toe went
    from 0.1 s to 0.7 s a gradient step by 14,000 moves with 81k subnormal weights (1.2 s
    against 0.17 s a step measured on that checkpoint with it off and on)."""
    torch.set_flush_denormal(on)


def weights_bytes(network: torch.nn.Module) -> bytes:
    """The network's state dict as safetensors bytes (what self-play workers and Ape-X's actors
    receive: never a pickled module)."""
    return save_tensors({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()})


def load_weights(network: torch.nn.Module, blob: bytes) -> None:
    """Load safetensors bytes made by `weights_bytes` into `network`."""
    network.load_state_dict(load_tensors(blob))


def state_dict_from_arrays(arrays, prefix: str, device) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint whose names start with `prefix`, prefix removed."""
    return {
        key[len(prefix) :]: torch.from_numpy(value.copy()).to(device)
        for key, value in arrays.items()
        if key.startswith(prefix)
    }


def check_arrays(
    arrays: dict[str, np.ndarray], expected: dict[str, tuple[tuple[int, ...], np.dtype]], where: str
) -> None:
    """Refuse arrays that do not match, key for key, the shapes and dtypes something will use.

    Args:
        arrays: the arrays a file gave, restricted to one prefix by the caller.
        expected: name -> (shape, dtype) of what the live model or optimizer holds.
        where: what is being loaded, for the message (e.g. "checkpoint 'step-512' policy/").

    Raises:
        CheckpointError: missing or unexpected keys, another shape or another dtype (a float16 or
            int8 re-save of a float32 tensor is refused, not silently cast).
    """
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    if missing or unexpected:
        parts = [f"missing {_names(missing)}" if missing else "",
                 f"unexpected {_names(unexpected)}" if unexpected else ""]  # fmt: skip
        raise CheckpointError(f"{where} does not fit: {'; '.join(p for p in parts if p)}")
    for key, (shape, dtype) in expected.items():
        array = arrays[key]
        if tuple(array.shape) != tuple(shape):
            raise CheckpointError(
                f"{where}: '{key}' has shape {tuple(array.shape)}, expected {tuple(shape)}"
            )
        if np.dtype(array.dtype) != np.dtype(dtype):
            raise CheckpointError(
                f"{where}: '{key}' has dtype {np.dtype(array.dtype)}, expected {np.dtype(dtype)}"
            )


def _names(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(f"'{key}'" for key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _numpy_dtype(tensor: torch.Tensor) -> np.dtype:
    return torch.empty((), dtype=tensor.dtype).numpy().dtype


def load_module(module: torch.nn.Module, arrays, prefix: str, device, where: str) -> None:
    """Load `module`'s state (parameters and buffers, e.g. BatchNorm statistics) from the arrays
    named `prefix<name>`, after `check_arrays` against the live state: nothing is copied into the
    module unless every key, shape and dtype fits."""
    state = module.state_dict()
    expected = {key: (tuple(value.shape), _numpy_dtype(value)) for key, value in state.items()}
    found = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
    check_arrays(found, expected, f"{where} {prefix}")
    module.load_state_dict({key: torch.from_numpy(np.array(value)).to(device)
                            for key, value in found.items()})  # fmt: skip


def optimizer_arrays(optimizer: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """Adam's moments and step counts, flattened to named arrays `optim/<param>/<name>`."""
    arrays = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            arrays[f"optim/{index}/{name}"] = tensor.detach().cpu().numpy()
    return arrays


def _state_names(optimizer: torch.optim.Optimizer) -> tuple[tuple[str, bool], ...]:
    """(name, shaped like the parameter) of the per-parameter state of the optimisers bellman
    uses: Adam/AdamW (moments, step), RMSprop (square average, step, and momentum and grad
    average when those settings are on) and SGD (momentum buffers when momentum is on)."""
    groups = optimizer.param_groups
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        names = (("exp_avg", True), ("exp_avg_sq", True), ("step", False))
        return names + (("max_exp_avg_sq", True),) * any(g.get("amsgrad") for g in groups)
    if isinstance(optimizer, torch.optim.RMSprop):
        names = (("step", False), ("square_avg", True))
        names += (("momentum_buffer", True),) * any(g.get("momentum", 0) > 0 for g in groups)
        return names + (("grad_avg", True),) * any(g.get("centered") for g in groups)
    if isinstance(optimizer, torch.optim.SGD):  # AlphaZero's (momentum buffers only)
        return (("momentum_buffer", True),) * any(g.get("momentum", 0) > 0 for g in groups)
    raise TypeError(f"no checkpoint layout known for {type(optimizer).__name__}")


def expected_optimizer_arrays(optimizer: torch.optim.Optimizer) -> dict:
    """name -> (shape, dtype) of the arrays `optimizer_arrays` writes after the optimizer's
    first step: per-parameter buffers shaped and typed like their parameter, a float32 scalar
    step count."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {
        f"optim/{index}/{name}": (
            (tuple(p.shape), _numpy_dtype(p)) if like_param else ((), np.dtype(np.float32))
        )  # fmt: skip
        for index, p in enumerate(params)
        for name, like_param in _state_names(optimizer)
    }


def load_optimizer(optimizer: torch.optim.Optimizer, arrays, where: str = "checkpoint") -> None:
    """Put the state saved by `optimizer_arrays` back into `optimizer`, after checking every
    `optim/*` array against the live parameters (a checkpoint saved before the first step has
    none). Moments of the wrong shape or dtype would otherwise reach the fused Adam kernel,
    which trusts them with raw memory."""
    found = {key: value for key, value in arrays.items() if key.startswith("optim/")}
    if found:
        check_arrays(found, expected_optimizer_arrays(optimizer), where)
    state_dict = optimizer.state_dict()
    for key, value in found.items():
        _, index, name = key.split("/")
        state_dict["state"].setdefault(int(index), {})[name] = torch.from_numpy(np.array(value))
    optimizer.load_state_dict(state_dict)
