"""Steps 3-4 of AlphaZero (`bellman.zero.alphazero`): self-play games and the replay window.

SelfPlaySettings        what a self-play worker needs besides the weights (plain values)
SelfPlayGame            one game in progress; `play_self_play_games` plays many at once, the
                        leaves of all their trees evaluated in one network call per wave
self_play_games         a worker's job: the games numbered `numbers`, with the weights given
start_workers           the self-play processes, spawned (never forked: no CUDA context inherited)
play_groups             an iteration's groups of games, in the workers or here; gives up at a stop
game_seed               the seed of game g of a run: the same game in whichever process
final_outcomes          z_t, the final result seen by the player to move at each position
GameRecord              one finished game's (s_t, pi_t, z_t)
augment                 every symmetric copy of each position
ReplayWindow            the last `replay_window` positions, as a ring of arrays
"""

from __future__ import annotations

import math
import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bellman.errors import CheckpointError
from bellman.games import Game, make_game
from bellman.nets import AlphaZeroNetwork
from bellman.search.mcts import MCTS, play_together, select_action, visit_policy
from bellman.torch_state import check_arrays, flush_denormals
from bellman.zero.network import NetworkEvaluator, build_network, load_weights


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
    gumbel: bool = False
    max_considered: int = 16

    @classmethod
    def of(cls, config) -> SelfPlaySettings:
        """The settings of an `AlphaZeroConfig` (its `env` is the game's name)."""
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
    actions: list[int] = field(default_factory=list)
    """Every move of the game from the empty board (for its SGF record)."""

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
            gumbel=settings.gumbel,
            max_considered=settings.max_considered,
        )
        self.state = game.initial_state()
        self.played = 0
        self.full = True
        self.planes: list[np.ndarray] = []
        self.policies: list[np.ndarray] = []
        self.movers: list[int] = []
        self.root_values: list[float] = []
        self.actions: list[int] = []

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
        gumbel = result.improved_policy is not None  # Gumbel root: its policy and its action
        if self.full:
            self.planes.append(game.observation(self.state))
            target = result.improved_policy if gumbel else visit_policy(result.visit_counts, 1.0)
            self.policies.append(target.astype(np.float32))
            self.movers.append(game.to_play(self.state))
            self.root_values.append(result.value)
        tau = 1.0 if self.played < self.settings.temperature_moves else 0.0
        action = result.selected if gumbel else select_action(result.visit_counts, tau, self.rng)
        self.state = game.apply(self.state, action)
        self.mcts.advance(action)
        self.actions.append(int(action))
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
                empty, first, self.played, list(self.actions),
            )  # fmt: skip
        outcomes = final_outcomes(game, self.movers, state)  # 4. z_t for every move
        mix = self.settings.value_target_mix
        if mix > 0:
            outcomes = ((1 - mix) * outcomes + mix * np.array(self.root_values)).astype(np.float32)
        return GameRecord(
            np.stack(self.planes), np.stack(self.policies), outcomes, first, self.played,
            list(self.actions),
        )  # fmt: skip


def play_self_play_games(
    game: Game, evaluator, settings: SelfPlaySettings, seeds: list[np.random.SeedSequence]
) -> list[GameRecord]:
    """Step 3 for several games at once: each game has its own tree, and every wave evaluates
    the leaves of all the games still searching in ONE evaluator call; a game that finishes its
    search plays its move and starts the next search in the same wave (`search.play_together`).

    With an evaluator whose outputs do not depend on the rest of the batch, each game is the
    same as when played alone; with a network that holds up to floating-point rounding, so the
    games are grouped by number, independently of the number of processes (`alphazero`'s
    `_self_play`).
    """
    games = [SelfPlayGame(game, evaluator, settings, seed) for seed in seeds]
    play_together(games, evaluator)
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


