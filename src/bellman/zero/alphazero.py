"""AlphaZero: a network f(s) = (p, v) trained only from self-play guided by PUCT search.

Silver et al., "Mastering the game of Go without human knowledge", Nature 550, 2017 (AlphaGo
Zero), and Silver et al., "A general reinforcement learning algorithm that masters chess, shogi,
and Go through self-play", Science 362, 2018 (AlphaZero). The loop, as the papers describe it:

     1. Initialise f_theta with random weights; the best player alpha_theta* = f_theta.
     2. Repeat (one iteration):
     3.   Self-play: play `games_per_iteration` games of the best player against itself. At
          every position s_t run an MCTS (`bellman.search.mcts`, Dirichlet noise at the root)
          guided by f_theta*, giving pi_t(a) = N(s_t, a)^(1/tau) / sum_b N(s_t, b)^(1/tau);
          play a_t ~ pi_t with tau = 1 for the first `temperature_moves` moves, then tau -> 0.
     4.   At the end of the game (result r_T), store (s_t, pi_t, z_t) for every move, with
          z_t = +-r_T from the point of view of the player to move at s_t; augment each with
          the board's symmetries; keep the last `replay_window` positions.
     5.   Training: `train_steps` times, sample a minibatch uniformly from the window and take a
          gradient step on
              l = (z - v)^2 - pi . log p + c ||theta||^2,        (p, v) = f_theta(s)
     6.   Evaluation (arena): play f_theta (with search, no noise, tau -> 0) against the best
          player and against fixed baselines (random, classic MCTS with random rollouts, alpha-
          beta); update the Elo table.
     7.   Gating (AlphaGo Zero): f_theta becomes the best player only if it won >= 55% of the
          games against it. AlphaZero drops the gate: self-play always uses the latest f_theta.

Deviations and details:
    - `steps` counts self-play moves (positions played, before augmentation); an iteration
      always finishes its games, so a run may end a few moves past its target. Metrics rows,
      checkpoints and Ctrl-C all take effect at the end of an iteration.
    - pi_t stored for training is always the visit distribution with tau = 1 (tau only shapes
      the move played), as in most reimplementations.
    - c ||theta||^2 is an explicit term of the loss over every parameter (BN scales and biases
      included); the optimizer's own weight decay is 0.
    - Game g of the run is played with generators seeded by (seed, g), in whichever worker
      process it runs, and results are stored in game order. A process plays a group of
      `concurrent_games` games at once (one network call per wave for the leaves of all their
      trees, `search_wave`); the groups are cut by game number, never by worker, so with the
      same seed a run is the same for any `workers` (bit-exact with workers = 1; across
      processes up to torch's floating point, which is deterministic on one thread).
    - Self-play evaluates with a TorchScript copy of f_theta frozen for inference (BatchNorm
      folded), equal to the eager network up to float rounding; the arena uses the eager one.
    - Options for small budgets, all off by default: playout cap randomisation
      (`fast_simulations`, `full_search_prob`; Wu, "Accelerating self-play learning in Go",
      2019): only the moves searched in full are recorded; a value target mixing z with the
      root's search value (`value_target_mix`); gradient steps per iteration set by a replay
      ratio (`replay_ratio`); a linear learning-rate decay over `steps` (`lr_final_fraction`).
    - Weights travel to the self-play workers as safetensors bytes, never as pickled modules.
    - The arena's Elo table anchors the random player at 0; ratings move by the Elo rule with
      K = `elo_k` after every arena game, both players (except the anchor) being updated.
"""

from __future__ import annotations

import math
import multiprocessing
import signal
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from bellman import seeding
from bellman.checkpoint import expect_array
from bellman.config import TrainConfig, choices, interval
from bellman.errors import CheckpointError, ConfigError, NonFiniteError
from bellman.games import Game, make_game
from bellman.games.base import play_moves
from bellman.nets import AlphaZeroNetwork, resolve_device
from bellman.run import Run
from bellman.search.alphabeta import AlphaBetaPlayer
from bellman.search.mcts import (
    MCTS,
    RandomRolloutEvaluator,
    SearchResult,
    best_move,
    search_wave,
    select_action,
    visit_policy,
)
from bellman.torch_state import load_optimizer, optimizer_arrays, state_dict_from_arrays


