"""Networks: MLP and Nature-CNN trunks, the Q-network head (plain or dueling), `layer_init`.

    Nature CNN (Mnih et al. 2015, "Human-level control through deep reinforcement learning"):
        input 4 x 84 x 84 (uint8, scaled to [0, 1])
        conv 32 filters 8x8 stride 4, ReLU
        conv 64 filters 4x4 stride 2, ReLU
        conv 64 filters 3x3 stride 1, ReLU
        fully connected 512, ReLU
        fully connected |A| (one Q-value per action)

    Dueling head (Wang et al. 2016): Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')

    Actor-critic (the policy-gradient methods: PPO, A2C): a policy pi_theta(a|s) and a value
    V(s) on one shared trunk or on two separate ones, initialised as in OpenAI baselines:
    orthogonal weights, gain sqrt(2) in the trunks, 0.01 in the policy head (a near-uniform
    first policy) and 1 in the value head, zero biases. The policy is
        categorical            pi(a|s) = softmax(logits(s))_a              Discrete(n) actions
        diagonal Gaussian      pi(a|s) = N(a; mu(s), diag(sigma^2))        Box actions, with a
                               state-independent log sigma (one learned number per dimension)

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
#: Hidden-layer nonlinearities of the MLP trunk: ReLU (DQN) or tanh (the policy-gradient MLPs).
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


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

    def __init__(
        self,
        in_dim: int,
        hidden: tuple[int, ...],
        one_hot: int | None = None,
        activation: str = "relu",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}")
        self.one_hot = one_hot
        self.activation = activation
        sizes = (in_dim, *hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False))
        self.out_dim = sizes[-1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.one_hot is not None:
            obs = nn.functional.one_hot(obs.long().view(-1), self.one_hot)
        x = obs.float().flatten(1)
        activation = ACTIVATIONS[self.activation]
        for layer in self.layers:
            x = activation(nn.functional.linear(x, layer.weight, layer.bias))
        return x


def trunk_for(
    space: gym.Space,
    network: str,
    hidden: tuple[int, ...],
    env_id: str,
    activation: str = "relu",
) -> nn.Module:
    """The trunk that reads observations of `space`, or a ConfigError saying why none can.

    Args:
        space: the env's observation space.
        network: "auto" (CNN for [C, H, W] images, MLP otherwise), "mlp" or "cnn".
        hidden: MLP layer sizes.
        env_id: for messages.
        activation: the MLP's nonlinearity, "relu" or "tanh" (the CNN's is always ReLU).
    """
    if isinstance(space, gym.spaces.Discrete):
        if network == "cnn":
            raise ConfigError(f"network = cnn needs image observations; '{env_id}' has {space}")
        return VectorTrunk(int(space.n), hidden, one_hot=int(space.n), activation=activation)
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
    return VectorTrunk(int(np.prod(shape)), hidden, activation=activation)


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
        is_relu_mlp = isinstance(trunk, VectorTrunk) and trunk.activation == "relu"
        return is_relu_mlp and trunk.one_hot is None and on_cpu

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


# ---- actor-critic ------------------------------------------------------------------------------
def orthogonal_init(module: nn.Module, gain: float = math.sqrt(2)) -> nn.Module:
    """`layer_init` every linear and convolutional layer of `module` (a trunk)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            layer_init(layer, gain)
    return module


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor):
    """log N(a; mu, diag(sigma^2)) summed over the action dimensions: [B, D] -> [B].

    log N = sum_i -(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi) / 2
    """
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(dim=-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian, sum_i (1/2 + log(2 pi)/2 + log sigma_i): [D] -> []."""
    return (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(dim=-1)


class CategoricalHead(nn.Module):
    """pi(.|s) over Discrete(n) actions: features [B, H] -> logits [B, n]."""

    def __init__(self, in_dim: int, n_actions: int):
        super().__init__()
        self.logits = layer_init(nn.Linear(in_dim, n_actions), gain=0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(features, self.logits.weight, self.logits.bias)

    def log_prob_entropy(self, logits: torch.Tensor, actions: torch.Tensor):
        """(log pi(a|s) [B], entropy of pi(.|s) [B]) for actions [B]."""
        log_probs = logits.log_softmax(dim=-1)
        taken = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        return taken, -(log_probs.exp() * log_probs).sum(dim=-1)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """a ~ pi(.|s) for each row: [B, n] -> [B] (from torch's generator)."""
        return torch.multinomial(logits.softmax(dim=-1), 1).squeeze(-1)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        """argmax_a pi(a|s): [B, n] -> [B]."""
        return logits.argmax(dim=-1)


class DiagonalGaussianHead(nn.Module):
    """pi(.|s) = N(mu(s), diag(sigma^2)) over D-dimensional actions: features [B, H] -> mu [B, D];
    log sigma [D] is a parameter of its own, the same in every state."""

    def __init__(self, in_dim: int, action_dim: int, log_std_init: float = 0.0):
        super().__init__()
        self.mean = layer_init(nn.Linear(in_dim, action_dim), gain=0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(features, self.mean.weight, self.mean.bias)

    def log_prob_entropy(self, mean: torch.Tensor, actions: torch.Tensor):
        """(log pi(a|s) [B], entropy of pi(.|s) [B]) for actions [B, D]."""
        entropy = gaussian_entropy(self.log_std).expand(mean.shape[0])
        return gaussian_log_prob(mean, self.log_std, actions), entropy

    def sample(self, mean: torch.Tensor) -> torch.Tensor:
        """a = mu + sigma * noise, noise ~ N(0, I) from torch's generator: [B, D] -> [B, D]."""
        return mean + self.log_std.exp() * torch.randn_like(mean)

    def mode(self, mean: torch.Tensor) -> torch.Tensor:
        """The most likely action, mu(s)."""
        return mean


class ActorCritic(nn.Module):
    """pi_theta(.|s) and V(s): a trunk for each (or one shared trunk), a policy head, a value head.

    Args:
        actor_trunk: features for the policy (and for the value when critic_trunk is None).
        critic_trunk: features for the value; None shares the actor's trunk.
        policy_head: a CategoricalHead or DiagonalGaussianHead on the actor's features.
    """

    def __init__(self, actor_trunk: nn.Module, critic_trunk: nn.Module | None, policy_head):
        super().__init__()
        self.actor_trunk = actor_trunk
        self.critic_trunk = critic_trunk
        self.policy_head = policy_head
        value_in = (critic_trunk or actor_trunk).out_dim
        self.value_head = layer_init(nn.Linear(value_in, 1), gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, ...] observations -> (distribution parameters [B, A or D], values [B])."""
        features = self.actor_trunk(obs)
        critic = features if self.critic_trunk is None else self.critic_trunk(obs)
        values = nn.functional.linear(critic, self.value_head.weight, self.value_head.bias)
        return self.policy_head(features), values.squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s): [B, ...] -> [B]."""
        if self.critic_trunk is None:
            return self(obs)[1]
        critic = self.critic_trunk(obs)
        return nn.functional.linear(critic, self.value_head.weight, self.value_head.bias)[:, 0]

    def act(self, obs: torch.Tensor):
        """Sample a ~ pi(.|s): (actions, log pi(a|s) [B], V(s) [B])."""
        params, values = self(obs)
        actions = self.policy_head.sample(params)
        log_probs, _ = self.policy_head.log_prob_entropy(params, actions)
        return actions, log_probs, values

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor):
        """(log pi(a|s) [B], entropy [B], V(s) [B]) for given observations and actions."""
        params, values = self(obs)
        log_probs, entropy = self.policy_head.log_prob_entropy(params, actions)
        return log_probs, entropy, values

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic policy: the distribution's mode (argmax or mean)."""
        return self.policy_head.mode(self.policy_head(self.actor_trunk(obs)))


def actor_critic_for(
    obs_space: gym.Space,
    action_space: gym.Space,
    *,
    network: str,
    hidden: tuple[int, ...],
    shared: bool,
    log_std_init: float,
    env_id: str,
) -> ActorCritic:
    """An ActorCritic for these spaces: tanh MLP or Nature-CNN trunks (see `trunk_for`), a
    categorical head for Discrete actions, a diagonal Gaussian one for Box actions (flattened
    to D = prod(shape) dimensions). Raises ConfigError for spaces it cannot take."""

    def trunk() -> nn.Module:
        return orthogonal_init(trunk_for(obs_space, network, hidden, env_id, activation="tanh"))

    actor = trunk()
    if isinstance(action_space, gym.spaces.Discrete):
        head = CategoricalHead(actor.out_dim, int(action_space.n))
    elif isinstance(action_space, gym.spaces.Box):
        head = DiagonalGaussianHead(actor.out_dim, int(np.prod(action_space.shape)), log_std_init)
    else:
        raise ConfigError(
            f"'{env_id}' has {type(action_space).__name__} actions; the actor-critic takes "
            "Discrete or Box action spaces"
        )
    return ActorCritic(actor, None if shared else trunk(), head)


# ---- AlphaZero's residual tower -----------------------------------------------------------
class ResidualBlock(nn.Module):
    """x -> ReLU(x + BN(conv3x3(ReLU(BN(conv3x3(x)))))), `channels` in and out (AlphaGo Zero)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        hidden = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(hidden)))


class AlphaZeroNetwork(nn.Module):
    """f_theta(s) = (p, v): AlphaGo Zero's residual tower with a policy head and a value head.

    Silver et al., "Mastering the game of Go without human knowledge", Nature 550, 2017
    (Methods, "Neural network architecture"); AlphaZero (Science 362, 2018) keeps it:

        stem:   conv 3x3, `channels` filters, BN, ReLU
        tower:  `blocks` residual blocks (`ResidualBlock`)
        policy: conv 1x1, 2 filters, BN, ReLU, fully connected -> A logits
        value:  conv 1x1, 1 filter, BN, ReLU, fully connected `value_hidden`, ReLU,
                fully connected 1, tanh

    The paper uses 19 or 39 blocks of 256 channels and a 256-unit value layer; the board games
    here train on CPU with a few blocks of 32-64 channels.

    Args:
        observation_shape: the game's planes `[C, H, W]`.
        action_size: A, the number of policy logits.
        blocks: residual blocks in the tower (>= 0).
        channels: filters of the stem and of every block.
        value_hidden: units of the value head's hidden layer.
    """

    def __init__(
        self,
        observation_shape: tuple[int, int, int],
        action_size: int,
        *,
        blocks: int,
        channels: int,
        value_hidden: int = 256,
    ):
        super().__init__()
        in_channels, height, width = observation_shape
        cells = height * width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        self.tower = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.policy_conv = nn.Sequential(
            nn.Conv2d(channels, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU()
        )
        self.policy_fc = nn.Linear(2 * cells, action_size)
        self.value_conv = nn.Sequential(
            nn.Conv2d(channels, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU()
        )
        self.value_fc = nn.Sequential(
            nn.Linear(cells, value_hidden), nn.ReLU(), nn.Linear(value_hidden, 1)
        )

    def forward(self, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, C, H, W]` planes -> (policy logits `[B, A]`, values `[B]` in (-1, 1))."""
        features = self.tower(self.stem(planes))
        logits = self.policy_fc(self.policy_conv(features).flatten(1))
        value = torch.tanh(self.value_fc(self.value_conv(features).flatten(1))).squeeze(-1)
        return logits, value
