"""The `bellman` command: one verb per job, each a thin call into the library.

    bellman envs                         list environments (ours, gymnasium's, Atari when installed,
                                         the board games)
    bellman algos [NAME]                 list the registry (algorithms and lm steps), or one entry's
                                         config fields (`bellman algos lm ppo`)
    bellman train ALGO --env ID [--config FILE] [--set k=v ...] [--seed S] [--steps N]
                  [--run-dir D]
    bellman train --resume RUN_DIR [--steps N]
    bellman eval RUN_DIR|--agent NAME [--episodes N] [--seed S] [--record OUT.gif] [--out FILE]
    bellman plot RUN_DIR [RUN_DIR ...] [--out FILE.png]
    bellman plan ENV [--gamma G] [--format table|json]
    bellman play GAME --checkpoint RUN_DIR|--agent NAME [--simulations N] [--first|--second]
    bellman move GAME --checkpoint RUN_DIR|--agent NAME [--simulations N]
    bellman gtp --checkpoint RUN_DIR|--agent NAME [--simulations N]   a Go agent speaking GTP v2
    bellman agents                       the trained agents that ship in the package (`--agent`)
    bellman data gnugo --games N [--level L] --out DIR      GnuGo's games as SGF files
    bellman serve [RUN_DIR ...] [--agent NAME ...] [--labels FILE] [--host H] [--port P]
                                         the web app: arena, watch, runs, chat, labels
    bellman lm pretrain|demos|sft|label|reward|ppo|dpo|generate ...   the language-model pipeline
                                                                       (`bellman.cli.lm`)

Every user error is one line on stderr, `error: ...`, and exit status 2: a `BellmanError` from
the library, a usage error, and any OSError a command meets (a full disk, a read-only place,
`/dev/full` as stdout), reported as `error: FILE: REASON`. Control characters in a message are
escaped, so the line stays one line. A closed pipe on stdout (`bellman envs | head -1`) ends the
command quietly with status 0. Ctrl-C during training saves a checkpoint and exits 130 (SIGTERM:
143) with the command that resumes the run; a Ctrl-C at any other time, including while the
interpreter shuts down, ends the command with 130 and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
from pathlib import Path

from bellman.cli.common import (
    at_least_one,
    check_resume_flags,
    console,
    new_run_dir,
    one_line,
    output_file,
    overrides,
    report_training,
    seed,
    writable_dir,
)
from bellman.config import add_training_arguments
from bellman.errors import BellmanError, ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (and exit 2), not a usage dump."""

    def error(self, message: str):
        _report(f"{message} (see `{self.prog} --help`)")
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
    evaluate.add_argument("run_dir", type=Path, nargs="?")
    _add_agent_option(evaluate)
    evaluate.add_argument("--out", type=Path, metavar="FILE",
                          help="write the result here (default: RUN_DIR/eval.json; with --agent, "
                          "nothing is written unless --out is given)")  # fmt: skip
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--seed", type=seed, default=0, help="episode i starts from seed + i")
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
    play.add_argument("--checkpoint", type=Path, metavar="RUN_DIR")
    _add_agent_option(play)
    play.add_argument("--simulations", type=at_least_one, help="search simulations per move")
    side = play.add_mutually_exclusive_group()
    side.add_argument("--first", action="store_true", help="you move first (the default)")
    side.add_argument("--second", action="store_true", help="the agent moves first")

    move = commands.add_parser("move", help="the agent's move for each position read on stdin")
    move.add_argument("game", help="tictactoe, connect4, go9, go13 or go19")
    move.add_argument("--checkpoint", type=Path, metavar="RUN_DIR")
    _add_agent_option(move)
    move.add_argument("--simulations", type=at_least_one, help="search simulations per move")

    gtp = commands.add_parser("gtp", help="a Go agent as a GTP v2 engine on stdin/stdout")
    gtp.add_argument("--checkpoint", type=Path, metavar="RUN_DIR")
    _add_agent_option(gtp)

    commands.add_parser("agents", help="list the trained agents that ship in the package")
    gtp.add_argument("--simulations", type=at_least_one, help="search simulations per move")

    data = commands.add_parser("data", help="make training data (expert games)")
    sources = data.add_subparsers(dest="source", required=True, parser_class=_Parser)
    gnugo = sources.add_parser("gnugo", help="GnuGo against itself, one SGF file per game")
    gnugo.add_argument("--games", type=at_least_one, required=True, help="games to play")
    gnugo.add_argument("--level", type=int, default=1, help="GnuGo's --level, 0-10 (default 1)")
    gnugo.add_argument("--out", type=Path, required=True, help="new directory for the files")
    gnugo.add_argument("--size", type=int, default=9, help="board size: 9, 13 or 19")
    gnugo.add_argument("--komi", type=float, default=7.5, help="komi (default 7.5)")
    gnugo.add_argument("--seed", type=int, default=0, help="game n uses gnugo --seed SEED+n")
    gnugo.add_argument("--workers", type=int, default=0,
                       help="games played at once (default 0: one per core)")  # fmt: skip

    serve = commands.add_parser("serve", help="the web app: arena, watch an agent, browse runs")
    serve.add_argument("run_dirs", type=Path, nargs="*", metavar="RUN_DIR")
    serve.add_argument("--agent", action="append", default=[], metavar="NAME",
                       help="a shipped agent (see `bellman agents`); repeatable")  # fmt: skip
    serve.add_argument("--labels", type=Path, metavar="FILE",
                       help="JSONL file the labelling page appends rankings to")  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")

    from bellman.cli.lm import add_lm_commands

    add_lm_commands(commands)
    return parser


