"""MuZero's three functions h, g, f and the scalar transforms of its value and reward heads.

Schrittwieser et al., "Mastering Atari, Go, chess and shogi by planning with a learned model",
Nature 588, 2020 (Methods and Appendix F, "Network architecture"):

    s^0 = h(o_1, ..., o_t)                 representation: observations -> latent state
    r^k, s^k = g(s^{k-1}, a^k)             dynamics: latent state and action -> reward, next
    p^k, v^k = f(s^k)                      prediction: latent state -> policy, value

    - Every latent state (the output of h and of g) is scaled to [0, 1] per state, by its own
      minimum and maximum (`scale_hidden`), "to keep the hidden state in the same range as the
      action input".
    - Board games: h is AlphaZero's residual tower (the same sizes: `blocks`, `channels`), g a
      residual tower over the latent planes plus the action encoded as planes (`action_planes`),
      f AlphaZero's policy and value heads; values and rewards are scalars in [-1, 1] (tanh),
      or (`reward_classes`) the reward a distribution over the move's possible results -1, 0,
      +1 whose expectation is the scalar.
    - Vector observations (CartPole): h, g and f are MLPs, the action a one-hot vector.
    - Atari: h is the paper's downsampling ResNet (conv stride 2, residual blocks, conv stride 2,
      residual blocks, average pool stride 2, residual blocks, average pool stride 2; 96x96
      inputs give a 6x6 latent), g a residual tower over the latent planes and the action's
      one-hot planes (the paper tiles the action into planes).
    - Where returns are unbounded (vector and Atari environments), value and reward are
      categorical over the integers -S..S of the transformed scalar (Appendix F):
          h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x,     eps = 0.001
      a scalar becomes the two-hot distribution on the two integers around h(x)
      (`scalar_to_support`) and a distribution back the inverse transform of its expectation
      (`support_to_scalar`).

Deviations: the paper's Atari h also takes the last 32 actions as planes; here h sees the
preprocessed frames only (the dynamics still takes the action planes). The board-game dynamics
has `blocks` residual blocks like h (the paper uses 16 in both for Go).

Normalisation. h's towers keep AlphaZero's BatchNorm (h only ever sees observations), but the
layers that also see latent states reached by g (g's tower, the board games' heads of f and g,
and Atari's f tower) normalise each state by itself (`LayerNorm2d`, over its channels and
cells): training unrolls g K times, one batch per step k, so BatchNorm there normalises every k
by its own batch statistics while search, one state at a time, uses the running averages over
all k. On tic-tac-toe (the shipped config, 12,000 moves) that mismatch made g's predictions at
search time far from the ones trained: over all 4,520 positions a non-final move's predicted
reward was 0.24 on average in eval mode against 0.008 with batch statistics, and |v(g(h(o), a))
- v(h(o'))| 0.54 against 0.13; search over the model lost 33 games to perfect play with the raw
policy, 26 with 25 simulations and 31 with 100. With `LayerNorm2d` in g the same run's model
gives a non-final move's reward 0.07 at search time and search improves with simulations (48, 43
and 39 games lost with 1, 25 and 100 simulations: the 146 games of
`benchmarks/muzero_tictactoe.py`, played from a scratch diagnostic); with the config shipped
since (20,000 moves), seed 0 loses 6, 2 and 1 with 1, 25 and 50 simulations but seed 1 12, 13
and 19: not every trained model is yet one that search improves.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bellman.nets import ResidualBlock, mlp

#: eps of the value transform h(x) (MuZero: 0.001).
TRANSFORM_EPS = 0.001


# ---- the value transform and the categorical support ---------------------------------------
def value_transform(x: torch.Tensor, eps: float = TRANSFORM_EPS) -> torch.Tensor:
    """h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x (Pohlen et al. 2018; MuZero Appendix F)."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1.0) - 1.0) + eps * x


