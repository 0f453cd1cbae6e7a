"""Steps 6-7 of AlphaZero (`bellman.zero.alphazero`): the arena, its players and the Elo table;
and the trained agent against a fixed opponent as a gymnasium env (`bellman eval`).

    elo_expected, elo_update, EloTable   ratings; the random player is the anchor at 0
    play_match, arena                    games between two move functions (state -> action)
    agent_search, agent_move             the trained agent's search and choice (arena, `bellman
                                         play`/`move`, benchmarks): no noise, the most visited
    search_player, baseline_player       the players: a net with search; random, classic MCTS
                                         with random rollouts, alpha-beta
    OpponentEnv                          a whole game against a fixed opponent, as a gym env
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from bellman.errors import CheckpointError, ConfigError
from bellman.games import Game
from bellman.search.alphabeta import AlphaBetaPlayer
from bellman.search.mcts import MCTS, RandomRolloutEvaluator, SearchResult, best_move

BASELINES = ("random", "mcts", "alphabeta")
"""The fixed opponents the arena knows."""


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


def agent_search(game: Game, evaluator, simulations: int, config) -> MCTS:
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
        gumbel=getattr(config, "gumbel", False),
        max_considered=getattr(config, "max_considered", 16),
    )


def agent_move(result: SearchResult, config) -> int:
    """The agent's move from its search: the most visited; with `config.solve`, a proven win
    first and never a proven loss (`best_move`); with a Gumbel root, its chosen move."""
    if result.selected >= 0:
        return result.selected
    return best_move(result) if config.solve else int(np.argmax(result.visit_counts))


def search_player(game: Game, evaluator, simulations: int, config):
    """state -> `agent_move` of a fresh `agent_search` (the arena's net player)."""
    mcts = agent_search(game, evaluator, simulations, config)

    def act(state) -> int:
        mcts.reset()
        return agent_move(mcts.search(state), config)

    return act


def baseline_player(name: str, game: Game, config, seed: int):
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


def rated_matches(game: Game, agent, opponents: dict, config, elo: EloTable, name: str,
                  best_name: str) -> dict[str, float]:  # fmt: skip
    """The arena of AlphaZero's and MuZero's steps 6-7: `agent` (rated as `name`, starting from
    the best net's rating) plays `config.arena_games` games against each opponent (label ->
    player; "best" is rated as `best_name`), every game recorded in `elo`. Returns the metrics
    columns score_vs_LABEL and win_vs_LABEL (the agent's "elo" is added by the caller after
    any promotion)."""
    elo.ratings.setdefault(name, elo.get(best_name))
    columns: dict[str, float] = {}
    for label, opponent in opponents.items():
        outcome = arena(game, agent, opponent, config.arena_games)
        rated = best_name if label == "best" else label
        for result in outcome["results"]:
            elo.record(name, rated, (result + 1) / 2)
        columns[f"score_vs_{label}"] = outcome["score"]
        columns[f"win_vs_{label}"] = outcome["win"]
    return columns


def baseline_opponents(game: Game, config, iteration: int) -> dict:
    """The config's fixed opponents for the arena of `iteration`, each seeded from (seed,
    iteration, its place in the list)."""
    opponents = {}
    for number, baseline in enumerate(config.baseline_names):
        seed = int(np.random.SeedSequence([config.seed, iteration, number]).generate_state(1)[0])
        opponents[baseline] = baseline_player(baseline, game, config, seed)
    return opponents


def checked_elo(ratings: dict, where: str) -> dict[str, float]:
    """A checkpoint's Elo table: player name -> finite rating, the anchor included."""
    finite = all(
        isinstance(name, str) and isinstance(value, int | float) and not isinstance(value, bool)
        and math.isfinite(value) for name, value in ratings.items()
    )  # fmt: skip
    if not finite or EloTable.anchor not in ratings:
        raise CheckpointError(
            f"{where}: 'state.elo' must map player names to finite ratings, "
            f"'{EloTable.anchor}' included"
        )
    return {name: float(value) for name, value in ratings.items()}


class OpponentEnv(gym.Env):
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

    def __init__(self, game: Game, opponent: str, config, render_mode=None):
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