@dataclass(frozen=True)
class AlphaZeroConfig(TrainConfig):
    """Hyperparameters of AlphaZero; defaults are the papers' where they apply to small games."""

    env: str = ""
    """The game: tictactoe, connect4, go9, go13 or go19."""
    steps: int = field(default=1_000_000, metadata=interval("[1, inf)"))
    """Total self-play moves of the run (a resumed run continues to this target)."""
    log_every: int = field(default=1, metadata=interval("[1, inf)"))
    """Self-play moves between two rows of metrics.csv: a row ends each iteration that crosses a
    multiple of it or runs the arena (1: every iteration); losses are that iteration's."""
    simulations: int = field(default=800, metadata=interval("[1, inf)"))
    """MCTS simulations per self-play move (AlphaZero: 800)."""
    c_puct: float = field(default=1.25, metadata=interval("(0, inf)"))
    """PUCT exploration constant (AlphaZero's c_init: 1.25)."""
    dirichlet_alpha: float = field(default=0.3, metadata=interval("(0, inf)"))
    """Root noise concentration (AlphaZero: 0.3 chess, 0.15 shogi, 0.03 Go)."""
    dirichlet_fraction: float = field(default=0.25, metadata=interval("[0, 1]"))
    """Weight eps of the root noise (AlphaZero: 0.25)."""
    temperature_moves: int = field(default=30, metadata=interval("[0, inf)"))
    """Self-play moves played with tau = 1 (proportional to visits); tau -> 0 after them."""
    search_batch_size: int = field(default=8, metadata=interval("[1, inf)"))
    """Leaves evaluated per network call (AlphaGo Zero: 8), with a virtual loss."""
    virtual_loss: float = field(default=1.0, metadata=interval("[0, inf)"))
    """Virtual loss n_vl added along a pending descent."""
    solve: bool = False
    """MCTS-Solver in every search (self-play, arena, play, move): proven wins, losses and
    draws are backed up exactly and not searched further; the agent plays a proven win and
    never a proven loss while another move is open (`bellman.search.mcts`)."""
    blocks: int = field(default=19, metadata=interval("[0, 64]"))
    """Residual blocks of the network (AlphaZero: 19)."""
    channels: int = field(default=256, metadata=interval("[1, 1024]"))
    """Filters per convolution (AlphaZero: 256)."""
    value_hidden: int = field(default=256, metadata=interval("[1, 4096]"))
    """Units of the value head's hidden layer (AlphaZero: 256)."""
    replay_window: int = field(default=500_000, metadata=interval("[1, inf)"))
    """Positions (after symmetry augmentation) kept for training; the oldest are dropped."""
    batch_size: int = field(default=4096, metadata=interval("[1, inf)"))
    """Positions per minibatch (AlphaZero: 4096)."""
    optimizer: str = field(default="sgd", metadata=choices("sgd", "adam"))
    """sgd (with momentum, as the papers) or adam."""
    learning_rate: float = field(default=0.2, metadata=interval("(0, inf)"))
    """Step size (AlphaZero: 0.2, then annealed; constant here)."""
    momentum: float = field(default=0.9, metadata=interval("[0, 1)"))
    """SGD momentum (AlphaZero: 0.9); unused by adam."""
    weight_decay: float = field(default=1e-4, metadata=interval("[0, inf)"))
    """c of the loss's c ||theta||^2 term (AlphaZero: 1e-4)."""
    train_steps: int = field(default=100, metadata=interval("[0, inf)"))
    """Gradient steps per iteration."""
    games_per_iteration: int = field(default=25, metadata=interval("[1, inf)"))
    """Self-play games per iteration."""
    symmetries: bool = True
    """Store every symmetric copy of each position (8 for tic-tac-toe and Go, 2 for Connect 4)."""
    arena_games: int = field(default=10, metadata=interval("[0, inf)"))
    """Arena games against each opponent per evaluation (half as first player); 0: no arena."""
    arena_every: int = field(default=1, metadata=interval("[1, inf)"))
    """Iterations between two arena evaluations."""
    arena_simulations: int = field(default=100, metadata=interval("[1, inf)"))
    """MCTS simulations per move of the network player in the arena and in `bellman eval`."""
    baselines: str = "random,mcts,alphabeta"
    """Fixed arena opponents, comma-separated: random, mcts (classic MCTS with random
    rollouts), alphabeta (depth-limited alpha-beta); empty for none."""
    baseline_simulations: int = field(default=200, metadata=interval("[1, inf)"))
    """Simulations (one random rollout each) of the classic MCTS baseline."""
    baseline_depth: int = field(default=2, metadata=interval("[1, 64]"))
    """Plies of the alpha-beta baseline (with the game's heuristic when it has one)."""
    gating: bool = False
    """AlphaGo Zero's gate: self-play uses the best net, replaced only by a net that wins
    >= gating_threshold of its arena games against it. False: AlphaZero (always the latest)."""
    gating_threshold: float = field(default=0.55, metadata=interval("(0, 1]"))
    """Score (wins + draws / 2) against the best net needed to replace it (AlphaGo Zero: 0.55)."""
    elo_k: float = field(default=16.0, metadata=interval("(0, inf)"))
    """K factor of the arena's Elo updates."""
    eval_opponent: str = field(default="alphabeta", metadata=choices("random", "mcts", "alphabeta"))
    """The fixed opponent of `bellman eval` (the reward is the game's result for the agent)."""
    workers: int = field(default=1, metadata=interval("[1, 256]"))
    """Self-play processes (spawned); 1 plays in the learner's process."""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the learner's network runs: auto uses CUDA when present (self-play uses the CPU)."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch in every process (1 is fastest on small, shared machines)."""
    train_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch for the learner's gradient steps (step 5), which run while the
    self-play workers wait: with 2 workers on 2 cores, 2 uses the core that would idle (1.5x
    faster steps for the Connect Four net). Fixed per run, so a run stays reproducible."""
    concurrent_games: int = field(default=32, metadata=interval("[1, 4096]"))
    """Self-play games a process plays at once, the leaves of all their trees evaluated in ONE
    network call per wave (batches of up to concurrent_games * search_batch_size positions).
    The iteration's games are split into groups of this many by game number, whatever the
    number of workers, so a run is the same for any `workers`."""
    fast_simulations: int = field(default=0, metadata=interval("[0, inf)"))
    """Playout cap randomisation (Wu, KataGo, 2019): when > 0, a move is searched with the full
    `simulations` (with root noise, recorded for training) only with probability
    full_search_prob, else with this many simulations (no noise, not recorded). 0: off."""
    full_search_prob: float = field(default=0.25, metadata=interval("[0, 1]"))
    """Share of full, recorded searches under playout cap randomisation (KataGo: 0.25)."""
    value_target_mix: float = field(default=0.0, metadata=interval("[0, 1]"))
    """lambda of the value target (1 - lambda) z + lambda q, q the root value of the move's
    search (from the mover's point of view); 0: the papers' z."""
    replay_ratio: float = field(default=0.0, metadata=interval("[0, inf)"))
    """When > 0, an iteration's gradient steps are ceil(replay_ratio * new positions (after
    augmentation) / batch_size): each new position is trained on about this many times,
    whatever the iteration's length. 0: `train_steps` per iteration."""
    lr_final_fraction: float = field(default=1.0, metadata=interval("(0, 1]"))
    """The learning rate decays linearly (in self-play moves) from learning_rate to this
    fraction of it at `steps`; 1: constant (the papers step it down at fixed points)."""

    def validate(self) -> None:
        if self.batch_size > self.replay_window:
            raise ConfigError(
                f"batch_size = {self.batch_size} is larger than replay_window = "
                f"{self.replay_window}; make replay_window >= batch_size"
            )
        if self.gating and self.arena_games == 0:
            raise ConfigError("gating needs arena games against the best net: set arena_games > 0")
        unknown = [name for name in self.baseline_names if name not in BASELINES]
        if unknown:
            raise ConfigError(
                f"baselines = '{self.baselines}' names unknown players {', '.join(unknown)}; "
                f"valid: {', '.join(BASELINES)} (comma-separated)"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device = cuda but no CUDA GPU is visible; use device = auto or cpu")

    @property
    def baseline_names(self) -> list[str]:
        """The fixed arena opponents, in order."""
        return [name.strip() for name in self.baselines.split(",") if name.strip()]


Config = AlphaZeroConfig
BASELINES = ("random", "mcts", "alphabeta")
"""The fixed opponents the arena knows."""


# ---- the network and its evaluator --------------------------------------------------------
def build_network(config, game: Game, *, scratch: bool = False) -> AlphaZeroNetwork:
    """f_theta for this config (or `SelfPlaySettings`) and game (step 1).

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


def weights_bytes(network: torch.nn.Module) -> bytes:
    """The network's state dict as safetensors bytes (what self-play workers receive)."""
    return save_tensors({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()})


def load_weights(network: torch.nn.Module, blob: bytes) -> None:
    """Load safetensors bytes made by `weights_bytes` into `network`."""
    network.load_state_dict(load_tensors(blob))


# ---- steps 3-4: self-play -----------------------------------------------------------------
@dataclass(frozen=True)
class SelfPlaySettings:
    """What a self-play worker needs besides the weights (plain values: cheap to send)."""

    game: str
    simulations: int
    c_puct: float
    dirichlet_alpha: float
    dirichlet_fraction: float
    temperature_moves: int
    search_batch_size: int
    virtual_loss: float
    blocks: int
    channels: int
    value_hidden: int
    torch_threads: int
    fast_simulations: int = 0
    full_search_prob: float = 0.25
    value_target_mix: float = 0.0
    solve: bool = False

    @classmethod
    def of(cls, config: AlphaZeroConfig) -> SelfPlaySettings:
        names = cls.__dataclass_fields__
        return cls(**{n: getattr(config, n) for n in names if n != "game"}, game=config.env)


@dataclass
class GameRecord:
    """One self-play game: T positions with their search policies and final results.

    Attributes:
        planes: float32 `[T, C, H, W]`, s_t from the mover's point of view.
        policies: float32 `[T, A]`, pi_t (visit distribution, tau = 1).
        outcomes: float32 `[T]`, z_t for the player to move at s_t (mixed with the root values
            when `value_target_mix` > 0).
        first_player_result: +1 / 0 / -1, the result for player 0.
    """

    planes: np.ndarray
    policies: np.ndarray
    outcomes: np.ndarray
    first_player_result: float
    played: int = -1
    """Moves played in the game (more than the T recorded under playout cap randomisation);
    -1: every move was recorded."""

    @property
    def moves(self) -> int:
        """Self-play moves of the game (what `steps` counts)."""
        return len(self.outcomes) if self.played < 0 else self.played


def game_seed(seed: int, number: int) -> np.random.SeedSequence:
    """The seed of self-play game `number` of a run seeded with `seed`."""
    return np.random.SeedSequence([seed, number])


def final_outcomes(game: Game, movers: list[int], final_state: Any) -> np.ndarray:
    """Step 4's z_t: the final result seen by the player to move at each position.

    Args:
        game: the game.
        movers: `[T]` the player to move at each stored position.
        final_state: the terminal state.

    Returns:
        float32 `[T]`: +1 if that player won, -1 if lost, 0 for a draw.
    """
    last_mover = game.to_play(final_state)
    result = float(game.outcome(final_state))  # for the player to move at the end
    return np.array([result if p == last_mover else -result for p in movers], np.float32)


class SelfPlayGame:
    """One self-play game in progress (step 3), searched in steps so that many games can share
    the network calls (`play_self_play_games`).

    Playout cap randomisation (`fast_simulations` > 0): each move is a full search (noise,
    recorded) with probability `full_search_prob`, else a fast one (no noise, not recorded).
    """

    def __init__(self, game: Game, evaluator, settings: SelfPlaySettings, seed):
        move_seed, noise_seed = seed.spawn(2)
        self.game, self.settings = game, settings
        self.rng = np.random.default_rng(move_seed)
        self.mcts = MCTS(
            game,
            evaluator,
            simulations=settings.simulations,
            c_puct=settings.c_puct,
            dirichlet_alpha=settings.dirichlet_alpha,
            dirichlet_fraction=settings.dirichlet_fraction,
            batch_size=settings.search_batch_size,
            virtual_loss=settings.virtual_loss,
            seed=int(noise_seed.generate_state(1)[0]),
            solve=settings.solve,
        )
        self.state = game.initial_state()
        self.played = 0
        self.full = True
        self.planes: list[np.ndarray] = []
        self.policies: list[np.ndarray] = []
        self.movers: list[int] = []
        self.root_values: list[float] = []

    @property
    def over(self) -> bool:
        return self.game.is_terminal(self.state)

    def begin_move(self) -> None:
        """Start the search of the next move (full or fast, see the class docstring)."""
        settings = self.settings
        self.full = True
        if settings.fast_simulations > 0:
            self.full = bool(self.rng.random() < settings.full_search_prob)
        simulations = settings.simulations if self.full else settings.fast_simulations
        self.mcts.begin(self.state, add_noise=self.full, simulations=simulations)

    def play_move(self) -> None:
        """The search is done: record (s_t, pi_t) if it was a full search, play a_t ~ pi_t."""
        game, result = self.game, self.mcts.end()
        if self.full:
            self.planes.append(game.observation(self.state))
            self.policies.append(visit_policy(result.visit_counts, 1.0).astype(np.float32))
            self.movers.append(game.to_play(self.state))
            self.root_values.append(result.value)
        tau = 1.0 if self.played < self.settings.temperature_moves else 0.0
        action = select_action(result.visit_counts, tau, self.rng)
        self.state = game.apply(self.state, action)
        self.mcts.advance(action)
        self.played += 1

    def record(self) -> GameRecord:
        """Step 4: the finished game's (s_t, pi_t, z_t)."""
        game, state = self.game, self.state
        last_mover = game.to_play(state)
        result = float(game.outcome(state))  # for the player to move at the end
        first = result if last_mover == 0 else -result
        if not self.movers:  # every move was a fast search: nothing to train on
            shape = (0, *game.observation_shape)
            empty = np.zeros(0, np.float32)
            return GameRecord(
                np.zeros(shape, np.float32), np.zeros((0, game.action_size), np.float32),
                empty, first, self.played,
            )  # fmt: skip
        outcomes = final_outcomes(game, self.movers, state)  # 4. z_t for every move
        mix = self.settings.value_target_mix
        if mix > 0:
            outcomes = ((1 - mix) * outcomes + mix * np.array(self.root_values)).astype(np.float32)
        return GameRecord(
            np.stack(self.planes), np.stack(self.policies), outcomes, first, self.played
        )


def play_self_play_games(
    game: Game, evaluator, settings: SelfPlaySettings, seeds: list[np.random.SeedSequence]
) -> list[GameRecord]:
    """Step 3 for several games at once: each game has its own tree, and every wave evaluates
    the leaves of all the games still searching in ONE evaluator call (`search_wave`). A game
    that finishes its search plays its move and starts the next search in the same wave.

    With an evaluator whose outputs do not depend on the rest of the batch, each game is the
    same as when played alone; with a network that holds up to floating-point rounding, so the
    games are grouped by number, independently of the number of processes (`_self_play`).
    """
    games = [SelfPlayGame(game, evaluator, settings, seed) for seed in seeds]
    active = [g for g in games if not g.over]
    for g in active:
        g.begin_move()
    while active:
        search_wave([g.mcts for g in active], evaluator)
        for g in active:
            if g.mcts.done:
                g.play_move()
                if not g.over:
                    g.begin_move()
        active = [g for g in active if not g.over]
    return [g.record() for g in games]


def play_self_play_game(
    game: Game, evaluator, settings: SelfPlaySettings, seed: np.random.SeedSequence
) -> GameRecord:
    """Step 3: one game of the network against itself, with search at every move."""
    return play_self_play_games(game, evaluator, settings, [seed])[0]


_WORKER: dict[str, Any] = {}


def _worker_setup(settings: SelfPlaySettings) -> tuple[Game, AlphaZeroNetwork]:
    """This process's game and self-play network (built once per process)."""
    if _WORKER.get("settings") != settings:
        torch.set_num_threads(settings.torch_threads)
        game = make_game(settings.game)
        network = build_network(settings, game, scratch=True)
        _WORKER.update(settings=settings, game=game, network=network)
    return _WORKER["game"], _WORKER["network"]


def self_play_games(
    task: tuple[bytes, SelfPlaySettings, int, list[int]],
) -> list[tuple[int, GameRecord]]:
    """Play the games numbered `numbers`, all at once, with the weights given (a worker's job;
    also run in the learner's process when workers = 1). Returns (number, record) pairs."""
    blob, settings, seed, numbers = task
    game, network = _worker_setup(settings)
    load_weights(network, blob)
    evaluator = NetworkEvaluator(game, network, frozen=True)
    seeds = [game_seed(seed, n) for n in numbers]
    return list(zip(numbers, play_self_play_games(game, evaluator, settings, seeds), strict=True))


def augment(game: Game, record: GameRecord, symmetries: bool):
    """Step 4's augmentation: every symmetric copy of each position (or just the position).

    Returns:
        (planes `[T * S, C, H, W]`, policies `[T * S, A]`, outcomes `[T * S]`), S symmetries.
    """
    if not symmetries or len(record.outcomes) == 0:
        return record.planes, record.policies, record.outcomes
    planes, policies, outcomes = [], [], []
    for s, pi, z in zip(record.planes, record.policies, record.outcomes, strict=True):
        for sym_planes, sym_pi in game.symmetries(s, pi):
            planes.append(sym_planes)
            policies.append(sym_pi)
            outcomes.append(z)
    return np.stack(planes), np.stack(policies), np.array(outcomes, np.float32)


class ReplayWindow:
    """The last `capacity` (s, pi, z) positions, as a ring of arrays (step 4).

    Args:
        capacity: positions kept.
        observation_shape: `[C, H, W]`.
        action_size: A.
    """

    def __init__(self, capacity: int, observation_shape: tuple[int, ...], action_size: int):
        self.capacity = capacity
        self.planes = np.zeros((capacity, *observation_shape), np.float32)
        self.policies = np.zeros((capacity, action_size), np.float32)
        self.outcomes = np.zeros(capacity, np.float32)
        self.size = 0
        self.position = 0

    def __len__(self) -> int:
        return self.size

    def add(self, planes: np.ndarray, policies: np.ndarray, outcomes: np.ndarray) -> None:
        """Append N positions, overwriting the oldest when full."""
        for start in range(0, len(outcomes), self.capacity):
            chunk = slice(start, start + self.capacity)
            p, pi, z = planes[chunk], policies[chunk], outcomes[chunk]
            index = (self.position + np.arange(len(z))) % self.capacity
            self.planes[index], self.policies[index], self.outcomes[index] = p, pi, z
            self.position = int((self.position + len(z)) % self.capacity)
            self.size = min(self.capacity, self.size + len(z))

    def sample(self, batch_size: int, rng: np.random.Generator):
        """A uniform minibatch (with replacement): (planes, policies, outcomes)."""
        index = rng.integers(0, self.size, batch_size)
        return self.planes[index], self.policies[index], self.outcomes[index]

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "replay/planes": self.planes,
            "replay/policies": self.policies,
            "replay/outcomes": self.outcomes,
        }

    def load(self, arrays: dict[str, np.ndarray], size: int, position: int) -> None:
        for name, value in self.arrays().items():
            value[...] = expect_array(arrays, name, value.shape, "checkpoint")
        self.size, self.position = int(size), int(position)