def inverse_value_transform(y: torch.Tensor, eps: float = TRANSFORM_EPS) -> torch.Tensor:
    """h^-1(y) = sign(y) (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1)."""
    root = (torch.sqrt(1.0 + 4.0 * eps * (y.abs() + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return torch.sign(y) * (root**2 - 1.0)


def scalar_to_support(x: torch.Tensor, support: int) -> torch.Tensor:
    """The categorical projection of h(x) onto the integers -S..S: `[...]` -> `[..., 2S + 1]`.

    h(x) is clipped to [-S, S]; with floor(h) = l, the probability 1 - (h - l) goes to l and
    h - l to l + 1 (two-hot), so the distribution's expectation is exactly h(x).
    """
    y = value_transform(x).clamp(-support, support)
    low = y.floor()
    upper_weight = y - low
    shape = (*x.shape, 2 * support + 1)
    out = torch.zeros(shape, dtype=x.dtype, device=x.device)
    low_index = (low + support).long()
    out.scatter_(-1, low_index.unsqueeze(-1), (1.0 - upper_weight).unsqueeze(-1))
    high_index = (low_index + 1).clamp(max=2 * support)
    out.scatter_add_(-1, high_index.unsqueeze(-1), upper_weight.unsqueeze(-1))
    return out


#: The results a board game's move can have for its mover: the classes of `reward_classes`.
RESULTS = torch.tensor([-1.0, 0.0, 1.0])


def result_classes(x: torch.Tensor) -> torch.Tensor:
    """The two-hot projection of x in [-1, 1] onto `RESULTS`: `[...]` -> `[..., 3]`, each
    result weighted 1 - |x - result| where that is positive (-1, 0 and +1 are one-hot; the
    expectation is exactly x)."""
    distance = (x.clamp(-1.0, 1.0).unsqueeze(-1) - RESULTS.to(x)).abs()
    return (1.0 - distance).clamp(min=0.0)


def support_to_scalar(logits: torch.Tensor, support: int) -> torch.Tensor:
    """h^-1 of the expectation of softmax(logits) over -S..S: `[..., 2S + 1]` -> `[...]`."""
    atoms = torch.arange(-support, support + 1, dtype=logits.dtype, device=logits.device)
    expected = (torch.softmax(logits, dim=-1) * atoms).sum(-1)
    return inverse_value_transform(expected)


def scale_hidden(hidden: torch.Tensor) -> torch.Tensor:
    """Min-max scale every latent state to [0, 1] (over all its dimensions but the batch)."""
    flat = hidden.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    scaled = (flat - low) / (high - low).clamp_min(1e-5)
    return scaled.view_as(hidden)


def LayerNorm2d(channels: int) -> nn.GroupNorm:  # noqa: N802 - a layer's name
    """Per-state normalisation of `[B, C, H, W]` over (C, H, W), with a learned scale and shift
    per channel (layer normalisation for planes)."""
    return nn.GroupNorm(1, channels)


def state_residual_block(channels: int) -> ResidualBlock:
    """AlphaGo Zero's `ResidualBlock` with its two BatchNorms replaced by `LayerNorm2d`: the
    block of the layers that see latent states (module docstring, Normalisation)."""
    block = ResidualBlock(channels)
    block.bn1, block.bn2 = LayerNorm2d(channels), LayerNorm2d(channels)
    return block


def head_planes(channels: int, planes: int) -> list[nn.Module]:
    """The start of a board head (AlphaZero's: conv 1x1 to `planes` filters, a normalisation,
    ReLU), flattened to `[B, planes * H * W]`; the normalisation is `LayerNorm2d`, as in every
    layer that sees g's states. Without it (a conv 1x1 with a bias straight into the ReLU) a
    head whose target is mostly 0, g's reward, could settle into a dead ReLU and one constant:
    Connect Four's reward head trained on its unrolled rewards alone (random games, K = 5,
    batch 128) predicted 0.044 at every move after 500 steps, and with the normalisation 0.69
    at winning moves against 0.06 elsewhere after 1,500."""
    return [nn.Conv2d(channels, planes, 1, bias=False), LayerNorm2d(planes), nn.ReLU(),
            nn.Flatten()]  # fmt: skip


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x in the forward pass; the gradient flowing back through it multiplied by `scale`."""
    return x * scale + x.detach() * (1.0 - scale)


# ---- actions as network inputs -------------------------------------------------------------
def action_planes(
    actions: torch.Tensor, action_size: int, board_shape: tuple[int, int]
) -> torch.Tensor:
    """A board game's actions `[B]` as planes `[B, P, H, W]` for the dynamics function.

    A game whose actions are the cells (tic-tac-toe) gets one plane with a 1 on the cell; Go
    (the cells and a pass) gets that plane and a plane of ones for a pass; Connect Four (the
    columns) one plane of ones on the column; any other game A one-hot planes (constant).
    """
    height, width = board_shape
    batch = actions.shape[0]
    rows = torch.arange(batch, device=actions.device)
    cells = height * width
    if action_size in (cells, cells + 1):
        planes = torch.zeros((batch, 2, cells + 1), device=actions.device)
        planes[rows, 0, actions] = 1.0
        planes[:, 1, :] = (actions == cells).float().unsqueeze(1)  # pass (Go)
        planes = planes[:, :, :cells].reshape(batch, 2, height, width)
        return planes if action_size == cells + 1 else planes[:, :1]
    if action_size == width:
        planes = torch.zeros((batch, 1, height, width), device=actions.device)
        planes[rows, 0, :, actions] = 1.0
        return planes
    one_hot = torch.nn.functional.one_hot(actions, action_size).float()
    return one_hot[:, :, None, None].expand(batch, action_size, height, width)


def action_plane_count(action_size: int, board_shape: tuple[int, int]) -> int:
    """P, the number of planes `action_planes` makes."""
    height, width = board_shape
    cells = height * width
    if action_size == cells:
        return 1
    if action_size == cells + 1:
        return 2
    return 1 if action_size == width else action_size


# ---- the networks -------------------------------------------------------------------------
class MuZeroNetwork(nn.Module):
    """h, g, f behind two calls, as the search and the training loop use them.

    `initial_inference(observations)` = h then f; `recurrent_inference(hidden, actions)` = g then
    f. Both return `(hidden, reward, policy_logits, value)`: hidden `[B, ...]` scaled to [0, 1],
    reward and value raw (scalars `[B]` for board games, logits `[B, 2S + 1]` when
    `support` > 0, a board reward's logits `[B, 3]` with `reward_classes`), policy logits
    `[B, A]`; `scalar(x)` turns a raw value into `[B]`, `reward_scalar(x)` a raw reward.
    The subclasses define `represent`, `dynamics` and `predict`.
    """

    support = 0
    """S of the categorical value and reward (0: scalars in [-1, 1])."""

    reward_classes = False
    """Board games: g's reward as logits `[B, 3]` over the results -1, 0, +1 (`reward_scalar`)
    instead of a scalar in (-1, 1)."""

    def scalar(self, raw: torch.Tensor) -> torch.Tensor:
        """A raw value (or a reward of a network without `reward_classes`) as scalars `[B]`."""
        return support_to_scalar(raw, self.support) if self.support else raw

    def reward_scalar(self, raw: torch.Tensor) -> torch.Tensor:
        """A raw reward of g as scalars `[B]`: the expectation over -1, 0, +1 with
        `reward_classes`, else `scalar`."""
        if not self.reward_classes:
            return self.scalar(raw)
        return (torch.softmax(raw, dim=-1) * RESULTS.to(raw)).sum(-1)

    def initial_inference(self, observations: torch.Tensor):
        hidden = scale_hidden(self.represent(observations))
        logits, value = self.predict(hidden)
        reward = torch.zeros_like(value)
        return hidden, reward, logits, value

    def recurrent_inference(self, hidden: torch.Tensor, actions: torch.Tensor):
        next_hidden, reward = self.dynamics(hidden, actions)
        next_hidden = scale_hidden(next_hidden)
        logits, value = self.predict(next_hidden)
        return next_hidden, reward, logits, value

    def forward(self, observations: torch.Tensor):
        return self.initial_inference(observations)

    def add_consistency_heads(self, size: int, observation_shape: tuple[int, ...]) -> None:
        """Give the network EfficientZero's projection and prediction heads (`ConsistencyHeads`)
        over its flattened latent state (sized by h's output for an observation of
        `observation_shape`); only runs with a consistency loss have (and save) them."""
        training = self.training
        with torch.no_grad():  # (in eval mode: BatchNorm's statistics stay untouched)
            latent = self.eval().represent(torch.zeros(1, *observation_shape)).flatten(1).shape[1]
        self.train(training)
        self.consistency = ConsistencyHeads(latent, size)


class ConsistencyHeads(nn.Module):
    """The self-supervised consistency of EfficientZero (Ye et al., "Mastering Atari games
    with limited data", NeurIPS 2021, section 4.1), SimSiam's (Chen and He 2021) recipe on
    latent states: the state g unrolled to step k should be the state h makes of the real
    observation o_{t+k}:

        l^c_k = -cos( P2(P1(s^k)),  sg(P1(h(o_{t+k}))) )

    with P1 the projection (three linear layers, BatchNorm, ReLU), P2 the prediction head (two
    layers, the online branch only) and sg the stop-gradient: only the unrolled branch learns.
    Deviation: EfficientZero's Atari sizes are 1024 (projection) and 512 (prediction's hidden
    layer); here `size` and size / 2, a config value.
    """

    def __init__(self, latent_size: int, size: int):
        super().__init__()
        self.projection = nn.Sequential(
            nn.Linear(latent_size, size), nn.BatchNorm1d(size), nn.ReLU(),
            nn.Linear(size, size), nn.BatchNorm1d(size), nn.ReLU(),
            nn.Linear(size, size), nn.BatchNorm1d(size),
        )  # fmt: skip
        hidden = max(1, size // 2)
        self.prediction = nn.Sequential(
            nn.Linear(size, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, size)
        )

    def loss(self, unrolled: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """`[B]` l^c for unrolled states s^k `[B, ...]` and h's states of the real
        observations `[B, ...]` (the latter taken as constants)."""
        online = self.prediction(self.projection(unrolled.flatten(1)))
        with torch.no_grad():
            target = self.projection(observed.flatten(1))
        return -nn.functional.cosine_similarity(online, target, dim=1)


class BoardMuZeroNetwork(MuZeroNetwork):
    """h, g, f for a board game: AlphaZero's residual towers and heads (see the module
    docstring); scalar value in (-1, 1), and a scalar reward in (-1, 1) or, with
    `reward_classes`, logits over the results -1, 0, +1.

    Args:
        observation_shape: the game's planes `[C, H, W]`.
        action_size: A.
        blocks: residual blocks of h and of g.
        channels: filters of the towers (the latent state is `[channels, H, W]`).
        value_hidden: units of the value and reward heads' hidden layer.
        reward_classes: g's reward as 3 logits (`MuZeroNetwork.reward_scalar`).
    """

    def __init__(self, observation_shape, action_size, *, blocks, channels, value_hidden,
                 reward_classes=False):  # fmt: skip
        super().__init__()
        self.reward_classes = reward_classes
        in_channels, height, width = observation_shape
        self.action_size, self.board_shape = action_size, (height, width)
        cells = height * width

        def tower(inputs: int, norm, block) -> nn.Sequential:
            stem = [nn.Conv2d(inputs, channels, 3, padding=1, bias=False), norm(channels),
                    nn.ReLU()]  # fmt: skip
            return nn.Sequential(*stem, *(block(channels) for _ in range(blocks)))

        self.representation = tower(in_channels, nn.BatchNorm2d, ResidualBlock)
        self.dynamics_tower = tower(channels + action_plane_count(action_size, (height, width)),
                                    LayerNorm2d, state_residual_block)  # fmt: skip
        self.reward_head = nn.Sequential(
            *head_planes(channels, 1), nn.Linear(cells, value_hidden), nn.ReLU(),
            nn.Linear(value_hidden, len(RESULTS) if reward_classes else 1),
        )  # fmt: skip
        self.policy_head = nn.Sequential(
            *head_planes(channels, 2), nn.Linear(2 * cells, action_size)
        )  # fmt: skip
        self.value_head = nn.Sequential(
            *head_planes(channels, 1), nn.Linear(cells, value_hidden), nn.ReLU(),
            nn.Linear(value_hidden, 1),
        )  # fmt: skip

    def represent(self, observations: torch.Tensor) -> torch.Tensor:
        """h: `[B, C, H, W]` -> `[B, channels, H, W]`."""
        return self.representation(observations)

    def dynamics(self, hidden: torch.Tensor, actions: torch.Tensor):
        """g: the next latent (unscaled) and the reward: in (-1, 1) `[B]`, or logits `[B, 3]`
        with `reward_classes`."""
        planes = action_planes(actions, self.action_size, self.board_shape)
        following = self.dynamics_tower(torch.cat([hidden, planes], dim=1))
        reward = self.reward_head(following)
        return following, reward if self.reward_classes else torch.tanh(reward).squeeze(-1)

    def predict(self, hidden: torch.Tensor):
        """f: policy logits `[B, A]` and value `[B]` in (-1, 1)."""
        return self.policy_head(hidden), torch.tanh(self.value_head(hidden)).squeeze(-1)


class VectorMuZeroNetwork(MuZeroNetwork):
    """h, g, f as MLPs for vector observations; categorical value and reward over -S..S.

    Args:
        observation_size: the observation's length.
        action_size: A.
        hidden_size: the latent state's size.
        layers: hidden layer sizes of every MLP.
        support: S.
    """

    def __init__(self, observation_size, action_size, *, hidden_size, layers, support):
        super().__init__()
        self.action_size, self.support = action_size, support
        atoms = 2 * support + 1
        self.representation = mlp(observation_size, layers, hidden_size)
        self.dynamics_net = mlp(hidden_size + action_size, layers, hidden_size)
        self.reward_head = mlp(hidden_size, layers, atoms)
        self.policy_head = mlp(hidden_size, layers, action_size)
        self.value_head = mlp(hidden_size, layers, atoms)

    def represent(self, observations: torch.Tensor) -> torch.Tensor:
        return self.representation(observations.flatten(1))

    def dynamics(self, hidden: torch.Tensor, actions: torch.Tensor):
        one_hot = torch.nn.functional.one_hot(actions, self.action_size).to(hidden.dtype)
        following = self.dynamics_net(torch.cat([hidden, one_hot], dim=1))
        return following, self.reward_head(following)

    def predict(self, hidden: torch.Tensor):
        return self.policy_head(hidden), self.value_head(hidden)


class AtariMuZeroNetwork(MuZeroNetwork):
    """h, g, f for Atari frames: the paper's downsampling ResNet (module docstring), dynamics
    over the latent and the action's one-hot planes; categorical value and reward over -S..S.

    Args:
        observation_shape: stacked frames `[C, H, W]` (96x96 in the paper, 84x84 here too).
        action_size: A.
        channels: filters after the second downsampling (the paper: 256; half before).
        blocks: residual blocks of the dynamics tower and of f (the paper: 16).
        support: S (the paper: 300).
    """

    def __init__(self, observation_shape, action_size, *, channels, blocks, support):
        super().__init__()
        in_channels, height, width = observation_shape
        half = max(1, channels // 2)
        self.action_size, self.support = action_size, support

        def blocks_of(size: int, count: int, block=ResidualBlock) -> list[nn.Module]:
            return [block(size) for _ in range(count)]

        self.representation = nn.Sequential(
            nn.Conv2d(in_channels, half, 3, stride=2, padding=1), nn.ReLU(), *blocks_of(half, 2),
            nn.Conv2d(half, channels, 3, stride=2, padding=1), nn.ReLU(),
            *blocks_of(channels, 3), nn.AvgPool2d(3, stride=2, padding=1),
            *blocks_of(channels, 3), nn.AvgPool2d(3, stride=2, padding=1),
        )  # fmt: skip
        with torch.no_grad():
            latent = self.representation(torch.zeros(1, in_channels, height, width)).shape[1:]
        cells = latent[1] * latent[2]
        self.latent_shape = tuple(latent)
        self.dynamics_tower = nn.Sequential(
            nn.Conv2d(channels + action_size, channels, 3, padding=1), nn.ReLU(),
            *blocks_of(channels, blocks, state_residual_block),
        )  # fmt: skip
        atoms = 2 * support + 1
        self.reward_head = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(cells, atoms))  # fmt: skip
        self.prediction = nn.Sequential(*blocks_of(channels, blocks, state_residual_block))
        self.policy_head = nn.Sequential(nn.Conv2d(channels, 2, 1), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(2 * cells, action_size))  # fmt: skip
        self.value_head = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.ReLU(), nn.Flatten(),
                                        nn.Linear(cells, atoms))  # fmt: skip

    def represent(self, observations: torch.Tensor) -> torch.Tensor:
        return self.representation(observations.float() / 255.0)

    def dynamics(self, hidden: torch.Tensor, actions: torch.Tensor):
        batch, _, height, width = hidden.shape
        one_hot = torch.nn.functional.one_hot(actions, self.action_size).to(hidden.dtype)
        planes = one_hot[:, :, None, None].expand(batch, self.action_size, height, width)
        following = self.dynamics_tower(torch.cat([hidden, planes], dim=1))
        return following, self.reward_head(following)

    def predict(self, hidden: torch.Tensor):
        features = self.prediction(hidden)
        return self.policy_head(features), self.value_head(features)


# ---- the network as the search's model -----------------------------------------------------
class MuZeroModel:
    """The network as search's learned `Model` (`bellman.search.mcts`): one batched forward per
    call, latents kept as rows of a tensor on the network's device.

    Args:
        network: h, g, f (put in eval mode).
        observe: a real state -> the network's observation array (a board game's planes, or
            the env's observation itself).
        device: where the network lives.

    Attributes:
        calls: forward passes made so far.
    """

    def __init__(self, network: MuZeroNetwork, observe, device="cpu"):
        self.network = network.eval()
        self.observe = observe
        self.device = torch.device(device)
        self.calls = 0

    def _outputs(self, hidden, logits, value):
        self.calls += 1
        priors = torch.softmax(logits, dim=1).cpu().numpy()
        values = self.network.scalar(value).double().cpu().numpy()
        return priors, values, list(hidden)

    def initial_inference(self, states: list):
        observations = np.stack([self.observe(state) for state in states])
        with torch.inference_mode():
            hidden, _, logits, value = self.network.initial_inference(
                torch.from_numpy(observations).to(self.device)
            )
            return self._outputs(hidden, logits, value)

    def recurrent_inference(self, latents: list, actions: list[int]):
        with torch.inference_mode():
            hidden = torch.stack(latents)
            moves = torch.as_tensor(actions, dtype=torch.long, device=self.device)
            hidden, reward, logits, value = self.network.recurrent_inference(hidden, moves)
            rewards = self.network.reward_scalar(reward).double().cpu().numpy()
            return *self._outputs(hidden, logits, value), rewards


def network_size(network: nn.Module) -> int:
    """The number of parameters (for logs and model cards)."""
    return sum(math.prod(p.shape) for p in network.parameters())