def _add_agent_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", metavar="NAME",
                        help="a shipped agent instead of a run (see `bellman agents`)")  # fmt: skip


def _run_dir(args, flag: str = "--checkpoint RUN_DIR") -> Path:
    """The run a command reads: the run directory given (`--checkpoint`, or eval's RUN_DIR) or
    the directory of the shipped agent `--agent NAME`; exactly one of the two."""
    from bellman import agents

    given = args.run_dir if flag == "RUN_DIR" else args.checkpoint
    if given is not None and args.agent is not None:
        raise ConfigError(f"give {flag} or --agent NAME, not both")
    if given is None and args.agent is None:
        raise ConfigError(
            f"give {flag} or --agent NAME (shipped agents: {', '.join(agents.names())})"
        )
    return given if args.agent is None else agents.resolve(args.agent)


# ---- the entry point and its one error printer -----------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bellman` command (`python -m bellman`, the console script).

    Returns the exit status: 0, 2 for a user or OS error (one `error:` line), 130/143 for Ctrl-C
    and SIGTERM. Called as the program (`argv` None), a Ctrl-C after the command has finished
    (while Python shuts down) ends the process at once with 130.
    """
    stdout, sys.stdout = sys.stdout, _NamedStream(sys.stdout, "standard output")
    try:
        args = _parser().parse_args(argv)
        status = _COMMANDS[args.command](args) or 0
        sys.stdout.flush()  # a full disk or /dev/full shows here, not at interpreter exit
    except SystemExit as stop:  # argparse: --help, or a usage error already reported
        status = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 2
    except BrokenPipeError:  # `bellman envs | head -1`: the reader has what it wanted
        status = 0
    except BellmanError as error:
        status = _report(str(error))
    except OSError as error:
        status = _report(_os_error_message(error))
    except KeyboardInterrupt:
        status = _report("aborted", 130)
    finally:
        sys.stdout = stdout
    _settle_stdout()
    if argv is None:
        _exit_at_once_on_ctrl_c()
    return status


class _NamedStream:
    """A text stream whose write errors name it: an OSError from `write` has no file name, and
    `error: standard output: No space left on device` says more than the reason alone."""

    def __init__(self, stream, name: str):
        self._stream, self._name = stream, name

    def __getattr__(self, attribute: str):
        return getattr(self._stream, attribute)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as error:
            raise OSError(error.errno, error.strerror, self._name) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            raise OSError(error.errno, error.strerror, self._name) from None


def _report(message: str, status: int = 2) -> int:
    """Write `error: MESSAGE` as one line on stderr (control characters escaped)."""
    try:
        sys.stderr.write(f"error: {one_line(message)}\n")
        sys.stderr.flush()
    except OSError:
        pass
    return status


#: The temp file of an atomic write: `.NAME.RANDOM.tmp` in the target's directory.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def _os_error_message(error: OSError) -> str:
    """`FILE: REASON` for an OSError (the target of an atomic write, not its temp file)."""
    reason = error.strerror or str(error)
    filename = error.filename2 if error.filename2 is not None else error.filename
    if filename is None:
        return reason
    path = Path(os.fsdecode(filename))
    match = _TEMP_NAME.match(path.name)
    if match:
        path = path.with_name(match["name"])
    return f"{path}: {reason}"


def _stdout_broken() -> bool:
    try:
        sys.stdout.flush()
    except OSError:
        return True
    return False


def _settle_stdout() -> None:
    """After an error writing stdout, send what is still buffered to /dev/null, so that Python's
    last flush at exit does not fail a second time with a traceback."""
    if _stdout_broken():
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no file descriptor (stdout replaced in-process)
            pass


def _exit_at_once_on_ctrl_c() -> None:
    """From here on (interpreter shutdown), Ctrl-C exits with 130 without a traceback."""
    try:
        signal.signal(signal.SIGINT, lambda _signum, _frame: os._exit(130))
    except ValueError:  # not the main thread: leave the handler alone
        pass


# ---- the commands --------------------------------------------------------------------------
def _cmd_envs(args) -> int:
    from rich.table import Table

    from bellman.envs import env_catalog

    table = Table("id", "family", "note", box=None, pad_edge=False)
    for row in env_catalog():
        table.add_row(*row)
    console().print(table)
    return 0


def _cmd_algos(args) -> int:
    from rich.table import Table

    from bellman import api
    from bellman.config import field_docs

    out = console()
    if not args.name:
        table = Table("algorithm", "what it is", box=None, pad_edge=False)
        for algo in api.ALGORITHMS.values():
            table.add_row(algo.name, algo.summary)
        out.print(table)
        out.print("`bellman algos NAME` lists an algorithm's config fields.")
        return 0
    spec = api.lookup(" ".join(args.name))
    cls = spec.config_class
    docs = field_docs(cls)
    table = Table("field", "default", "valid", "meaning", box=None, pad_edge=False)
    for field in dataclasses.fields(cls):
        valid = field.metadata.get("interval") or ", ".join(field.metadata.get("choices", ()))
        table.add_row(field.name, repr(field.default), valid, docs.get(field.name, ""))
    out.print(f"{spec.name}: {spec.summary}")
    out.print(table)
    return 0


def _cmd_train(args) -> int:
    from bellman import api

    if args.resume is not None:
        check_resume_flags(args, ("--env",))
        writable_dir(args.resume, "--resume")
        run = api.resume(args.resume, algo=args.algo, steps=args.steps, quiet=args.quiet)
    else:
        if args.algo is None:
            raise ConfigError("train needs an algorithm (see `bellman algos`) or --resume RUN_DIR")
        if args.env is None:
            raise ConfigError("train needs --env ID (see `bellman envs`)")
        new_run_dir(args.run_dir)
        run = api.train(
            args.algo,
            args.env,
            config_file=args.config,
            overrides=overrides(args),
            run_dir=args.run_dir,
            quiet=args.quiet,
        )
    return report_training(run, "bellman train")


def _cmd_eval(args) -> int:
    from bellman import api
    from bellman.evaluation import check_gif_path

    run_dir = _run_dir(args, "RUN_DIR")
    if args.record is not None:  # before any work, so a typo costs nothing
        check_gif_path(args.record)
        output_file(args.record, "--record")
    if args.out is not None:
        output_file(args.out, "--out", may_replace=("eval.json",))
    elif args.agent is None:
        writable_dir(run_dir, "run directory")  # eval.json goes there
    if args.record is not None:
        api.check_recordable(run_dir)
    write = args.agent is None or args.out is not None  # never into the installed package
    result = api.evaluate_run(run_dir, args.episodes, args.seed, out=args.out, write=write)
    print(
        f"{result['env']}: mean return {result['mean']:.3f} +/- {result['std']:.3f} "
        f"(min {result['min']:g}, max {result['max']:g}) over {result['episodes']} episodes, "
        f"seeds {result['seed']}..{result['seed'] + result['episodes'] - 1}"
    )
    if write:
        print(f"wrote {args.out or run_dir / 'eval.json'}")
    if args.record is not None:
        clip = api.record_run(run_dir, args.record, seed=args.seed)
        print(f"wrote {clip['path']} ({clip['steps']} steps, return {clip['return']:g})")
    return 0


def _cmd_lm(args) -> int:
    from bellman.cli.lm import run_lm_command

    return run_lm_command(args)


def _cmd_plot(args) -> int:
    from bellman.plots import plot_runs

    out = args.out or args.run_dirs[0] / "plot.png"
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must be a .png file, got '{out}'")
    if out.parent.is_dir():  # a missing directory: plot_runs names it, after the runs
        output_file(out, "--out", may_replace=("plot.png",))
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
    out = console()
    out.print(f"Q* of {args.env} at gamma = {args.gamma} (value iteration on P)")
    out.print(table)
    return 0


def _cmd_play(args) -> int:
    from bellman.cli.play import play_terminal
    from bellman.zero.play import load_agent

    agent = load_agent(_run_dir(args), args.game, args.simulations)
    play_terminal(agent, 1 if args.second else 0, sys.stdin, sys.stdout)
    return 0


def _cmd_move(args) -> int:
    from bellman.cli.play import answer_positions
    from bellman.zero.play import load_agent

    agent = load_agent(_run_dir(args), args.game, args.simulations)
    answer_positions(agent, sys.stdin, sys.stdout)
    return 0


def _cmd_gtp(args) -> int:
    from bellman import __version__
    from bellman.zero.go_players import load_go_player
    from bellman.zero.gtp import GtpEngine, serve

    player, game, _ = load_go_player(_run_dir(args), args.simulations)
    serve(GtpEngine(player, game, version=__version__), sys.stdin, sys.stdout)
    return 0


def _cmd_agents(args) -> int:
    from bellman import agents

    for name in agents.names():
        card = agents.card(name)
        print(f"{name:<16} {card['algorithm']:<12} {card['env']:<14} {card['headline']}")
    return 0


def _cmd_data(args) -> int:
    from bellman.zero.gtp import gnugo_games

    written = gnugo_games(args.out, args.games, args.level, args.size, args.komi, args.seed,
                          report=lambda line: print(line, flush=True),
                          workers=args.workers)  # fmt: skip
    print(f"wrote {len(written)} SGF files to {args.out}")
    return 0


def _cmd_serve(args) -> int:
    from bellman.serve import make_state, serve

    state = make_state(args.run_dirs, args.agent, args.labels)
    serve(state, args.host, args.port, log=lambda line: print(line, flush=True))
    return 0


_COMMANDS = {
    "envs": _cmd_envs,
    "algos": _cmd_algos,
    "train": _cmd_train,
    "eval": _cmd_eval,
    "plot": _cmd_plot,
    "plan": _cmd_plan,
    "play": _cmd_play,
    "move": _cmd_move,
    "gtp": _cmd_gtp,
    "data": _cmd_data,
    "agents": _cmd_agents,
    "serve": _cmd_serve,
    "lm": _cmd_lm,
}