# ---- step 5: training ---------------------------------------------------------------------
def alphazero_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    target_policies: torch.Tensor,
    target_outcomes: torch.Tensor,
    parameters: list[torch.Tensor],
    c: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 5's l = (z - v)^2 - pi . log p + c ||theta||^2, averaged over the batch.

    Args:
        logits: `[B, A]` policy logits (p = softmax(logits)).
        values: `[B]` v.
        target_policies: `[B, A]` pi.
        target_outcomes: `[B]` z.
        parameters: theta, every parameter of the network.
        c: the L2 coefficient.

    Returns:
        (l, mean (z - v)^2, mean -pi . log p).
    """
    value_loss = ((target_outcomes - values) ** 2).mean()
    policy_loss = -(target_policies * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    l2 = sum(p.pow(2).sum() for p in parameters)
    return value_loss + policy_loss + c * l2, value_loss, policy_loss


# ---- steps 6-7: the arena and the Elo table ------------------------------------------------
def elo_expected(rating: float, opponent: float) -> float:
    """Expected score of a player rated `rating` against `opponent`: 1 / (1 + 10^(d / 400))."""
    return 1.0 / (1.0 + 10.0 ** ((opponent - rating) / 400.0))


def elo_update(rating: float, opponent: float, score: float, k: float) -> tuple[float, float]:
    """Both ratings after one game where the first player scored `score` (1, 0.5 or 0)."""
    delta = k * (score - elo_expected(rating, opponent))
    return rating + delta, opponent - delta


class EloTable:
    """Ratings of every player the arena has seen; `anchor` (random) stays at 0.

    Args:
        k: K factor.
        ratings: name -> rating to start from (a checkpoint's table).
    """

    anchor = "random"

    def __init__(self, k: float, ratings: dict[str, float] | None = None):
        self.k = k
        self.ratings: dict[str, float] = dict(ratings or {self.anchor: 0.0})

    def get(self, name: str, default: float = 0.0) -> float:
        return self.ratings.setdefault(name, default)

    def record(self, player: str, opponent: str, score: float) -> None:
        """Update both ratings after a game in which `player` scored `score`."""
        new, other = elo_update(self.get(player), self.get(opponent), score, self.k)
        if player != self.anchor:
            self.ratings[player] = new
        if opponent != self.anchor:
            self.ratings[opponent] = other


def play_match(game: Game, first, second) -> float:
    """One game between two move functions (state -> action); the result for `first`."""
    state = game.initial_state()
    players = (first, second)
    while not game.is_terminal(state):
        state = game.apply(state, players[game.to_play(state)](state))
    result = float(game.outcome(state))
    return result if game.to_play(state) == 0 else -result


def agent_search(game: Game, evaluator, simulations: int, config: AlphaZeroConfig) -> MCTS:
    """The search of the trained agent (arena, `bellman play` and `move`, benchmarks): the run's
    c_puct, leaf batch, virtual loss and solver; no root noise."""
    return MCTS(
        game,
        evaluator,
        simulations=simulations,
        c_puct=config.c_puct,
        batch_size=config.search_batch_size,
        virtual_loss=config.virtual_loss,
        solve=config.solve,
    )


def agent_move(result: SearchResult, config: AlphaZeroConfig) -> int:
    """The agent's move from its search: the most visited; with `config.solve`, a proven win
    first and never a proven loss (`best_move`)."""
    return best_move(result) if config.solve else int(np.argmax(result.visit_counts))


def search_player(game: Game, evaluator, simulations: int, config: AlphaZeroConfig):
    """state -> `agent_move` of a fresh `agent_search` (the arena's net player)."""
    mcts = agent_search(game, evaluator, simulations, config)

    def act(state) -> int:
        mcts.reset()
        return agent_move(mcts.search(state), config)

    return act


def baseline_player(name: str, game: Game, config: AlphaZeroConfig, seed: int):
    """A fixed opponent: `random`, `mcts` (random rollouts) or `alphabeta`; state -> action."""
    if name == "random":
        rng = np.random.default_rng(seed)
        return lambda state: int(rng.choice(game.legal_actions(state)))
    if name == "mcts":
        rollouts = RandomRolloutEvaluator(game, rollouts=1, seed=seed)
        mcts = MCTS(
            game, rollouts, simulations=config.baseline_simulations, batch_size=1,
            virtual_loss=0.0, c_puct=config.c_puct,
        )  # fmt: skip

        def act(state) -> int:
            mcts.reset()
            return int(np.argmax(mcts.search(state).visit_counts))

        return act
    if name == "alphabeta":
        heuristic = getattr(game, "heuristic", None)
        player = AlphaBetaPlayer(game, config.baseline_depth, heuristic=heuristic, seed=seed)
        return player.act
    raise ConfigError(f"unknown baseline '{name}'; valid: {', '.join(BASELINES)}")


def arena(game: Game, agent, opponent, games: int) -> dict[str, float]:
    """`games` games of `agent` against `opponent`, alternating who starts (the agent first in
    even games). Returns win, draw, loss rates and score = win + draw / 2; `results` the list."""
    results = []
    for g in range(games):
        if g % 2 == 0:
            results.append(play_match(game, agent, opponent))
        else:
            results.append(-play_match(game, opponent, agent))
    wins = sum(r > 0 for r in results) / games
    draws = sum(r == 0 for r in results) / games
    return {"win": wins, "draw": draws, "loss": 1 - wins - draws, "score": wins + draws / 2,
            "results": results}  # fmt: skip


# ---- the learner --------------------------------------------------------------------------
class Learner:
    """f_theta, the best net, the optimizer, the window, the Elo table and the counters:
    everything a checkpoint holds."""

    def __init__(self, config: AlphaZeroConfig, game: Game):
        self.config = config
        self.game = game
        self.device = resolve_device(config.device)
        self.rng = seeding.seed_everything(config.seed)
        torch.manual_seed(config.seed)
        self.network = build_network(config, game).to(self.device)  # 1. random weights
        self.parameters = list(self.network.parameters())
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                self.parameters, lr=config.learning_rate, momentum=config.momentum
            )
        else:
            self.optimizer = torch.optim.Adam(self.parameters, lr=config.learning_rate)
        self.best = weights_bytes(self.network)  # alpha_theta* = f_theta
        self.window = ReplayWindow(config.replay_window, game.observation_shape, game.action_size)
        self.elo = EloTable(config.elo_k)
        self.step = 0
        self.games = 0
        self.iteration = 0
        self.updates = 0
        self.best_generation = 0

    def set_learning_rate(self) -> None:
        """The learning rate at this step: linear from learning_rate to learning_rate *
        lr_final_fraction at `steps` (constant when lr_final_fraction = 1)."""
        config = self.config
        progress = min(1.0, self.step / config.steps)
        rate = config.learning_rate * (1.0 - (1.0 - config.lr_final_fraction) * progress)
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def train_step(self) -> tuple[float, float, float]:
        """Step 5 once: sample a minibatch and descend l. Returns (l, value loss, policy loss)."""
        planes, policies, outcomes = self.window.sample(self.config.batch_size, self.rng)
        device = self.device
        self.network.train()
        logits, values = self.network(torch.from_numpy(planes).to(device))
        loss, value_loss, policy_loss = alphazero_loss(
            logits, values, torch.from_numpy(policies).to(device),
            torch.from_numpy(outcomes).to(device), self.parameters, self.config.weight_decay,
        )  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        return float(loss.detach()), float(value_loss.detach()), float(policy_loss.detach())

    # ---- checkpoints -----------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"net/{k}": v.cpu().numpy() for k, v in self.network.state_dict().items()}
        best = load_tensors(self.best)
        arrays.update({f"best/{k}": v.numpy() for k, v in best.items()})
        arrays.update(optimizer_arrays(self.optimizer))
        arrays.update(self.window.arrays())
        arrays["torch_rng"] = torch.get_rng_state().numpy()
        return arrays

    def state(self) -> dict[str, Any]:
        return {
            "game": self.game.name,
            "observation_shape": list(self.game.observation_shape),
            "action_size": self.game.action_size,
            "games": self.games,
            "iteration": self.iteration,
            "updates": self.updates,
            "best_generation": self.best_generation,
            "replay_size": self.window.size,
            "replay_position": self.window.position,
            "elo": self.elo.ratings,
            "agent_rng": seeding.generator_state(self.rng),
            "python_rng": seeding.python_random_state(),
        }

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        check_checkpoint(arrays, None, self.config)
        state = meta["state"]
        self.network.load_state_dict(state_dict_from_arrays(arrays, "net/", self.device))
        best = build_network(self.config, self.game, scratch=True)
        best.load_state_dict(state_dict_from_arrays(arrays, "best/", "cpu"))
        self.best = weights_bytes(best)
        load_optimizer(self.optimizer, arrays)
        self.window.load(arrays, state["replay_size"], state["replay_position"])
        torch.set_rng_state(torch.from_numpy(arrays["torch_rng"].copy()))
        self.step = int(meta["step"])
        self.games, self.iteration = int(state["games"]), int(state["iteration"])
        self.updates, self.best_generation = int(state["updates"]), int(state["best_generation"])
        self.elo = EloTable(self.config.elo_k, state["elo"])
        seeding.set_generator_state(self.rng, state["agent_rng"])
        seeding.set_python_random_state(state["python_rng"])


# ---- the module protocol (see bellman.api) -------------------------------------------------
def game_of(config: AlphaZeroConfig) -> Game:
    """The config's game; ConfigError naming the valid games for an unknown name."""
    return make_game(config.env)


class GameEnv(gym.Env):
    """A whole game against a fixed opponent, as a gymnasium env (what `bellman eval` plays).

    The agent plays first after `reset(seed=s)` with s even and second with s odd. The
    observation is the move sequence so far, int64 `[max_moves]` padded with -1, so a policy
    can rebuild the exact state (Go's superko needs the history). The reward, at the end, is
    the result for the agent: +1 win, 0 draw, -1 loss (an illegal agent move loses).

    Args:
        game: the game.
        opponent: a name in `BASELINES`.
        config: gives the baselines' settings.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, game: Game, opponent: str, config: AlphaZeroConfig, render_mode=None):
        self.game = game
        self.opponent_name = opponent
        self.config = config
        self.render_mode = render_mode
        self.max_moves = int(getattr(game, "max_moves", None) or math.prod(game.board_shape))
        self.observation_space = gym.spaces.Box(
            -1, game.action_size - 1, (self.max_moves,), np.int64
        )
        self.action_space = gym.spaces.Discrete(game.action_size)
        self.state = game.initial_state()
        self.moves: list[int] = []

    def _obs(self) -> np.ndarray:
        obs = np.full(self.max_moves, -1, np.int64)
        obs[: len(self.moves)] = self.moves
        return obs

    def _play(self, action: int) -> None:
        self.state = self.game.apply(self.state, action)
        self.moves.append(int(action))

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        seed = 0 if seed is None else int(seed)
        self.agent = seed % 2
        self.opponent = baseline_player(self.opponent_name, self.game, self.config, seed)
        self.state, self.moves = self.game.initial_state(), []
        if self.agent == 1:
            self._play(self.opponent(self.state))
        return self._obs(), {}

    def _result(self) -> float:
        result = float(self.game.outcome(self.state))
        return result if self.game.to_play(self.state) == self.agent else -result

    def step(self, action):
        if not self.game.legal_mask(self.state)[int(action)]:
            return self._obs(), -1.0, True, False, {"illegal": True}
        self._play(int(action))
        if not self.game.is_terminal(self.state):
            self._play(self.opponent(self.state))
        done = self.game.is_terminal(self.state)
        return self._obs(), self._result() if done else 0.0, done, False, {}

    def render(self):
        return self.game.render(self.state)


def make_eval_env(config: AlphaZeroConfig, render_mode: str | None = None) -> GameEnv:
    """The game against `config.eval_opponent` (see `GameEnv`)."""
    return GameEnv(game_of(config), config.eval_opponent, config, render_mode=render_mode)


def make_train_env(config: AlphaZeroConfig) -> GameEnv:
    """Self-play needs only the game; this env carries it (`env.game`) and checks the name."""
    return make_eval_env(config)


def check_env(env: GameEnv, config: AlphaZeroConfig | None = None) -> None:
    """The env must carry a board game (it does when made by `make_train_env`)."""
    if not hasattr(env, "game"):
        raise ConfigError("AlphaZero trains on board games: tictactoe, connect4, go9, go13, go19")


def check_checkpoint(arrays: dict[str, np.ndarray], env, config: AlphaZeroConfig) -> None:
    """The checkpoint's networks and window have the shapes this config's game gives; a clear
    CheckpointError otherwise (e.g. a net trained on another game or Go board size)."""
    game = game_of(config)
    network = build_network(config, game, scratch=True)
    where = f"checkpoint (for {config.env}, {config.blocks} blocks of {config.channels} channels)"
    prefixes = ("net/", "best/") if any(k.startswith("best/") for k in arrays) else ("net/",)
    for prefix in prefixes:
        for key, value in network.state_dict().items():
            expect_array(arrays, prefix + key, tuple(value.shape), where)
    if "replay/planes" in arrays:
        size = config.replay_window
        expect_array(arrays, "replay/planes", (size, *game.observation_shape), where)
        expect_array(arrays, "replay/policies", (size, game.action_size), where)
        expect_array(arrays, "replay/outcomes", (size,), where)


def load_network(arrays: dict[str, np.ndarray], config: AlphaZeroConfig, game: Game):
    """The trained f_theta of a checkpoint, in eval mode on the CPU."""
    check_checkpoint(arrays, None, config)
    network = build_network(config, game, scratch=True)
    network.load_state_dict(state_dict_from_arrays(arrays, "net/", "cpu"))
    return network.eval()


def load_policy(arrays: dict[str, np.ndarray], env: GameEnv, config: AlphaZeroConfig, seed: int):
    """obs (the move sequence, see `GameEnv`) -> the agent's move, searched with
    `arena_simulations` simulations, no noise, the most visited move."""
    torch.set_num_threads(config.torch_threads)
    game = env.game
    evaluator = NetworkEvaluator(game, load_network(arrays, config, game), frozen=True)
    act = search_player(game, evaluator, config.arena_simulations, config)

    def policy(obs: np.ndarray) -> int:
        moves = [int(a) for a in np.asarray(obs) if a >= 0]
        return act(play_moves(game, moves))

    return policy


# ---- the loop -----------------------------------------------------------------------------
def _self_play(learner: Learner, config: AlphaZeroConfig, pool) -> list[GameRecord]:
    """Step 3 for one iteration: the games numbered games, games + 1, ... in game order."""
    settings = SelfPlaySettings.of(config)
    numbers = list(range(learner.games, learner.games + config.games_per_iteration))
    size = config.concurrent_games  # groups by game number: the same for any `workers`
    tasks = [(learner.best, settings, config.seed, numbers[i : i + size])
             for i in range(0, len(numbers), size)]  # fmt: skip
    if pool is None:
        played = [pair for task in tasks for pair in self_play_games(task)]
    else:
        played = [pair for chunk in pool.map(self_play_games, tasks, chunksize=1)
                  for pair in chunk]  # fmt: skip
    return [record for _, record in sorted(played, key=lambda pair: pair[0])]


def _evaluate(learner: Learner, config: AlphaZeroConfig) -> dict[str, float]:
    """Steps 6-7: the arena against the best net and the baselines; Elo; the gate."""
    game, iteration = learner.game, learner.iteration
    name = f"net-{iteration}"
    best_name = f"net-{learner.best_generation}"
    learner.elo.ratings.setdefault(name, learner.elo.get(best_name))
    evaluator = NetworkEvaluator(game, learner.network, learner.device)
    agent = search_player(game, evaluator, config.arena_simulations, config)
    best_network = build_network(config, game, scratch=True)
    load_weights(best_network, learner.best)
    opponents = {"best": search_player(
        game, NetworkEvaluator(game, best_network), config.arena_simulations, config
    )}  # fmt: skip
    for number, baseline in enumerate(config.baseline_names):
        seed = int(np.random.SeedSequence([config.seed, iteration, number]).generate_state(1)[0])
        opponents[baseline] = baseline_player(baseline, game, config, seed)
    columns: dict[str, float] = {}
    for label, opponent in opponents.items():
        outcome = arena(game, agent, opponent, config.arena_games)
        rated = best_name if label == "best" else label
        for result in outcome["results"]:
            learner.elo.record(name, rated, (result + 1) / 2)
        columns[f"score_vs_{label}"] = outcome["score"]
        columns[f"win_vs_{label}"] = outcome["win"]
    learner.network.train()
    # 7. The gate: AlphaGo Zero replaces the best net only after a clear win.
    if not config.gating or columns["score_vs_best"] >= config.gating_threshold:
        learner.best, learner.best_generation = weights_bytes(learner.network), iteration
    columns["elo"] = learner.elo.ratings[name]
    return columns


def _arena_columns(config: AlphaZeroConfig) -> list[str]:
    names = ["best", *config.baseline_names]
    return ["elo"] + [f"{kind}_vs_{n}" for n in names for kind in ("score", "win")]


def train(config: AlphaZeroConfig, env: GameEnv, run: Run) -> Learner:
    """Run AlphaZero for `config.steps` self-play moves (the module docstring's steps 1-7)."""
    torch.set_num_threads(config.torch_threads)
    game = env.game
    learner = Learner(config, game)  # 1. random f_theta, best = f_theta
    if run.restored is not None:
        learner.restore(*run.restored)
    pool = None
    if config.workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(
            config.workers, initializer=_ignore_interrupts
        )
    try:
        with run.session(start_step=learner.step):
            while learner.step < config.steps and not run.stop_requested:  # 2. iterations
                _iteration(learner, config, run, pool)
                if run.checkpoint_due(learner.step) or learner.step >= config.steps:
                    run.save(learner.step, learner.arrays(), learner.state())
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return learner


def _train_steps(config: AlphaZeroConfig, new_positions: int) -> int:
    """Step 5's number of gradient steps this iteration (`train_steps`, or by `replay_ratio`)."""
    if config.replay_ratio > 0:
        return math.ceil(config.replay_ratio * new_positions / config.batch_size)
    return config.train_steps


def _ignore_interrupts() -> None:
    """Self-play workers leave Ctrl-C to the learner, which stops at the end of its iteration."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _iteration(learner: Learner, config: AlphaZeroConfig, run: Run, pool) -> None:
    """One pass of steps 3-7, and a metrics row when one is due."""
    game, before = learner.game, learner.step
    started = time.perf_counter()
    records = _self_play(learner, config, pool)  # 3. self-play with the best net
    new_positions = 0
    for record in records:  # 4. (s, pi, z) with symmetries into the window
        planes, policies, outcomes = augment(game, record, config.symmetries)
        learner.window.add(planes, policies, outcomes)
        new_positions += len(outcomes)
        learner.games += 1
        learner.step += record.moves
        run.log_episode(learner.step, record.first_player_result, record.moves)
    selfplay_seconds = time.perf_counter() - started
    started = time.perf_counter()
    losses = []
    if len(learner.window) >= config.batch_size:  # 5. gradient steps on l
        learner.set_learning_rate()
        torch.set_num_threads(config.train_threads)
        try:
            losses = [learner.train_step() for _ in range(_train_steps(config, new_positions))]
        finally:
            torch.set_num_threads(config.torch_threads)
        if losses and not math.isfinite(losses[-1][0]):
            raise NonFiniteError(f"loss is {losses[-1][0]} at step {learner.step}")
    train_seconds = time.perf_counter() - started
    learner.iteration += 1
    started = time.perf_counter()
    columns = dict.fromkeys(_arena_columns(config), math.nan)
    arena_due = config.arena_games and learner.iteration % config.arena_every == 0
    if arena_due:
        columns.update(_evaluate(learner, config))  # 6.-7. arena, Elo, gate
    elif not config.gating:
        learner.best, learner.best_generation = weights_bytes(learner.network), learner.iteration
    crossed = learner.step // config.log_every > before // config.log_every
    if not (arena_due or crossed or learner.step >= config.steps):
        return
    mean = np.mean(losses, axis=0) if losses else [math.nan] * 3
    run.log(
        learner.step,
        iteration=learner.iteration,
        games=learner.games,
        loss=float(mean[0]),
        value_loss=float(mean[1]),
        policy_loss=float(mean[2]),
        updates=learner.updates,
        replay_size=len(learner.window),
        best_generation=learner.best_generation,
        **columns,
        selfplay_seconds=round(selfplay_seconds, 3),
        train_seconds=round(train_seconds, 3),
        arena_seconds=round(time.perf_counter() - started, 3),
    )


def check_game_matches(run_config: AlphaZeroConfig, game_name: str, run_dir) -> None:
    """A checkpoint is only used on the game (and Go board size) it was trained on."""
    if run_config.env != game_name:
        raise CheckpointError(
            f"run '{run_dir}' was trained on '{run_config.env}', not '{game_name}'; "
            f"use a run trained with --env {game_name}"
        )
