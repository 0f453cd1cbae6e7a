"""The terminal side of `bellman play` and `bellman move`: text in, text out, around a trained
AlphaZero agent (`bellman.zero.play.load_agent`).

    bellman play GAME --checkpoint RUN [--simulations N] [--first|--second]
    bellman move GAME --checkpoint RUN [--simulations N]

`play` shows the board, reads the human's moves in the game's notation (tic-tac-toe cells 1-9,
Connect Four columns 1-7, Go GTP points such as D4 or pass), answers an illegal or malformed move
with the legal moves and goes on; `stats` prints the agent's last search (visit counts, Q, prior,
value), `quit` ends the game. `move` reads one position per line, as the move sequence from the
empty board, and prints the agent's move for each line (flushed at once); a bad line gets an
`error: ...` line (control characters escaped) and the stream goes on.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np

from bellman.cli.common import one_line
from bellman.errors import BellmanError
from bellman.games import Game
from bellman.games.base import IllegalMoveError, play_moves
from bellman.search.mcts import SearchResult
from bellman.zero.play import Agent


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
            say(f"illegal move: {one_line(str(error))}; legal moves: {_legal(game, state)}")
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
            answer = f"error: {one_line(str(error))}"
        write.write(answer + "\n")
        write.flush()
