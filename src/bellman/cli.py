"""The `bellman` command: one verb per job, each a thin call into the library.

    bellman envs                         list environments (ours, gymnasium's, Atari when installed)
    bellman algos [NAME]                 list algorithms (the lm steps too), or one algorithm's
                                         config fields (`bellman algos lm ppo`)
    bellman train ALGO --env ID [--config FILE] [--set k=v ...] [--seed S] [--steps N]
                  [--run-dir D]
    bellman train --resume RUN_DIR [--steps N]
    bellman eval RUN_DIR [--episodes N] [--seed S] [--record OUT.gif]
    bellman plot RUN_DIR [RUN_DIR ...] [--out FILE.png]
    bellman plan ENV [--gamma G] [--format table|json]
    bellman play GAME --checkpoint RUN_DIR [--simulations N] [--first|--second]
    bellman move GAME --checkpoint RUN_DIR [--simulations N]
    bellman lm pretrain|demos|sft|label|reward|ppo|dpo|generate ...   the language-model pipeline

Every user error is one line on stderr, `error: ...`, and exit status 2. Ctrl-C during training
saves a checkpoint and exits 130 (SIGTERM: 143) with the command that resumes the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

from bellman.config import add_training_arguments
from bellman.errors import BellmanError, unknown


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (and exit 2), not a usage dump."""

    def error(self, message: str):
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bellman", description="Deep reinforcement learning, measured.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("envs", help="list the environments bellman can train on")

    algos = commands.add_parser("algos", help="list algorithms and their config fields")
    algos.add_argument(
        "name", nargs="*", help="show this algorithm's config fields (e.g. dqn, lm ppo)"
    )

    train = commands.add_parser("train", help="train an agent; writes a run directory")
    train.add_argument("algo", nargs="?", help="algorithm, e.g. q-learning (see `bellman algos`)")
    train.add_argument("--env", help="environment id, e.g. Taxi-v4 (see `bellman envs`)")
    add_training_arguments(train, "total env steps of the run")

    evaluate = commands.add_parser("eval", help="evaluate a run's greedy policy; writes eval.json")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--seed", type=int, default=0, help="episode i starts from seed + i")
    evaluate.add_argument("--record", type=Path, metavar="OUT.gif", help="also write a GIF")

    plot = commands.add_parser("plot", help="learning curves of one or more runs as a PNG")
    plot.add_argument("run_dirs", type=Path, nargs="+")
    plot.add_argument("--out", type=Path, help="PNG file (default: RUN_DIR/plot.png)")

    plan = commands.add_parser("plan", help="exact Q* of a finite MDP by value iteration")
    plan.add_argument("env", help="environment with a transition table, e.g. Taxi-v4")
    plan.add_argument("--gamma", type=float, default=0.99, help="discount factor in [0, 1]")
    plan.add_argument("--format", choices=("table", "json"), default="table")

    play = commands.add_parser("play", help="play a board game against a trained AlphaZero agent")
    play.add_argument("game", help="tictactoe, connect4, go9, go13 or go19")
    play.add_argument("--checkpoint", type=Path, required=True, metavar="RUN_DIR")
    play.add_argument("--simulations", type=int, help="search simulations per agent move")
    side = play.add_mutually_exclusive_group()
    side.add_argument("--first", action="store_true", help="you move first (the default)")
    side.add_argument("--second", action="store_true", help="the agent moves first")

    move = commands.add_parser("move", help="the agent's move for each position read on stdin")
    move.add_argument("game", help="tictactoe, connect4, go9, go13 or go19")
    move.add_argument("--checkpoint", type=Path, required=True, metavar="RUN_DIR")
    move.add_argument("--simulations", type=int, help="search simulations per move")

    from bellman.lm.cli import add_lm_commands

    add_lm_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bellman` console script."""
    args = _parser().parse_args(argv)
    handler = globals()[f"_cmd_{args.command}"]
    try:
        return handler(args) or 0
    except BellmanError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: aborted\n")
        return 130
    except BrokenPipeError:
        return 0


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _cmd_envs(args) -> int:
    from rich.table import Table

    from bellman.envs import env_catalog

    table = Table("id", "family", "note", box=None, pad_edge=False)
    for row in env_catalog():
        table.add_row(*row)
    _console().print(table)
    return 0


def _cmd_algos(args) -> int:
    from rich.table import Table

    from bellman import api
    from bellman.config import field_docs
    from bellman.lm.cli import LM_STEPS, lm_step

    console = _console()
    if not args.name:
        table = Table("algorithm", "what it is", box=None, pad_edge=False)
        for algo in api.ALGORITHMS.values():
            table.add_row(algo.name, algo.summary)
        for name, (_, summary) in LM_STEPS.items():  # `bellman lm NAME`, not `bellman train`
            table.add_row(name, summary)
        console.print(table)
        console.print("`bellman algos NAME` lists an algorithm's config fields.")
        return 0
    name = " ".join(args.name)
    step = lm_step(name) if name not in api.ALGORITHMS else None
    if step is not None:
        module, summary = LM_STEPS[step]
        title, cls = f"{step}: {summary}", importlib.import_module(module).Config
    else:
        try:
            spec = api.algorithm(name)
        except BellmanError:
            raise unknown("algorithm", name, [*api.ALGORITHMS, *LM_STEPS],
                          hint="see `bellman algos`") from None  # fmt: skip
        title, cls = f"{spec.name}: {spec.summary}", spec.config_class
    docs = field_docs(cls)
    table = Table("field", "default", "valid", "meaning", box=None, pad_edge=False)
    for field in dataclasses.fields(cls):
        valid = field.metadata.get("interval") or ", ".join(field.metadata.get("choices", ()))
        table.add_row(field.name, repr(field.default), valid, docs.get(field.name, ""))
    console.print(title)
    console.print(table)
    return 0


def _cmd_train(args) -> int:
    from bellman import api

    if args.resume is not None:
        extra = [
            flag
            for flag, value in (
                ("--env", args.env),
                ("--config", args.config),
                ("--set", args.set),
                ("--seed", args.seed),
                ("--run-dir", args.run_dir),
            )
            if value
        ]
        if extra:
            raise BellmanError(
                f"--resume continues a run with its own config; drop {', '.join(extra)} "
                "(only --steps may change the target)"
            )
        run = api.resume(args.resume, algo=args.algo, steps=args.steps, quiet=args.quiet)
    else:
        if args.algo is None:
            raise BellmanError("train needs an algorithm (see `bellman algos`) or --resume RUN_DIR")
        if args.env is None:
            raise BellmanError("train needs --env ID (see `bellman envs`)")
        overrides = list(args.set)
        overrides += [f"seed={args.seed}"] if args.seed is not None else []
        overrides += [f"steps={args.steps}"] if args.steps is not None else []
        run = api.train(
            args.algo,
            args.env,
            config_file=args.config,
            overrides=overrides,
            run_dir=args.run_dir,
            quiet=args.quiet,
        )
    return _report_training(run)


def _report_training(run) -> int:
    import signal

    from bellman import checkpoint

    step = checkpoint.load(run.dir / "checkpoints")[1]["step"]
    if run.stop_requested:
        sys.stderr.write(
            f"interrupted at step {step}; checkpoint saved. Resume with: "
            f"bellman train --resume {run.dir}\n"
        )
        return 143 if run.stop_signal == signal.SIGTERM else 130
    mean = run.episode_return_mean
    print(f"trained {run.algo} on {run.config.env} for {step} steps ({run.episodes} episodes)")
    if run.episodes:
        print(f"episode_return_mean (last {min(run.episodes, 100)} episodes): {mean:.3f}")
    for note in run.notes:
        print(note)
    print(f"run directory: {run.dir}")
    if (run.dir / "plot.png").exists():
        print(f"plot: {run.dir / 'plot.png'}")
    return 0


def _cmd_eval(args) -> int:
    from bellman import api
    from bellman.evaluation import check_gif_path

    if args.record is not None:
        check_gif_path(args.record)  # before any work, so a typo costs nothing

    result = api.evaluate_run(args.run_dir, episodes=args.episodes, seed=args.seed)
    print(
        f"{result['env']}: mean return {result['mean']:.3f} +/- {result['std']:.3f} "
        f"(min {result['min']:g}, max {result['max']:g}) over {result['episodes']} episodes, "
        f"seeds {result['seed']}..{result['seed'] + result['episodes'] - 1}"
    )
    print(f"wrote {args.run_dir / 'eval.json'}")
    if args.record is not None:
        clip = api.record_run(args.run_dir, args.record, seed=args.seed)
        print(f"wrote {clip['path']} ({clip['steps']} steps, return {clip['return']:g})")
    return 0


def _cmd_lm(args) -> int:
    from bellman.lm.cli import run_lm_command

    return run_lm_command(args)


def _cmd_plot(args) -> int:
    from bellman.plots import plot_runs

    out = args.out or args.run_dirs[0] / "plot.png"
    if out.suffix.lower() != ".png":
        raise BellmanError(f"--out must be a .png file, got '{out}'")
    print(f"wrote {plot_runs(args.run_dirs, out)}")
    return 0


def _cmd_plan(args) -> int:
    import numpy as np

    from bellman.envs import make_env
    from bellman.tabular.planning import greedy_policy, tabular_model, value_iteration

    env = make_env(args.env)
    model = tabular_model(env)
    q = value_iteration(model, args.gamma)
    policy = greedy_policy(q)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "env": args.env,
                    "gamma": args.gamma,
                    "states": model.state_names,
                    "actions": model.action_names,
                    "q": np.round(q, 10).tolist(),
                    "v": np.round(q.max(axis=1), 10).tolist(),
                    "policy": [model.action_names[a] for a in policy],
                }
            )
        )
        return 0
    from rich.table import Table

    table = Table(
        "state",
        *(f"Q(s, {name})" for name in model.action_names),
        "V*(s)",
        "greedy",
        box=None,
        pad_edge=False,
    )
    for s, name in enumerate(model.state_names):
        cells = [f"{value:.4g}" for value in q[s]]
        greedy = "terminal" if model.terminal[s] else model.action_names[policy[s]]
        table.add_row(name, *cells, f"{q[s].max():.4g}", greedy)
    console = _console()
    console.print(f"Q* of {args.env} at gamma = {args.gamma} (value iteration on P)")
    console.print(table)
    return 0


def _cmd_play(args) -> int:
    from bellman.zero.play import load_agent, play_terminal

    agent = load_agent(args.checkpoint, args.game, args.simulations)
    play_terminal(agent, 1 if args.second else 0, sys.stdin, sys.stdout)
    return 0


def _cmd_move(args) -> int:
    from bellman.zero.play import answer_positions, load_agent

    agent = load_agent(args.checkpoint, args.game, args.simulations)
    answer_positions(agent, sys.stdin, sys.stdout)
    return 0
