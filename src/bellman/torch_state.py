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
