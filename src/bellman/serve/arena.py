"""The arena page: a person plays tic-tac-toe, Connect Four or Go against a trained agent and
sees its search.

    GET  /arena                       the page (board drawn in SVG by static/arena.js)
    GET  /api/arena                   the agents that can play: name, game, algorithm, simulations
    POST /api/arena/NAME/move         {"moves": [a1, a2, ...], "simulations": N (optional)}

The server keeps no game: each request carries the whole move list from the empty board (at
most `MAX_MOVES`), which the server replays through the game's rules (`play_moves`: an illegal
or malformed move is a 400 naming it). If the game is not over, the agent searches the position
and answers its move with its search: the root's visit counts N(s, a), values Q(s, a) and
priors, its value, the principal variation (the most visited path down the tree), the board
before and after its move and what is legal next. Agents are loaded through
`load_player` (AlphaZero and MuZero runs through `bellman.zero.play.load_agent`, AlphaGo runs
through its search agent) into the state's bounded cache; one search at a time per agent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bellman.errors import BellmanError
from bellman.games import GAMES, Game, make_game
from bellman.games.base import play_moves
from bellman.serve.layout import json_data, known, page, read_json
from bellman.serve.state import ServeState

#: Longer move lists are refused before replaying (Go's own limit is 2 N^2 moves).
MAX_MOVES = 2 * 19 * 19 + 1
#: The most simulations a request may ask for (a search's time grows with them), unless the
#: agent's own default is more (the shipped connect4 agent searches 3,200).
MAX_SIMULATIONS = 2000
#: How deep the principal variation goes.
PV_DEPTH = 12
#: The config field (and its default) that sets an algorithm's simulations in the arena.
DEFAULT_SIMULATIONS = {
    "alphazero": ("arena_simulations", 100),
    "muzero": ("eval_simulations", 50),
    "alphago": ("simulations", 64),
}
#: How the page draws each game: squares, columns where a disc drops, or Go's points.
BOARD_KIND = {"tictactoe": "cells", "connect4": "columns"}


def routes(state: ServeState) -> list[BaseRoute]:
    """The arena's page and its JSON API."""

    def arena_page(request: Request) -> Response:
        players = playable(state)
        if not players:
            body = ('<p class="muted">No game agent was given: start the server with an '
                    "AlphaZero, MuZero or AlphaGo run of a board game, or "
                    "<code>--agent NAME</code>.</p>")  # fmt: skip
            return page("Arena", body)
        body = (f'<script id="arena-agents" type="application/json">{json_data(players)}'
                "</script>\n" + _ARENA_BODY)  # fmt: skip
        return page("Arena", body, scripts=("arena.js",))

    def agents(request: Request) -> Response:
        return JSONResponse(playable(state))

    async def move(request: Request) -> Response:
        name = request.path_params["name"]
        players = {player["name"]: player for player in playable(state)}
        known(name, players, "game agent")
        body = await read_json(request)
        moves, simulations = _check_request(body, players[name]["simulations"])
        answer = await run_in_threadpool(
            answer_move, state, name, players[name]["game"], moves, simulations
        )
        return JSONResponse(answer)

    return [
        Route("/arena", arena_page),
        Route("/api/arena", agents),
        Route("/api/arena/{name}/move", move, methods=["POST"]),
    ]


def playable(state: ServeState) -> list[dict[str, Any]]:
    """The runs and agents that play a board game: name, game, algo, default simulations."""
    players = []
    for name in state.sources():
        try:
            config = state.config(name)
        except BellmanError:  # a run deleted or broken since start-up: not offered
            continue
        algo, game = config.get("algo"), config.get("env")
        if algo not in DEFAULT_SIMULATIONS or game not in GAMES:
            continue
        key, default = DEFAULT_SIMULATIONS[algo]
        simulations = int(config.get(key, default))
        players.append({"name": name, "game": game, "algo": algo, "simulations": simulations,
                        "kind": BOARD_KIND.get(game, "points")})  # fmt: skip
    return players


