"""Networks: MLP and Nature-CNN trunks, the Q-network head (plain or dueling), `layer_init`.

    Nature CNN (Mnih et al. 2015, "Human-level control through deep reinforcement learning"):
        input 4 x 84 x 84 (uint8, scaled to [0, 1])
        conv 32 filters 8x8 stride 4, ReLU
        conv 64 filters 4x4 stride 2, ReLU
        conv 64 filters 3x3 stride 1, ReLU
        fully connected 512, ReLU
        fully connected |A| (one Q-value per action)

    Dueling head (Wang et al. 2016): Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')

Which trunk an observation space gets is decided once, by `trunk_for`, which also says clearly
when a space fits no network (Dict spaces, tiny images, a CNN asked for vectors).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bellman.errors import ConfigError

#: The smallest image side the Nature CNN's three convolutions accept.
MIN_IMAGE_SIDE = 36


def layer_init(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights with `gain` and a constant bias (the policy-gradient convention)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int | None = None) -> nn.Sequential:
    """Linear-ReLU layers of sizes `hidden`, then a linear output layer when out_dim is given."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class NatureCNN(nn.Module):
    """The Nature DQN convolutional trunk: [B, C, H, W] uint8 -> [B, 512] features."""

    def __init__(self, in_channels: int, height: int, width: int, features: int = 512):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, in_channels, height, width)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.out_dim = features

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(frames.float() / 255.0))


class VectorTrunk(nn.Module):
    """Flat observations (or one-hot encoded Discrete ones) through an MLP: [B, ...] -> [B, H].

    The forward pass calls `F.linear` on the layers' parameters instead of calling the layer
    modules: on a CPU, module-call overhead is most of the cost of a small MLP.
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], one_hot: int | None = None):
        super().__init__()
        self.one_hot = one_hot
        sizes = (in_dim, *hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False))
        self.out_dim = sizes[-1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.one_hot is not None:
            obs = nn.functional.one_hot(obs.long().view(-1), self.one_hot)
        x = obs.float().flatten(1)
        for layer in self.layers:
            x = torch.relu(nn.functional.linear(x, layer.weight, layer.bias))
        return x


def trunk_for(space: gym.Space, network: str, hidden: tuple[int, ...], env_id: str) -> nn.Module:
    """The trunk that reads observations of `space`, or a ConfigError saying why none can.

    Args:
        space: the env's observation space.
        network: "auto" (CNN for [C, H, W] images, MLP otherwise), "mlp" or "cnn".
        hidden: MLP layer sizes.
        env_id: for messages.
    """
    if isinstance(space, gym.spaces.Discrete):
        if network == "cnn":
            raise ConfigError(f"network = cnn needs image observations; '{env_id}' has {space}")
        return VectorTrunk(int(space.n), hidden, one_hot=int(space.n))
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(
            f"'{env_id}' has {type(space).__name__} observations; bellman's networks take Box "
            "(vectors or [C, H, W] images) or Discrete observations"
        )
    shape = tuple(space.shape)
    is_image = len(shape) == 3
    if network == "cnn" or (network == "auto" and is_image):
        if not is_image or min(shape[1:]) < MIN_IMAGE_SIDE:
            raise ConfigError(
                f"the Nature CNN takes [C, H, W] images with H, W >= {MIN_IMAGE_SIDE}; "
                f"'{env_id}' gives observations of shape {shape}; use network = mlp"
            )
        return NatureCNN(*shape)
    return VectorTrunk(int(np.prod(shape)), hidden)


class QNetwork(nn.Module):
    """Q(s, .; theta): a trunk and a head with one output per action, plain or dueling.

    `greedy_numpy` picks argmax_a Q(s, a) for a few vector observations with numpy on views of
    the CPU parameters (which the optimizer updates in place): for acting in a small MLP, torch's
    per-call overhead is 5-10 times the arithmetic.
    """

    def __init__(self, trunk: nn.Module, n_actions: int, dueling: bool = False):
        super().__init__()
        self.trunk = trunk
        self.dueling = dueling
        if dueling:
            self.value = nn.Linear(trunk.out_dim, 1)
            self.advantage = nn.Linear(trunk.out_dim, n_actions)
        else:
            self.head = nn.Linear(trunk.out_dim, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """[B, ...] observations -> [B, A] action values."""
        features = self.trunk(obs)
        linear = nn.functional.linear  # (not the modules' __call__: see VectorTrunk)
        if not self.dueling:
            return linear(features, self.head.weight, self.head.bias)
        advantage = linear(features, self.advantage.weight, self.advantage.bias)
        value = linear(features, self.value.weight, self.value.bias)
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    def supports_numpy(self) -> bool:
        """Whether `greedy_numpy` applies: a vector MLP trunk on the CPU."""
        trunk = self.trunk
        on_cpu = all(p.device.type == "cpu" for p in self.parameters())
        return isinstance(trunk, VectorTrunk) and trunk.one_hot is None and on_cpu

    def greedy_numpy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(s, a) for [N, D] float observations, computed with numpy: -> [N]."""
        if not hasattr(self, "_numpy_layers"):
            views = [(layer.weight.detach().numpy(), layer.bias.detach().numpy())
                     for layer in self.trunk.layers]  # fmt: skip
            heads = [self.advantage] if self.dueling else [self.head]
            head = [(h.weight.detach().numpy(), h.bias.detach().numpy()) for h in heads][0]
            self._numpy_layers = (views, head)
        views, (head_weight, head_bias) = self._numpy_layers
        x = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        for weight, bias in views:
            x = np.maximum(x @ weight.T + bias, 0.0)
        # The dueling value and the mean advantage do not change the argmax over actions.
        return np.argmax(x @ head_weight.T + head_bias, axis=1)
