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

Everything here is the plain reference: torch modules, autograd for the gradients. The speed
path for small networks on a CPU (numpy acting, gradients by hand, flat parameters, the direct
fused Adam call) is `bellman.nets.fast`, proven equal to this one by the tests.
"""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bellman.errors import ConfigError

#: The smallest image side the Nature CNN's three convolutions accept.
MIN_IMAGE_SIDE = 36
#: Hidden-layer nonlinearities of the MLP trunk: ReLU (DQN) or tanh (the policy-gradient MLPs).
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when a GPU is visible, else the CPU; `cpu` and `cuda` are themselves.

    On CUDA, autograd runs the backward pass in a worker thread of its own, which PyTorch
    starts without making the device's primary context current there; the first cuBLAS call
    of that thread then prints "Attempting to run cuBLAS, but there was no current CUDA
    context! Attempting to set the primary context..." and sets it (PyTorch's own workaround,
    harmless). That one warning is silenced; every other warning stays.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = cuda but no CUDA GPU is visible; use device = auto or cpu")
    if name == "cuda":
        warnings.filterwarnings("ignore", message="Attempting to run cuBLAS, but there was no "
                                "current CUDA context")  # fmt: skip
    return torch.device(name)


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


#: `bf16_autocast` on a CPU: batches of fewer frames than this run in float32. Autocast casts
#: the weights to bfloat16 at every call, which costs more than it saves on a few frames: one
#: frame took 1.46 ms in bf16 against 0.84 in float32 (the Nature CNN, torch with 1 thread,
#: 2026-12-06), and DQN with one env, which acts on one frame every step, ran 168-172 env
#: steps/s with this rule against 109-130 without (Breakout, alternating runs in one process).
BF16_MIN_BATCH = 8


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
        # the memory layout of the frames for the convolutions (`nets.fast`'s
        # channels_last_inputs sets torch.channels_last)
        self.memory_format = torch.contiguous_format
        # None: float32 throughout; torch.bfloat16: the layers under autocast, the features
        # back in float32 (`nets.fast.bf16_convolutions` sets it; on a CPU only for batches of
        # BF16_MIN_BATCH frames or more)
        self.compute_dtype: torch.dtype | None = None

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # the frames laid out (as bytes: the cheap copy), then as new floats scaled to [0, 1]
        x = frames.contiguous(memory_format=self.memory_format).to(torch.float32, copy=True)
        x = x.div_(255.0)
        if self.compute_dtype is None or (x.device.type == "cpu" and len(x) < BF16_MIN_BATCH):
            return self.fc(self.convs(x))
        with torch.autocast(x.device.type, dtype=self.compute_dtype):
            features = self.fc(self.convs(x))
        return features.float()


def vector_inputs(obs: torch.Tensor, one_hot: int | None) -> torch.Tensor:
    """Observations as an MLP's first layer takes them: [B, ...] -> [B, D] float, Discrete
    indices one-hot encoded to D = one_hot."""
    if one_hot is not None:
        obs = nn.functional.one_hot(obs.long().view(-1), one_hot)
    return obs.float().flatten(1)


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
        x = vector_inputs(obs, self.one_hot)
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
    """Q(s, .; theta): a trunk and a head with one output per action, plain or dueling
    (`fast.NumpyGreedy` acts greedily with it in numpy)."""

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

    def log_prob_entropy(self, logits: torch.Tensor, actions: torch.Tensor, entropy_grad=True):
        """(log pi(a|s) [B], entropy of pi(.|s) [B]) for actions [B]; with entropy_grad False
        the entropy is computed outside the autograd graph (a loss without entropy bonus)."""
        log_probs = logits.log_softmax(dim=-1)
        taken = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        log_pi = log_probs if entropy_grad else log_probs.detach()
        return taken, -(log_pi.exp() * log_pi).sum(dim=-1)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """a ~ pi(.|s) for each row: [B, n] -> [B] (from torch's generator)."""
        return torch.multinomial(logits.softmax(dim=-1), 1).squeeze(-1)

    def sample_numpy(self, logits: np.ndarray, rng: np.random.Generator):
        """a ~ pi(.|s) with numpy, by inverting the CDF at u ~ U[0, 1) from `rng` (the
        actor-critic loops sample from the learner's numpy generator, which checkpoints keep):
        [B, n] logits -> (actions [B] int64, log pi(a|s) [B] float32)."""
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        cdf = np.cumsum(np.exp(log_probs), axis=1)
        u = rng.random(len(logits), dtype=np.float32)[:, None] * cdf[:, -1:]  # sums to 1 +- eps
        actions = np.minimum((cdf <= u).sum(axis=1), logits.shape[1] - 1)
        return actions, log_probs[np.arange(len(actions)), actions]

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

    def log_prob_entropy(self, mean: torch.Tensor, actions: torch.Tensor, entropy_grad=True):
        """(log pi(a|s) [B], entropy of pi(.|s) [B]) for actions [B, D]; with entropy_grad False
        the entropy is computed outside the autograd graph."""
        log_std = self.log_std if entropy_grad else self.log_std.detach()
        entropy = gaussian_entropy(log_std).expand(mean.shape[0])
        return gaussian_log_prob(mean, self.log_std, actions), entropy

    def sample(self, mean: torch.Tensor) -> torch.Tensor:
        """a = mu + sigma * noise, noise ~ N(0, I) from torch's generator: [B, D] -> [B, D]."""
        return mean + self.log_std.exp() * torch.randn_like(mean)

    def sample_numpy(self, mean: np.ndarray, rng: np.random.Generator):
        """a = mu + sigma * noise with numpy, noise ~ N(0, I) from `rng` (`gaussian_sample`)."""
        return gaussian_sample(mean, self.log_std.detach().cpu().numpy(), rng)

    def mode(self, mean: torch.Tensor) -> torch.Tensor:
        """The most likely action, mu(s)."""
        return mean


def gaussian_sample(mean: np.ndarray, log_std: np.ndarray, rng: np.random.Generator):
    """a = mu + sigma * noise with numpy, noise ~ N(0, I) from `rng`: [B, D] mu and [D] log sigma
    -> (actions [B, D] float32, log pi(a|s) [B] float32).

    (a - mu) / sigma is the noise itself, so log pi(a|s) = sum_i -noise_i^2 / 2 - log sigma_i
    - log(2 pi) / 2 (see `gaussian_log_prob`).
    """
    noise = rng.standard_normal(mean.shape, dtype=np.float32)
    actions = mean + np.exp(log_std) * noise
    log_probs = -0.5 * noise * noise - log_std - np.float32(0.5 * math.log(2 * math.pi))
    return actions, log_probs.sum(axis=1)


# The actor's and the critic's features come from one of three trunk pairs, each a module with
# forward(obs) -> (actor features, critic features), actor_features(obs), critic_features(obs)
# and the feature sizes actor_dim, critic_dim.
class SharedTrunk(nn.Module):
    """One trunk whose features feed both the policy and the value (Atari's shared CNN)."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.actor_dim = self.critic_dim = trunk.out_dim

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(obs)
        return features, features

    def actor_features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.trunk(obs)

    critic_features = actor_features


class SeparateTrunks(nn.Module):
    """A trunk for the policy and another for the value (any two modules with out_dim)."""

    def __init__(self, actor: nn.Module, critic: nn.Module):
        super().__init__()
        self.actor, self.critic = actor, critic
        self.actor_dim, self.critic_dim = actor.out_dim, critic.out_dim

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.critic(obs)

    def actor_features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def critic_features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs)


class StackedTrunks(nn.Module):
    """Two MLP trunks of the same shape (the actor's and the critic's) computed together: their
    weights are stacked, layer by layer, into `weights[l]` [2, in, out] (index 0 the actor's,
    1 the critic's; transposed from nn.Linear's [out, in]) and `biases[l]` [2, 1, out], and each
    layer is one batched matrix product (torch.baddbmm) instead of two. The same functions as
    SeparateTrunks(actor, critic), up to float rounding; on a CPU it halves the per-operation
    overhead that dominates small MLPs, forward and backward.

    Args:
        actor, critic: VectorTrunks with the same sizes, one-hot and activation, already
            initialised: their parameters are copied in (they are not kept).
    """

    def __init__(self, actor: VectorTrunk, critic: VectorTrunk):
        super().__init__()
        shapes = [[p.shape for p in trunk.parameters()] for trunk in (actor, critic)]
        same = (actor.one_hot, actor.activation) == (critic.one_hot, critic.activation)
        if shapes[0] != shapes[1] or not same:
            raise ValueError("StackedTrunks needs two VectorTrunks of the same shape")
        self.one_hot, self.activation = actor.one_hot, actor.activation
        self.actor_dim = self.critic_dim = actor.out_dim
        pairs = list(zip(actor.layers, critic.layers, strict=True))
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([a.weight.detach().T, c.weight.detach().T]).contiguous())
            for a, c in pairs
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([a.bias.detach(), c.bias.detach()]).unsqueeze(1))
            for a, c in pairs
        )

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = vector_inputs(obs, self.one_hot)
        x = x.expand(2, *x.shape)  # [2, B, D]: the same input for both trunks
        activation = ACTIVATIONS[self.activation]
        for weight, bias in zip(self.weights, self.biases, strict=True):
            x = activation(torch.baddbmm(bias, x, weight))  # [2, B, out]
        return x[0], x[1]

    def _one(self, obs: torch.Tensor, index: int) -> torch.Tensor:
        """The features of one trunk only (0 the actor's, 1 the critic's): [B, ...] -> [B, H]."""
        x = vector_inputs(obs, self.one_hot)
        activation = ACTIVATIONS[self.activation]
        for weight, bias in zip(self.weights, self.biases, strict=True):
            x = activation(torch.addmm(bias[index], x, weight[index]))
        return x

    def actor_features(self, obs: torch.Tensor) -> torch.Tensor:
        return self._one(obs, 0)

    def critic_features(self, obs: torch.Tensor) -> torch.Tensor:
        return self._one(obs, 1)


def pair_trunks(actor: nn.Module, critic: nn.Module) -> nn.Module:
    """StackedTrunks for two MLP trunks of the same shape, SeparateTrunks otherwise."""
    if isinstance(actor, VectorTrunk) and isinstance(critic, VectorTrunk):
        shapes = [[p.shape for p in trunk.parameters()] for trunk in (actor, critic)]
        if shapes[0] == shapes[1] and actor.one_hot == critic.one_hot:
            return StackedTrunks(actor, critic)
    return SeparateTrunks(actor, critic)


class ActorCritic(nn.Module):
    """pi_theta(.|s) and V(s): a pair of trunks (SharedTrunk, SeparateTrunks or StackedTrunks),
    a policy head on the actor's features and a linear value head on the critic's.

    Args:
        trunks: the trunk pair: obs -> (actor features, critic features).
        policy_head: a CategoricalHead or DiagonalGaussianHead on the actor's features.
    """

    def __init__(self, trunks: nn.Module, policy_head: nn.Module):
        super().__init__()
        self.trunks = trunks
        self.policy_head = policy_head
        self.value_head = layer_init(nn.Linear(trunks.critic_dim, 1), gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, ...] observations -> (distribution parameters [B, A or D], values [B])."""
        actor, critic = self.trunks(obs)
        values = nn.functional.linear(critic, self.value_head.weight, self.value_head.bias)
        return self.policy_head(actor), values.squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s): [B, ...] -> [B]."""
        critic = self.trunks.critic_features(obs)
        return nn.functional.linear(critic, self.value_head.weight, self.value_head.bias)[:, 0]

    def act(self, obs: torch.Tensor):
        """Sample a ~ pi(.|s): (actions, log pi(a|s) [B], V(s) [B])."""
        params, values = self(obs)
        actions = self.policy_head.sample(params)
        log_probs, _ = self.policy_head.log_prob_entropy(params, actions)
        return actions, log_probs, values

    def sample(self, obs: np.ndarray, rng: np.random.Generator):
        """a ~ pi(.|s) for the envs' observations [B, ...], drawn from the numpy generator `rng`
        (the head's `sample_numpy`): (actions [B] or [B, D], log pi(a|s) [B], V(s) [B]) as numpy
        arrays. `fast.FastPath.sample` computes the same with numpy on a CPU MLP."""
        with torch.no_grad():
            params, values = self(torch.as_tensor(obs, device=self.value_head.weight.device))
        actions, log_probs = self.policy_head.sample_numpy(params.cpu().numpy(), rng)
        return actions, log_probs, values.cpu().numpy()

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor, entropy_grad: bool = True):
        """(log pi(a|s) [B], entropy [B], V(s) [B]) for given observations and actions; with
        entropy_grad False the entropy is left out of the autograd graph (no entropy bonus)."""
        params, values = self(obs)
        log_probs, entropy = self.policy_head.log_prob_entropy(params, actions, entropy_grad)
        return log_probs, entropy, values

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic policy: the distribution's mode (argmax or mean)."""
        return self.policy_head.mode(self.policy_head(self.trunks.actor_features(obs)))


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
    """An ActorCritic for these spaces: tanh MLP or Nature-CNN trunks (see `trunk_for`; two
    MLPs are stacked, see `StackedTrunks`), a categorical head for Discrete actions, a diagonal
    Gaussian one for Box actions (flattened to D = prod(shape) dimensions). Raises ConfigError
    for spaces it cannot take."""

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
    # (initialised in this order, actor, head, critic, value head, as before the stacking)
    trunks = SharedTrunk(actor) if shared else pair_trunks(actor, trunk())
    return ActorCritic(trunks, head)


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