def start_workers(workers: int):
    """A pool of `workers` self-play processes, started with spawn: a fresh interpreter each,
    so nothing of the learner's process is inherited (a forked CUDA context breaks the child
    when the learner's network is on a GPU; forked locks held by other threads deadlock it).
    The workers ignore Ctrl-C (the learner decides when to stop: `play_groups`) and flush
    subnormal floats to zero, as the learner does."""
    return multiprocessing.get_context("spawn").Pool(workers, initializer=_start_worker)


def idle_workers_note(workers: int, games_per_iteration: int, concurrent_games: int) -> str | None:
    """The run note when an iteration's groups of `concurrent_games` (cut by game number, the
    same for any number of workers) are fewer than the self-play workers; None otherwise."""
    groups = math.ceil(games_per_iteration / concurrent_games)
    if groups >= workers:
        return None
    return (
        f"only {groups} of the {workers} self-play workers had games: an iteration's "
        f"{games_per_iteration} games make {groups} group(s) of concurrent_games = "
        f"{concurrent_games}; set concurrent_games <= "
        f"{max(1, games_per_iteration // workers)} to keep every worker busy"
    )


def _start_worker() -> None:
    """A worker leaves Ctrl-C (sent to the whole process group by a terminal) to the learner,
    and flushes subnormal floats to zero as the learner does (`flush_denormals`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    flush_denormals(True)


def play_groups(
    tasks: list[tuple],
    pool,
    stop_requested: Callable[[], bool],
    poll_seconds: float = 0.1,
    play: Callable[[tuple], list[tuple[int, Any]]] = self_play_games,
) -> list[tuple[int, Any]] | None:
    """Play every task of an iteration (`play`: AlphaZero's `self_play_games`, MuZero's
    `muzero.play_group`), in the pool's workers or, without a pool, here one group after the
    other. A stop asked for meanwhile (Ctrl-C, SIGTERM) is
    noticed within `poll_seconds` (between groups without a pool): the iteration is given up
    and None returned, so the caller saves the state it had before the iteration (self-play
    changes nothing of it: the games' seeds come from their numbers) and exits in seconds,
    instead of waiting for games that may take minutes. The workers still playing are the
    caller's to terminate.

    Returns:
        the (number, record) pairs in game order, or None when a stop came first.
    """
    played: list[tuple[int, GameRecord]] = []
    if pool is None:
        for task in tasks:
            if stop_requested():
                return None
            played.extend(play(task))
    else:
        pending = pool.map_async(play, tasks, chunksize=1)
        while not pending.ready():
            if stop_requested():
                return None
            pending.wait(poll_seconds)
        played = [pair for chunk in pending.get() for pair in chunk]
    return sorted(played, key=lambda pair: pair[0])


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

    @staticmethod
    def layout(
        capacity: int, observation_shape: tuple[int, ...], action_size: int
    ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """name -> (shape, dtype) of a window's arrays: what a checkpoint must hold for it."""
        f32 = np.dtype(np.float32)
        return {
            "replay/planes": ((capacity, *observation_shape), f32),
            "replay/policies": ((capacity, action_size), f32),
            "replay/outcomes": ((capacity,), f32),
        }

    def load(self, arrays: dict[str, np.ndarray], size: int, position: int) -> None:
        """Fill the window from a checkpoint's `replay/*` arrays, after checking their keys,
        shapes and dtypes and the JSON's size and position (a CheckpointError otherwise)."""
        live = self.arrays()
        found = {key: value for key, value in arrays.items() if key.startswith("replay/")}
        shape, actions = self.planes.shape[1:], self.policies.shape[1]
        check_arrays(found, self.layout(self.capacity, shape, actions), "checkpoint")
        if not (
            _is_count(size)
            and _is_count(position)
            and size <= self.capacity
            and position < self.capacity
            and (size == self.capacity or position == size)
        ):
            raise CheckpointError(
                f"checkpoint's replay window has size {size!r} and position {position!r}, "
                f"which do not fit a window of {self.capacity} positions"
            )  # fmt: skip
        for name, value in live.items():
            value[...] = found[name]
        self.size, self.position = int(size), int(position)


def _is_count(value) -> bool:
    """A non-negative int (not a bool) from a checkpoint's JSON."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
