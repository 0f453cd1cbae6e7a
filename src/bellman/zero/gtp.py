"""GTP, the Go Text Protocol version 2: bellman's Go agents as engines that GnuGo, GoGui, Sabaki
or a referee can play, and a client that plays GTP engines (GnuGo) from Python.

GtpEngine       one command line in, one response out (`handle`), around a player: the
                protocol's state (board, komi, the moves for `undo`) and its errors
serve           the engine on a pair of text streams until `quit` or the end of input
GtpClient       a GTP engine in a subprocess (`gnugo --mode gtp`), command by command
LocalClient     a GtpEngine in this process behind GtpClient's interface
play_match_game a game between two GTP clients (or one playing both colours), as moves and the
                result, for `bellman data gnugo` and benchmarks/go_vs_gnugo.py
gnugo_games     `bellman data gnugo`: GnuGo against itself, one SGF file per game, games on
                every core at once (`play_gnugo_games`)

The engine answers, as the specification (Farnebäck, GTP v2 draft, 2002) asks, `=[id] result`
or `?[id] message` followed by an empty line; a malformed or unknown command, an illegal move
(occupied, suicide, superko, off the board, after the game's end), a wrong board size or a bad
komi is a `?` answer and the engine goes on. Commands: protocol_version, name, version,
known_command, list_commands, boardsize, clear_board, komi, play, genmove, undo, final_score,
showboard, quit.

`play` or `genmove` for the colour not to move plays that colour (controllers send setup and
handicap stones this way, and GoGui or Sabaki when a user edits the board): the move is given
to it (`Go.set_to_play`) without a pass for the other colour, so no pass is invented that could
end the game; `undo` takes back the move and gives the turn back as it was.

Deviations, all answered with a clear `?` message:
- Only the player's board size is accepted by `boardsize` (its network knows one size).
- `komi` sets the komi of `final_score` and of the game's end; the player searches with the
  komi it was trained with.
- The engine never resigns; it passes when its search's game is over (its move cap) or when
  the game is over for the rules.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bellman.errors import BellmanError
from bellman.games import Go, IllegalMoveError

COMMANDS = (
    "protocol_version", "name", "version", "known_command", "list_commands", "boardsize",
    "clear_board", "komi", "play", "genmove", "undo", "final_score", "showboard", "quit",
)  # fmt: skip
#: The engine's move cap, in board points: far more moves than a real game has (the players'
#: own caps are lower; past theirs they pass).
_ENGINE_CAP_PER_POINT = 4


class GtpError(BellmanError):
    """A GTP command that fails: answered `? message`, never fatal."""


def parse_colour(text: str) -> int:
    """GTP colour (`b`, `black`, `w`, `white`, any case) as player 0 (black) or 1 (white)."""
    colour = text.lower()
    if colour in ("b", "black"):
        return 0
    if colour in ("w", "white"):
        return 1
    raise GtpError(f"invalid color '{text}'; valid: black, white, b, w")


def result_of_score(score: float) -> str:
    """GTP's final_score text of black minus white: `B+3.5`, `W+0.5` or `0`."""
    return "0" if score == 0 else f"B+{score:g}" if score > 0 else f"W+{-score:g}"


