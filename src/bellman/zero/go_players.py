"""The Go players of run directories, for `bellman gtp` and benchmarks/go_vs_gnugo.py: each Go
algorithm's trained agent as state -> move, whatever algorithm trained it.

load_go_player  (player, game, description) of a run's latest checkpoint: AlphaZero (its
                network's search), MuZero (its search over its learned model) or AlphaGo (the
                lambda-mixed search of its four networks)
alphago_player  the same for an AlphaGo run of any game (Go or Connect Four)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from bellman import checkpoint
from bellman import config as configs
from bellman.errors import CheckpointError
from bellman.games import Go
from bellman.run import read_run_config


def load_go_player(run_dir: Path, simulations: int | None = None) -> tuple[Callable, Go, str]:
    """(player, game, description) of a Go run's latest checkpoint.

    Raises:
        CheckpointError: a missing run, a run of another algorithm, or not trained on Go.
    """
    values = read_run_config(Path(run_dir))
    algo, env = values.get("algo"), values.get("env")
    if not isinstance(env, str) or not env.startswith("go"):
        raise CheckpointError(f"run '{run_dir}' was trained on '{env}', not Go (go9, go13, go19)")
    loaders = _PLAYERS
    if algo not in loaders:
        raise CheckpointError(
            f"run '{run_dir}' was trained with '{algo}'; GTP plays {', '.join(loaders)} Go runs"
        )
    return loaders[algo](Path(run_dir), env, simulations)


def _searching_player(run_dir: Path, env: str, simulations: int | None):
    """An AlphaZero run's agent (its network's search over the rules) or a MuZero run's (its
    search over its learned model): `play.load_agent`, which reads which."""
    from bellman.zero.muzero import MuZeroConfig
    from bellman.zero.play import load_agent

    agent = load_agent(run_dir, env, simulations)
    algo = "muzero" if isinstance(agent.config, MuZeroConfig) else "alphazero"
    return agent.act, agent.game, f"{algo} {run_dir.name}"


def alphago_player(run_dir: Path, env: str, simulations: int | None, seed: int | None = None):
    """(player, game, description) of an AlphaGo run of `env`: the lambda-mixed search of its
    four networks, its rollouts drawn from `seed` (default: the run's seed)."""
    import torch

    from bellman.zero import alphago

    values = read_run_config(run_dir)
    values.pop("algo")
    config = configs.from_dict(alphago.AlphaGoConfig, "alphago", values, f"'{run_dir}'")
    if simulations is not None:
        config = dataclasses.replace(config, simulations=simulations)
    arrays, _ = checkpoint.load(run_dir / "checkpoints", algo="alphago")
    torch.set_num_threads(config.torch_threads)  # as every loader of an agent does
    game = alphago.make_train_env(dataclasses.replace(config, env=env))
    nets = alphago.load_nets(arrays, config, game)
    seed = config.seed if seed is None else seed
    act = alphago.search_agent(game, nets, config, config.mixing, seed)
    return act, game, f"alphago {run_dir.name}"


_PLAYERS: dict[str, Callable] = {
    "alphazero": _searching_player, "muzero": _searching_player, "alphago": alphago_player,
}  # fmt: skip
"""algo -> (run_dir, env, simulations) -> (player, game, description)."""