def _check_request(body: Any, default_simulations: int) -> tuple[list[int], int]:
    """(moves, simulations) of a move request, or a 400 saying what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("moves"), list):
        raise HTTPException(400, 'the body must be {"moves": [action, ...]} (the game so far)')
    moves = body["moves"]
    if len(moves) > MAX_MOVES:
        raise HTTPException(400, f"a game has at most {MAX_MOVES} moves, got {len(moves)}")
    if not all(isinstance(m, int) and not isinstance(m, bool) for m in moves):
        raise HTTPException(400, "every move must be an integer action")
    simulations = body.get("simulations", default_simulations)
    most = max(MAX_SIMULATIONS, default_simulations)
    if (not isinstance(simulations, int) or isinstance(simulations, bool)
            or not 1 <= simulations <= most):  # fmt: skip
        raise HTTPException(400, f"simulations must be an integer in 1-{most}")
    return moves, simulations


def answer_move(
    state: ServeState, name: str, game_name: str, moves: list[int], simulations: int
) -> dict[str, Any]:
    """Replay `moves`; when the game goes on, the agent's move and its search (see the module
    docstring). Raises IllegalMoveError (a 400) for an illegal or malformed move list."""
    game = make_game(game_name)
    position = play_moves(game, moves)
    answer: dict[str, Any] = {"before": describe(game, position, moves)}
    if game.is_terminal(position):
        answer["after"] = answer["before"]
        return answer
    source = state.sources()[name]
    algo = state.algo(name)
    agent, lock = state.cache.get(
        ("arena", name, simulations), lambda: load_player(source, algo, game_name, simulations)
    )
    with lock:
        start = time.perf_counter()
        action = agent.act(position)
        seconds = time.perf_counter() - start
        result = agent.last
        pv = principal_variation(agent.mcts.root, PV_DEPTH)
    after = game.apply(position, action)
    answer["after"] = describe(game, after, [*moves, action])
    answer["move"] = action
    answer["move_text"] = game.format_action(action)
    answer["search"] = {
        "simulations": simulations,
        "seconds": round(seconds, 4),
        "value": float(result.value),
        "visits": [int(n) for n in result.visit_counts],
        "q": [round(float(q), 4) for q in result.q_values],
        "priors": [round(float(p), 4) for p in result.priors],
        "pv": [game.format_action(a) for a in pv],
    }
    return answer


def load_player(source: Path, algo: str, game_name: str, simulations: int):
    """The searching agent of a run: `act(state)`, then `last` (its SearchResult) and `mcts`
    (its tree). AlphaZero and MuZero: `bellman.zero.play.load_agent`; AlphaGo: its search agent
    (`go_players`, the one `bellman gtp` plays) with the run's lambda."""
    if algo == "alphago":
        from bellman.zero.go_players import alphago_player

        act, _, _ = alphago_player(Path(source), game_name, simulations)
        return _SearchAgent(act)
    from bellman.zero.play import load_agent

    return load_agent(source, game_name, simulations)


class _SearchAgent:
    """A search function that keeps its tree (`act.mcts`) and last result (`act.last`), seen
    as `bellman.zero.play.Agent`."""

    def __init__(self, act):
        self._act, self.mcts, self.last = act, act.mcts, None

    def act(self, state: Any) -> int:
        action = self._act(state)
        self.last = self._act.last
        return action


def describe(game: Game, position: Any, moves: list[int]) -> dict[str, Any]:
    """What the page draws: the board (rows top first; 0 empty, 1 the first player's stone,
    2 the second's), who moves, the legal actions, and the result once the game is over."""
    planes = game.observation(position)
    mover = game.to_play(position)
    board = (planes[0] * (mover + 1) + planes[1] * (2 - mover)).astype(int)
    over = game.is_terminal(position)
    described = {
        "moves": list(moves),
        "moves_text": [game.format_action(a) for a in moves],
        "board": board.tolist(),
        "to_play": mover,
        "legal": [] if over else game.legal_actions(position),
        "over": over,
        "result": None,
    }
    if over:
        outcome = float(game.outcome(position))  # for the player to move there
        first = outcome if mover == 0 else -outcome
        described["result"] = {1.0: "first", -1.0: "second"}.get(first, "draw")
    return described


def principal_variation(root, depth: int) -> list[int]:
    """The most visited path from the search's root: at each node the action with the most
    visits N(s, a), down to `depth` moves or an unvisited edge."""
    line: list[int] = []
    node = root
    while node is not None and node.actions and len(line) < depth:
        index = int(np.argmax(node.visit_counts))
        if node.visit_counts[index] < 1:
            break
        action = node.actions[index]
        line.append(int(action))
        node = node.children.get(action)
    return line


_ARENA_BODY = """
<div class="row">
  <div class="play">
    <div class="controls">
      <label>Agent <select id="agent"></select></label>
      <label>You play <select id="side"><option value="0">first</option>
        <option value="1">second</option></select></label>
      <label>Simulations <input id="simulations" type="number" min="1" max="2000"
        style="width:5em"></label>
      <button id="new-game">New game</button>
      <label>Heat map <select id="heat"><option value="n">visits N</option>
        <option value="q">values Q</option></select></label>
      <button id="pass" hidden>Pass</button>
    </div>
    <div id="board" class="board"></div>
    <p id="status" class="status">Loading...</p>
    <p class="muted">Moves: <span id="moves"></span></p>
  </div>
  <div class="panel search">
    <h2>The agent's last search</h2>
    <p id="search-summary" class="muted">No search yet: make a move (or play second).</p>
    <p>Principal variation: <span id="pv"></span></p>
    <table class="list" id="search-table"></table>
    <p class="muted">The heat map on the board shows each move's share of the visits N(s, a)
      (orange), or its value Q(s, a) for the agent (green above 0, red below); hover a cell for N,
      Q and the prior.</p>
  </div>
</div>
"""
