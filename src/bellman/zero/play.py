"""A trained AlphaZero agent outside training: `load_agent(run_dir, game)` and its `Agent`.

`bellman play` (against a human in the terminal) and `bellman move` (one answer per position on
a stream) are its users; their text in and out is `bellman.cli.play`. The benchmarks load their
agent here too.

The agent searches with `simulations` simulations (default: the run's `arena_simulations`),
no root noise, and plays the most visited move (the search and the choice of the arena's
agent, `arena.agent_search` and `agent_move`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bellman import checkpoint
from bellman import config as configs
from bellman.errors import CheckpointError, ConfigError
from bellman.games import Game, make_game
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

    def __init__(self, game: Game, network, config, simulations: int, mcts=None):
        self.game = game
        self.config = config
        if mcts is None:
            evaluator = NetworkEvaluator(game, network, frozen=True)
            mcts = agent_search(game, evaluator, simulations, config)
        self.mcts = mcts
        self.last: SearchResult | None = None

    def search(self, state: Any) -> SearchResult:
        """A fresh search from `state` (kept as `last` for `stats`)."""
        self.mcts.reset()
        self.last = self.mcts.search(state)
        return self.last

    def act(self, state: Any) -> int:
        """The move of a search from `state`: the most visited (with the run's `solve`, a proven
        win first, never a proven loss)."""
        result = self.search(state)
        if result.selected >= 0:  # a Gumbel root's choice (MuZero with gumbel = true)
            return result.selected
        return agent_move(result, self.config)


def load_agent(
    run_dir: Path, game_name: str, simulations: int | None = None, solve: bool = False
) -> Agent:
    """The agent of run `run_dir`'s latest checkpoint, for `game_name`; with `solve` it searches
    with MCTS-Solver whatever the run's config says.

    Raises:
        ConfigError: an unknown game or a bad number of simulations.
        CheckpointError: not an AlphaZero or MuZero run, or a run trained on another game /
            board size.
    """
    game = make_game(game_name)  # unknown game: one line naming the valid ones
    if simulations is not None and simulations < 1:
        raise ConfigError(f"--simulations must be >= 1, got {simulations}")
    values = read_run_config(Path(run_dir))
    algo = values.pop("algo")
    if algo == "muzero":
        return _load_muzero_agent(run_dir, game, values, simulations)
    if algo != "alphazero":
        raise CheckpointError(f"run '{run_dir}' was trained with '{algo}', not alphazero or muzero")
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


def _load_muzero_agent(run_dir: Path, game: Game, values: dict, simulations: int | None) -> Agent:
    """A MuZero run's agent: its search over the learned model (`muzero.agent_act`), with
    `simulations` (default: the run's `eval_simulations`)."""
    from bellman.zero import muzero

    config = configs.from_dict(
        muzero.MuZeroConfig, "muzero", values, f"'{Path(run_dir) / 'config.toml'}'"
    )
    muzero.check_game_matches(config, game.name, run_dir)
    arrays, meta = checkpoint.load(Path(run_dir) / "checkpoints", algo="muzero")
    if meta.get("env") != game.name:
        raise CheckpointError(
            f"run '{run_dir}': its checkpoint was trained on '{meta.get('env')}', not '{game.name}'"
        )
    torch.set_num_threads(config.torch_threads)
    network = muzero.load_network(arrays, config, game)
    act = muzero.agent_act(config, game, network, simulations or config.eval_simulations)
    return Agent(game, network, config, 0, mcts=act.mcts)