class GtpEngine:
    """The GTP state machine around a player.

    Args:
        player: state -> action; its game is `game` (the same size); it may see any legal
            position, black or white to move.
        game: the player's Go game (board size; its komi until a `komi` command).
        name, version: the answers of `name` and `version`.
        player_over: state -> True when the player's own game is over there (its move cap):
            the engine then passes instead of asking it.
    """

    def __init__(
        self,
        player: Callable[[Any], int],
        game: Go,
        name: str = "bellman",
        version: str = "",
        player_over: Callable[[Any], bool] | None = None,
    ):
        self.player, self.name, self.version = player, name, version
        self.size = game.size
        self.player_over = player_over or game.is_terminal
        self.game = self._rules(game.komi)
        self.states = [self.game.initial_state()]
        self.quit = False

    def _rules(self, komi: float) -> Go:
        return Go(self.size, komi=komi, max_moves=_ENGINE_CAP_PER_POINT * self.size * self.size)

    @property
    def state(self):
        return self.states[-1]

    # ---- one line ------------------------------------------------------------------------
    def handle(self, line: str) -> str | None:
        """The response to one command line (with its trailing empty line), or None for a line
        that is empty or only a comment."""
        text = "".join(c for c in line if c in "\t\n" or (ord(c) >= 32 and ord(c) != 127))
        text = text.split("#", 1)[0].replace("\t", " ").strip()
        if not text:
            return None
        words = text.split()
        ident = ""
        if words[0].isdigit():
            ident, words = words[0], words[1:]
        if not words:
            return f"?{ident} missing command\n\n"
        command, args = words[0], words[1:]
        try:
            if command not in COMMANDS:
                raise GtpError("unknown command")
            answer = getattr(self, f"_cmd_{command}")(args)
        except GtpError as error:
            return f"?{ident} {error}\n\n"
        return f"={ident} {answer}".rstrip(" ") + "\n\n"

    # ---- the commands --------------------------------------------------------------------
    def _cmd_protocol_version(self, args: list[str]) -> str:
        return "2"

    def _cmd_name(self, args: list[str]) -> str:
        return self.name

    def _cmd_version(self, args: list[str]) -> str:
        return self.version

    def _cmd_known_command(self, args: list[str]) -> str:
        _arguments(args, 1, "known_command COMMAND")
        return "true" if args[0] in COMMANDS else "false"

    def _cmd_list_commands(self, args: list[str]) -> str:
        return "\n".join(COMMANDS)

    def _cmd_boardsize(self, args: list[str]) -> str:
        _arguments(args, 1, "boardsize SIZE")
        if not args[0].isdigit():
            raise GtpError(f"boardsize needs an integer, got '{args[0]}'")
        if int(args[0]) != self.size:
            raise GtpError(f"unacceptable size (this player plays {self.size}x{self.size} only)")
        return self._cmd_clear_board([])

    def _cmd_clear_board(self, args: list[str]) -> str:
        self.states = [self.game.initial_state()]
        return ""

    def _cmd_komi(self, args: list[str]) -> str:
        _arguments(args, 1, "komi FLOAT")
        try:
            komi = float(args[0])
            self.game = self._rules(komi)
        except (ValueError, BellmanError):
            raise GtpError(f"komi needs a finite number, got '{args[0]}'") from None
        return ""

    def _cmd_play(self, args: list[str]) -> str:
        _arguments(args, 2, "play COLOR VERTEX")
        colour = parse_colour(args[0])
        try:
            action = self.game.parse_action(args[1])
        except IllegalMoveError:
            raise GtpError(f"invalid coordinate '{args[1]}'") from None
        state = self._turn(colour)
        try:
            self.states.append(self.game.apply(state, action))
        except IllegalMoveError as error:
            raise GtpError(f"illegal move: {error}") from None
        return ""

    def _cmd_genmove(self, args: list[str]) -> str:
        _arguments(args, 1, "genmove COLOR")
        state = self._turn(parse_colour(args[0]))
        if self.player_over(state):
            action = self.game.pass_action
        else:
            action = int(self.player(state))
            if not self.game.legal_mask(state)[action]:
                action = self.game.pass_action  # (the player's game may differ in komi only)
        self.states.append(self.game.apply(state, action))
        return self.game.format_action(action).upper()

    def _cmd_undo(self, args: list[str]) -> str:
        if len(self.states) == 1:
            raise GtpError("cannot undo")
        self.states.pop()
        return ""

    def _cmd_final_score(self, args: list[str]) -> str:
        return result_of_score(self.game.score(self.state))

    def _cmd_showboard(self, args: list[str]) -> str:
        mover = "black" if self.game.to_play(self.state) == 0 else "white"
        return "\n" + self.game.render(self.state) + f"\n{mover} to move"

    def _cmd_quit(self, args: list[str]) -> str:
        self.quit = True
        return ""

    def _turn(self, colour: int):
        """The position with `colour` to move; refused after the game has ended."""
        if self.game.is_terminal(self.state):
            raise GtpError("illegal move: the game is over (two passes); clear_board starts anew")
        return self.game.set_to_play(self.state, colour)


