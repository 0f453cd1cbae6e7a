"""AlphaZero's network f_theta(s) = (p, v) as the search sees it, and how its weights travel.

    build_network      f_theta for a config and a game (step 1 of `alphazero`'s loop)
    NetworkEvaluator   the network as the search's `Evaluator`: one batched forward per call,
                       optionally through a TorchScript copy frozen for CPU inference
    weights_bytes      the weights as safetensors bytes (what self-play workers receive and what
    load_weights       the learner keeps as its best player), and back
    load_network       a checkpoint's trained f_theta, checked key by key (`torch_state`)
    check_finite       every float tensor of a network (weights and BatchNorm statistics) finite
    set_learning_rate  the step size at a move of the run (`lr_final_fraction`)     } AlphaZero's
    gradient_steps     an iteration's gradient steps (`train_steps`, `replay_ratio`) } and MuZero's

The architecture itself is `bellman.nets.AlphaZeroNetwork`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from bellman.errors import NonFiniteError
from bellman.games import Game
from bellman.nets import AlphaZeroNetwork
from bellman.torch_state import load_module, load_weights, weights_bytes  # noqa: F401 (re-exported)


def build_network(config, game: Game, *, scratch: bool = False) -> AlphaZeroNetwork:
    """f_theta for this config (an `AlphaZeroConfig` or `SelfPlaySettings`) and game (step 1).

    Args:
        config: has blocks, channels and value_hidden.
        game: gives the planes' shape and the number of actions.
        scratch: the weights will be overwritten: leave torch's generator untouched (so that
            loading a net never changes the random numbers a run draws).
    """
    with torch.random.fork_rng(devices=[], enabled=scratch):
        return AlphaZeroNetwork(
            game.observation_shape,
            game.action_size,
            blocks=config.blocks,
            channels=config.channels,
            value_hidden=config.value_hidden,
        )


class NetworkEvaluator:
    """The network as the search's `Evaluator`: ONE batched forward pass per call.

    Args:
        game: the game (gives the observation planes; its `observations(states)`, when it has
            one, builds the whole batch's planes at once).
        network: f_theta; put in eval mode (BatchNorm uses its running statistics).
        device: where the network lives.
        frozen: on the CPU, run a TorchScript copy of the network frozen for inference
            (BatchNorm folded into the convolutions, oneDNN kernels): about 1.4x faster, equal
            to the eager network up to float rounding. The copy is made here, so make a new
            evaluator after changing the weights. Self-play and a trained agent (`load_policy`,
            `bellman play` and `move`) use it; the arena searches with the eager network.

    Attributes:
        calls: forward passes made so far (for tests and benchmarks).
    """

    def __init__(
        self,
        game: Game,
        network: AlphaZeroNetwork,
        device: torch.device | str = "cpu",
        *,
        frozen: bool = False,
    ):
        self.game = game
        self.network = network.eval()
        self.device = torch.device(device)
        self.calls = 0
        self._forward = self.network
        if frozen and self.device.type == "cpu":
            self._forward = _frozen(self.network, game)
        self._observations = getattr(game, "observations", None)

    def evaluate(self, states: list) -> tuple[np.ndarray, np.ndarray]:
        """Priors softmax(logits) `[B, A]` and values `[B]`, for the player to move at each."""
        if self._observations is not None:
            planes = self._observations(states)
        else:
            planes = np.stack([self.game.observation(state) for state in states])
        with torch.inference_mode():
            logits, values = self._forward(torch.from_numpy(planes).to(self.device))
            priors = torch.softmax(logits, dim=1)
        self.calls += 1
        return priors.cpu().numpy(), values.cpu().numpy()


def _frozen(network: AlphaZeroNetwork, game: Game):
    """A TorchScript copy of `network` (eval mode) frozen and optimised for CPU inference; the
    network itself when TorchScript cannot trace it."""
    example = torch.zeros((2, *game.observation_shape))
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(network, example, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    except (RuntimeError, TypeError):  # pragma: no cover - a torch build without TorchScript
        return network


def load_network(arrays: dict[str, np.ndarray], config, game: Game) -> AlphaZeroNetwork:
    """The trained f_theta of a checkpoint (arrays `net/*`, BatchNorm statistics included), in
    eval mode on the CPU; a CheckpointError naming the tensor when one does not fit the
    config's network (key, shape or dtype)."""
    network = build_network(config, game, scratch=True)
    where = f"checkpoint (for {config.env}, {config.blocks} blocks of {config.channels} channels)"
    load_module(network, arrays, "net/", "cpu", where)
    return network.eval()


def set_learning_rate(optimizer: torch.optim.Optimizer, config, step: int) -> None:
    """The step size at self-play move `step` of a run of `config.steps` moves: linear from
    `config.learning_rate` to `learning_rate * lr_final_fraction` at `steps`, then held there
    (constant when lr_final_fraction = 1). A pure function of the step, so a resumed run needs no
    state; AlphaZero's and MuZero's learners call it before each iteration's gradient steps."""
    progress = min(1.0, step / config.steps)
    rate = config.learning_rate * (1.0 - (1.0 - config.lr_final_fraction) * progress)
    for group in optimizer.param_groups:
        group["lr"] = rate


def gradient_steps(config, new_positions: int) -> int:
    """An iteration's gradient steps: ceil(replay_ratio * new positions / batch_size) when
    `config.replay_ratio` > 0 (each new position trained on about replay_ratio times, however
    long the iteration's games were), else `config.train_steps`."""
    if config.replay_ratio > 0:
        return math.ceil(config.replay_ratio * new_positions / config.batch_size)
    return config.train_steps


def check_finite(network: torch.nn.Module, what: str, step: int) -> None:
    """Raise NonFiniteError naming the first float tensor of `network`'s state (parameters and
    buffers: BatchNorm's running means and variances too) that holds a NaN or an infinity."""
    for name, tensor in network.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = tensor[~torch.isfinite(tensor)].flatten()[0].item()
            raise NonFiniteError(
                f"{what} tensor '{name}' holds {bad} at step {step} (training diverged; "
                "lower learning_rate)"
            )
