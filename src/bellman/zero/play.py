"""A trained AlphaZero agent outside training: against a human in the terminal, or on a stream.

    bellman play GAME --checkpoint RUN [--simulations N] [--first|--second]
    bellman move GAME --checkpoint RUN [--simulations N]

`play` shows the board, reads the human's moves in the game's notation (tic-tac-toe cells 1-9,
Connect Four columns 1-7, Go GTP points such as D4 or pass), answers an illegal or malformed move
with the legal moves and goes on; `stats` prints the agent's last search (visit counts, Q, prior,
value), `quit` ends the game. `move` reads one position per line, as the move sequence from the
empty board, and prints the agent's move for each line (flushed at once); a bad line gets an
`error: ...` line and the stream goes on.

The agent searches with `--simulations` simulations (default: the run's `arena_simulations`),
no root noise, and plays the most visited move (the search and the choice of the arena's
agent, `arena.agent_search` and `agent_move`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from bellman import checkpoint
from bellman import config as configs
from bellman.errors import BellmanError, CheckpointError, ConfigError
from bellman.games import Game, make_game
from bellman.games.base import IllegalMoveError, play_moves
from bellman.run import read_run_config
from bellman.search.mcts import SearchResult
from bellman.zero import alphazero
from bellman.zero.arena import agent_move, agent_search
from bellman.zero.network import NetworkEvaluator, load_network


class Agent:
    """A trained network with search: `search(state)` and `act(state)`.

    Args:
        game: the game.
        network: f_theta in eval mode.
        config: the run's config (c_puct, search batch, virtual loss, solver).
        simulations: simulations per move.
    """

    def __init__(self, game: Game, network, config, simulations: int):
        self.game = game
        self.config = config
        evaluator = NetworkEvaluator(game, network, frozen=True)
        self.mcts = agent_search(game, evaluator, simulations, config)
        self.last: SearchResult | None = None

    def search(self, state: Any) -> SearchResult:
        """A fresh search from `state` (kept as `last` for `stats`)."""
        self.mcts.reset()
        self.last = self.mcts.search(state)
        return self.last

    def act(self, state: Any) -> int:
        """The move of a search from `state`: the most visited (with the run's `solve`, a proven
        win first, never a proven loss)."""
        return agent_move(self.search(state), self.config)


def load_agent(
    run_dir: Path, game_name: str, simulations: int | None = None, solve: bool = False
) -> Agent:
    """The agent of run `run_dir`'s latest checkpoint, for `game_name`; with `solve` it searches
    with MCTS-Solver whatever the run's config says.

    Raises:
        ConfigError: an unknown game or a bad number of simulations.
        CheckpointError: not an AlphaZero run, or a run trained on another game / board size.
    """
    game = make_game(game_name)  # unknown game: one line naming the valid ones
    if simulations is not None and simulations < 1:
        raise ConfigError(f"--simulations must be >= 1, got {simulations}")
    values = read_run_config(Path(run_dir))
    algo = values.pop("algo")
    if algo != "alphazero":
        raise CheckpointError(f"run '{run_dir}' was trained with '{algo}', not alphazero")
    config = configs.from_dict(
        alphazero.AlphaZeroConfig, "alphazero", values, f"'{Path(run_dir) / 'config.toml'}'"
    )
    alphazero.check_game_matches(config, game_name, run_dir)
    if solve:
        config = dataclasses.replace(config, solve=True)
    arrays, meta = checkpoint.load(Path(run_dir) / "checkpoints", algo="alphazero")
    if meta.get("env") != game_name:
        raise CheckpointError(
            f"run '{run_dir}': its checkpoint was trained on '{meta.get('env')}', not '{game_name}'"
        )
    torch.set_num_threads(config.torch_threads)
    network = load_network(arrays, config, game)
    return Agent(game, network, config, simulations or config.arena_simulations)


def format_stats(game: Game, result: SearchResult) -> str:
    """The search's root statistics, most visited move first: move, N, Q, prior; and the value."""
    order = np.argsort(-result.visit_counts, kind="stable")
    lines = [f"value {result.value:+.3f} (for the agent); move  visits      Q  prior"]
    for action in order:
        if result.visit_counts[action] == 0 and result.priors[action] == 0:
            continue
        lines.append(
            f"  {game.format_action(action):>5} {result.visit_counts[action]:>7d} "
            f"{result.q_values[action]:+.3f} {result.priors[action]:.3f}"
        )
    return "\n".join(lines)


def _legal(game: Game, state: Any) -> str:
    return " ".join(game.format_action(a) for a in game.legal_actions(state))


def play_terminal(agent: Agent, human: int, read: IO[str], write: IO[str]) -> float:
    """A game between a human (player `human`, 0 = first) and the agent on a text terminal.

    Returns:
        The result for the human: +1, 0, -1 (0 when the human quits or input ends).
    """
    game = agent.game
    state = game.initial_state()

    def say(text: str) -> None:
        write.write(text + "\n")
        write.flush()

    say(f"You are player {human + 1} ({'first' if human == 0 else 'second'}). "
        "Type a move, `stats` for the agent's last search, `quit` to stop.")  # fmt: skip
    while not game.is_terminal(state):
        say(game.render(state))
        if game.to_play(state) != human:
            action = agent.act(state)
            say(f"agent plays {game.format_action(action)}")
            state = game.apply(state, action)
            continue
        write.write("your move> ")
        write.flush()
        line = read.readline()
        if not line:
            say("\nend of input: game abandoned")
            return 0.0
        text = line.strip()
        if text.lower() in ("quit", "exit", "resign"):
            say("game abandoned")
            return 0.0
        if text.lower() == "stats":
            say("no search yet" if agent.last is None else format_stats(game, agent.last))
            continue
        try:
            action = game.parse_action(text)
            if not game.legal_mask(state)[action]:
                raise IllegalMoveError(f"'{text}' is not legal here")
        except IllegalMoveError as error:
            say(f"illegal move: {error}; legal moves: {_legal(game, state)}")
            continue
        state = game.apply(state, action)
    say(game.render(state))
    result = float(game.outcome(state))
    result = result if game.to_play(state) == human else -result
    say({1.0: "you win", 0.0: "draw", -1.0: "the agent wins"}[result])
    return result


def answer_positions(agent: Agent, read: IO[str], write: IO[str]) -> None:
    """For each line of `read` (a move sequence from the empty board), the agent's move in the
    game's notation, or `error: ...`; flushed after every line."""
    game = agent.game
    for line in read:
        try:
            state = play_moves(game, game.parse_moves(line.strip()))
            if game.is_terminal(state):
                raise IllegalMoveError("the game is over in this position: no move to play")
            answer = game.format_action(agent.act(state))
        except BellmanError as error:
            answer = f"error: {error}"
        write.write(answer + "\n")
        write.flush()