def _arguments(args: list[str], count: int, usage: str) -> None:
    if len(args) != count:
        raise GtpError(f"syntax error: usage: {usage}")


def serve(engine: GtpEngine, reader: IO[str], writer: IO[str]) -> None:
    """Answer the commands of `reader` on `writer` (flushed after each) until `quit` or EOF."""
    for line in reader:
        response = engine.handle(line)
        if response is None:
            continue
        writer.write(response)
        writer.flush()
        if engine.quit:
            return


# ---- the client side -----------------------------------------------------------------------
class GtpClient:
    """A GTP engine in a subprocess, e.g. `GtpClient(["gnugo", "--mode", "gtp"])`.

    Args:
        command: the engine's command line.
        timeout: seconds a response may take before the engine is taken as hung.

    Raises (from `send`): GtpError for a `?` answer, or an engine that died or answered out of
    protocol. The engine's stderr is discarded (GnuGo writes its progress there).
    """

    def __init__(self, command: list[str], timeout: float = 120.0):
        self.command, self.timeout = command, timeout
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1,
        )  # fmt: skip

    def send(self, command: str) -> str:
        """One command; its `=` answer's text (stripped)."""
        process = self.process
        try:
            process.stdin.write(command + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise GtpError(f"GTP engine {self.command[0]} has exited") from None
        lines = []
        while True:
            line = process.stdout.readline()
            if line == "":
                raise GtpError(f"GTP engine {self.command[0]} exited during '{command}'")
            if line.strip() == "" and lines:
                break
            if line.strip() or lines:
                lines.append(line.rstrip("\n"))
        return answer_text("\n".join(lines), command, self.command[0])

    def close(self) -> None:
        """`quit`, then wait a little; kill an engine that does not go."""
        try:
            self.send("quit")
        except GtpError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> GtpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def answer_text(answer: str, command: str, engine: str) -> str:
    """The text of a `=[id] text` answer to `command`; GtpError for a `?` answer or one out of
    protocol."""
    match = re.match(r"([=?])\d*(?:\s(.*))?$", answer.strip(), re.DOTALL)
    if match is None:
        raise GtpError(f"GTP engine {engine} answered '{answer[:60]}' to '{command}'")
    if match[1] == "?":
        raise GtpError(f"GTP engine {engine}: '{command}' failed: {(match[2] or '').strip()}")
    return (match[2] or "").strip()


class LocalClient:
    """A `GtpEngine` in this process behind `GtpClient`'s interface (`send`, `close`): a
    bellman player in a match without a subprocess; the same answers as through a pipe."""

    def __init__(self, engine: GtpEngine):
        self.engine, self.command = engine, [engine.name]

    def send(self, command: str) -> str:
        return answer_text(self.engine.handle(command) or "=", command, self.engine.name)

    def close(self) -> None:
        self.engine.handle("quit")

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class MatchGame:
    """One game between GTP engines: the moves (actions of `game`) and SGF's result text
    (`B+R` / `W+R` for a resignation, else the Tromp-Taylor score, `B+3.5`)."""

    moves: list[int]
    result: str
    black_won: bool | None


def play_match_game(
    black: GtpClient,
    white: GtpClient,
    game: Go,
    max_moves: int | None = None,
    referee: GtpClient | None = None,
) -> MatchGame:
    """A game from the empty board: each engine is told the other's moves (`play`) and asked
    for its own (`genmove`); one client for both colours is asked for both. The game ends at
    two passes, a resignation or `max_moves` (default the game's cap). It is scored by the
    `referee`'s `final_score` when given (an engine that played the game, e.g. GnuGo, which
    removes dead stones first, as the players who passed expect), else by bellman's
    Tromp-Taylor rules (every stone counts as it stands).
    """
    engines = [black] if black is white else [black, white]
    for engine in engines:
        engine.send(f"boardsize {game.size}")
        engine.send("clear_board")
        engine.send(f"komi {game.komi:g}")
    limit = max_moves or game.max_moves
    state, moves, colours = game.initial_state(), [], ("black", "white")
    while not game.is_terminal(state) and len(moves) < limit:
        mover = game.to_play(state)
        engine = (black, white)[mover]
        answer = engine.send(f"genmove {colours[mover]}").strip()
        if answer.lower() == "resign":
            winner = 1 - mover
            return MatchGame(moves, "BW"[winner] + "+R", winner == 0)
        try:
            action = game.parse_action(answer)
            state = game.apply(state, action)
        except IllegalMoveError as error:
            raise GtpError(f"GTP engine {engine.command[0]} played '{answer}': {error}") from None
        moves.append(action)
        for other in engines:
            if other is not engine:
                other.send(f"play {colours[mover]} {answer}")
    if referee is not None:
        result = referee.send("final_score").strip().upper()
        if not re.fullmatch(r"0|[BW]\+\d+(\.\d+)?", result):
            raise GtpError(f"GTP referee {referee.command[0]} scored the game '{result}'")
        return MatchGame(moves, result, None if result == "0" else result.startswith("B"))
    score = game.score(state)
    return MatchGame(moves, result_of_score(score), None if score == 0 else score > 0)


def play_against_gnugo(
    ours: GtpClient, game: Go, level: int, seed: int, ours_black: bool, area_rules: bool = False
) -> tuple[MatchGame, bool | None]:
    """One game of the engine behind `ours` against `gnugo_command(level, seed, area_rules)`:
    scored by GnuGo's `final_score`, or with `area_rules` by Tromp-Taylor on the board as it
    stands. Returns the game and whether `ours` won it (None: a draw)."""
    with GtpClient(gnugo_command(level, seed, area_rules)) as gnugo:
        black, white = (ours, gnugo) if ours_black else (gnugo, ours)
        played = play_match_game(black, white, game, referee=None if area_rules else gnugo)
    if played.black_won is None:
        return played, None
    return played, played.black_won == ours_black


# ---- expert games: `bellman data gnugo` ----------------------------------------------------
GNUGO_LEVELS = range(0, 11)
"""GnuGo's --level values (0 weakest and fastest, 10 the default and strongest)."""


def find_gnugo() -> str:
    """The gnugo program (Debian puts it in /usr/games, often not on PATH).

    Raises:
        ConfigError: gnugo is not installed.
    """
    import shutil

    from bellman.errors import ConfigError

    found = shutil.which("gnugo") or shutil.which("gnugo", path="/usr/games:/usr/local/games")
    if found is None:
        raise ConfigError(
            "gnugo is not installed; install Debian's gnugo package (apt-get install gnugo, "
            "which `make gnugo` does as root)"
        )
    return found


def gnugo_command(level: int, seed: int, area_rules: bool = False) -> list[str]:
    """`gnugo --mode gtp --level L --seed S` (one engine: its own random choices by seed).

    With `area_rules`, GnuGo also plays by area scoring and captures every dead stone of its
    opponent before it passes (`--chinese-rules --capture-all-dead`), as programs on the
    computer Go servers that score by Tromp-Taylor do: the board left after two passes is then
    scored as it stands, by the rules bellman's agents play."""
    from bellman.errors import ConfigError

    if isinstance(level, bool) or level not in GNUGO_LEVELS:
        raise ConfigError(f"GnuGo level {level!r} is not valid; valid: 0-10")
    command = [find_gnugo(), "--mode", "gtp", "--level", str(level), "--seed", str(seed)]
    return command + (["--chinese-rules", "--capture-all-dead"] if area_rules else [])


def gnugo_games(
    out: Path,
    games: int,
    level: int,
    size: int = 9,
    komi: float = 7.5,
    seed: int = 0,
    report: Callable[[str], None] | None = None,
    workers: int = 0,
) -> list[Path]:
    """`games` games of GnuGo against itself as SGF files `out/gnugo-L{level}-{n:05d}.sgf`
    (game n with --seed seed + n, so each game differs and a seed gives the same files),
    scored by GnuGo (`final_score`: dead stones removed), `workers` games at a time (0: one per
    core; see `play_gnugo_games`).

    Everything is checked before the first game: the level, the board, gnugo itself, the
    workers, and that `out` can be written and holds no SGF file yet (a second run never mixes
    with a first). Each file is written atomically once its game is over.

    Raises:
        ConfigError: a bad count, level, board or workers; gnugo missing; `out` unusable or not
            empty.
        GtpError: gnugo failed during a game.
    """
    from bellman.errors import ConfigError
    from bellman.run import check_writable_path

    if isinstance(games, bool) or not isinstance(games, int) or games < 1:
        raise ConfigError(f"--games must be at least 1, got {games!r}")
    game = Go(size, komi=komi)
    gnugo_command(level, seed)  # the level and gnugo itself, before anything is written
    workers = gnugo_workers(workers)
    out = Path(out)
    check_writable_path(out, "--out")
    if out.is_dir() and any(out.glob("*.sgf")):
        raise ConfigError(f"--out '{out}' already holds SGF files; choose a new directory")
    out.mkdir(parents=True, exist_ok=True)

    def done(number: int, played: MatchGame) -> None:
        if report is not None:
            report(f"game {number + 1}/{games}: {len(played.moves)} moves, {played.result}")

    return play_gnugo_games(game, out, level, range(games), seed, workers, done=done)


def gnugo_workers(workers: int) -> int:
    """The GnuGo processes to run at once: `workers`, or one per core for 0.

    Raises:
        ConfigError: `workers` is negative or above 256.
    """
    import os

    from bellman.errors import ConfigError

    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 256:
        raise ConfigError(f"GnuGo workers must be 0 (one per core) to 256, got {workers!r}")
    return workers or os.cpu_count() or 1


def play_gnugo_games(
    game: Go,
    folder: Path,
    level: int,
    numbers,
    seed: int,
    workers: int,
    check: Callable[[], None] = lambda: None,
    done: Callable[[int, MatchGame], None] | None = None,
) -> list[Path]:
    """GnuGo's games `numbers` against itself (game n: `gnugo --level level --seed seed + n`)
    written to `folder/gnugo_file_name(level, n)`, `workers` games at a time: each game is its
    own gnugo process, so the files are the same for any number of workers (threads here only
    wait on the pipes). `check()` runs before each game starts; whatever it raises (a stop
    request) or a failed game ends the rest: games not started are cancelled, those running
    finish and are written, and the exception is raised. `done(n, game)` is called in the
    order of `numbers`. Returns the files in that order."""
    from concurrent.futures import ThreadPoolExecutor

    from bellman.checkpoint import atomic_write_text

    def one(number: int) -> MatchGame:
        check()
        text, played = gnugo_game(game, level, seed + number)
        atomic_write_text(Path(folder) / gnugo_file_name(level, number), text)
        return played

    numbers = list(numbers)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [pool.submit(one, number) for number in numbers]
        try:
            for number, future in zip(numbers, futures, strict=True):
                played = future.result()
                if done is not None:
                    done(number, played)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [Path(folder) / gnugo_file_name(level, number) for number in numbers]


def gnugo_file_name(level: int, number: int) -> str:
    """The SGF file of GnuGo's game `number` at `level`: gnugo-L1-00007.sgf."""
    return f"gnugo-L{level}-{number:05d}.sgf"


def gnugo_game(game: Go, level: int, seed: int) -> tuple[str, MatchGame]:
    """One game of `gnugo --level level --seed seed` against itself: (SGF text, the game)."""
    from bellman.games.sgf import to_sgf

    with GtpClient(gnugo_command(level, seed)) as engine:
        name = f"{engine.send('name')} {engine.send('version')} level {level}"
        played = play_match_game(engine, engine, game, referee=engine)
    return to_sgf(game, played.moves, black=name, white=name, result=played.result), played
