"""SGF (Smart Game Format, FF[4]) for bellman's games: a game's moves written as a record that
Go programs and viewers (GnuGo, GoGui, Sabaki) open, and such records read back as moves.

to_sgf          the record of a move sequence: root properties, then one node per move
parse_sgf       the main line of a record as nodes (property -> values), any FF[4] collection
read_sgf        a record as `SgfRecord` (game name, moves, root properties), every move replayed
                and checked by the game's own rules
read_sgf_file   `read_sgf` of a file (writing one atomically is `checkpoint.atomic_write_text`)

Points are SGF's two letters, column then row, `a` = the left column / the top row, which is
bellman's layout (row 0 at the top), so Go action `row * N + col` is `chr(97 + col) +
chr(97 + row)`. A pass is the empty value `B[]` (FF[4]); `tt` is read as a pass on boards up
to 19x19 (FF[3]). Black is player 0. Go records carry `GM[1]SZ[N]KM[komi]RU[Tromp-Taylor]`.
SGF has no game number for tic-tac-toe or Connect Four, so their records name the game in the
private property `BELLMANGAME[...]` and give the board as `SZ[columns:rows]`; a Connect Four
move is the cell its stone lands on (a viewer shows the board), read back as its column and
checked against where the stone would land.

In Go two moves of one colour in a row are legal SGF (a setup stone, a handicap stone or an
edited board sent over GTP): `to_sgf` writes them given each move's colour (`players`) and
`read_sgf` reads them back (`SgfRecord.players`), giving the move with `Go.set_to_play`.

Reading refuses, with one `SgfError` naming the node and the rule: malformed text, a record for
another game or board size, setup stones (`AB`/`AW`/`AE`: handicaps are not supported), two
moves in a node, moves out of turn (other games than Go), and moves the rules forbid (occupied,
suicide, superko, a full column).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bellman.errors import BellmanError
from bellman.games import Game, Go, IllegalMoveError, make_game

#: The largest record `read_sgf` accepts (a 19x19 game with comments is ~20 kB).
MAX_SGF_BYTES = 4_000_000
#: The private root property that names a game SGF has no number for.
GAME_PROPERTY = "BELLMANGAME"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class SgfError(BellmanError):
    """A malformed SGF record, or one bellman cannot replay (see the module docstring)."""


@dataclass
class SgfRecord:
    """One game read from SGF.

    Attributes:
        game: the game, built with the record's board size and komi (Go).
        moves: the actions, from the empty board.
        properties: the root node's properties (first value of each), e.g. PB, PW, RE, DT.
        players: the player of each move (0 black); they alternate except in a Go record with
            two moves of one colour in a row.
    """

    game: Game
    moves: list[int]
    properties: dict[str, str] = field(default_factory=dict)
    players: list[int] = field(default_factory=list)


# ---- writing -------------------------------------------------------------------------------
def _escape(text: str) -> str:
    """A property value's text with `]` and `\\` escaped."""
    return str(text).replace("\\", "\\\\").replace("]", "\\]")


def _width_height(game: Game) -> tuple[int, int]:
    rows, columns = game.board_shape
    return columns, rows


def _point(col: int, row: int) -> str:
    return _LETTERS[col] + _LETTERS[row]


def _occupied(game: Game, state: Any) -> np.ndarray:
    """Boolean `[H, W]`: the cells with a stone (the observation's first two planes)."""
    planes = game.observation(state)
    return (planes[0] > 0) | (planes[1] > 0)


def _move_point(game: Game, state: Any, action: int) -> str:
    """The SGF value of `action` played at `state` ('' for a Go pass)."""
    width, _ = _width_height(game)
    if isinstance(game, Go):
        if action == game.pass_action:
            return ""
        return _point(action % width, action // width)
    if game.name == "connect4":  # the cell where the stone lands
        landed = _occupied(game, game.apply(state, action)) & ~_occupied(game, state)
        row = int(np.argmax(landed[:, action]))
        return _point(action, row)
    return _point(action % width, action // width)


def result_text(game: Game, state: Any) -> str:
    """SGF's RE of a finished game: `B+3.5` (Go, by the score), `B+` / `W+`, `0` for a draw;
    '' for a game that is not over."""
    if not game.is_terminal(state):
        return ""
    if isinstance(game, Go):
        score = game.score(state)
        return "0" if score == 0 else f"B+{score:g}" if score > 0 else f"W+{-score:g}"
    first = game.outcome(state) * (1 if game.to_play(state) == 0 else -1)
    return "0" if first == 0 else "B+" if first > 0 else "W+"


def to_sgf(
    game: Game,
    moves: Sequence[int],
    *,
    black: str = "",
    white: str = "",
    result: str | None = None,
    date: str | None = None,
    comment: str = "",
    players: Sequence[int] | None = None,
) -> str:
    """The SGF record of `moves` played from the empty board.

    Args:
        game: the game (its name, board size and komi go into the root node).
        moves: the actions; each is checked by the game's rules (IllegalMoveError otherwise).
        black, white: the players' names (PB, PW); player 0 is black.
        result: RE; None: computed from the final position when the game is over
            (`result_text`); '' leaves it out (e.g. a game stopped by a resignation is
            `B+R` / `W+R`, which only the caller knows).
        date: DT, default today (UTC).
        comment: the root's C.
        players: the player of each move (0 black, 1 white), Go only: a colour may move twice
            in a row (`Go.set_to_play`); None: the players alternate.

    Returns:
        One line of FF[4] text ending with a newline.
    """
    width, height = _width_height(game)
    root = ["FF[4]", "CA[UTF-8]", "AP[bellman]"]
    if isinstance(game, Go):
        root += ["GM[1]", f"SZ[{game.size}]", f"KM[{game.komi:g}]", "RU[Tromp-Taylor]"]
    else:
        size = f"{width}" if width == height else f"{width}:{height}"
        root += [f"{GAME_PROPERTY}[{game.name}]", f"SZ[{size}]"]
    if players is not None and (not isinstance(game, Go) or len(players) != len(moves)):
        raise ValueError("to_sgf: players needs a Go game and one player per move")
    state, nodes = game.initial_state(), []
    for number, action in enumerate(moves, start=1):
        action = int(action)
        if players is not None and not game.is_terminal(state):
            state = game.set_to_play(state, int(players[number - 1]))
        if game.is_terminal(state) or not game.legal_mask(state)[action]:
            raise IllegalMoveError(f"move {number} ({game.format_action(action)}) is illegal")
        colour = "B" if game.to_play(state) == 0 else "W"
        nodes.append(f";{colour}[{_move_point(game, state, action)}]")
        state = game.apply(state, action)
    if result is None:
        result = result_text(game, state)
    date = date if date is not None else dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    for key, value in (("PB", black), ("PW", white), ("RE", result), ("DT", date),
                       ("C", comment)):  # fmt: skip
        if value:
            root.append(f"{key}[{_escape(value)}]")
    return "(;" + "".join(root) + "".join(nodes) + ")\n"


# ---- reading -------------------------------------------------------------------------------
_START = re.compile(r"\(\s*;")


def _value(text: str, start: int) -> tuple[str, int]:
    """The value of `[...]` opening at `text[start]` (escapes resolved), and the index after."""
    out, index = [], start + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 < len(text) and text[index + 1] not in "\r\n":
                out.append(text[index + 1])  # an escaped character (a soft line break: none)
            index += 2
            continue
        if char == "]":
            return "".join(out), index + 1
        out.append(char)
        index += 1
    raise SgfError(f"SGF value opened at character {start + 1} is never closed with ']'")


def _property(text: str, index: int) -> tuple[str, list[str], int]:
    """The property starting at `text[index]`: (identifier, values, index after). FF[3]'s
    lower-case letters inside identifiers (`AddBlack`) are dropped, as FF[4] asks."""
    end = index
    while end < len(text) and text[end].isalpha():
        end += 1
    ident = "".join(char for char in text[index:end] if char.isupper())
    values, index = [], end
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text) or text[index] != "[":
            break
        value, index = _value(text, index)
        values.append(value)
    if not ident or not values:
        raise SgfError(f"SGF property '{text[end - 1 : end] or ident}' at character {end} "
                       "has no upper-case name or no [value]")  # fmt: skip
    return ident, values, index


def parse_sgf(text: str) -> list[dict[str, list[str]]]:
    """The main line of the first game of an SGF collection: a list of nodes, each
    {property: [values]}. The main line is the first variation at every branch, i.e. every
    node before the record's first ')': the later ones belong to other variations.

    Raises:
        SgfError: the text is not SGF (no `(;`, unbalanced brackets, a value outside a
            property, a property repeated in a node, a stray character).
    """
    match = _START.search(text)
    if match is None:
        raise SgfError("not an SGF record: it must start with '(;'")
    nodes: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] | None = None
    depth, index, main_line = 0, match.start(), True
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char == "(":
            depth, index = depth + 1, index + 1
        elif char == ")":
            depth, index, main_line = depth - 1, index + 1, False
            if depth == 0:
                break
        elif char == ";":
            index += 1
            current = {} if main_line else None
            if current is not None:
                nodes.append(current)
        elif char.isalpha():
            ident, values, index = _property(text, index)
            if current is not None:
                if ident in current:
                    raise SgfError(f"SGF property {ident} appears twice in node {len(nodes)}")
                current[ident] = values
        else:
            raise SgfError(f"unexpected {char!r} at character {index + 1} of the SGF record")
    if depth != 0:
        raise SgfError("SGF record ends before its ')' (unbalanced parentheses)")
    return nodes


def _game_of(root: dict[str, list[str]], game_name: str | None) -> Game:
    """The game a record's root names (GM[1] + SZ, or BELLMANGAME), checked against
    `game_name` when given."""
    size_text = root.get("SZ", ["19"])[0]
    if GAME_PROPERTY in root:
        name = root[GAME_PROPERTY][0]
        game = make_game(name) if name in ("tictactoe", "connect4") else None
        if game is None:
            raise SgfError(f"SGF names the game '{name}'; valid: tictactoe, connect4")
        width, height = _width_height(game)
        expected = f"{width}" if width == height else f"{width}:{height}"
        if size_text != expected and "SZ" in root:
            raise SgfError(f"SGF {name} record has SZ[{size_text}], not SZ[{expected}]")
    else:
        if root.get("GM", ["1"])[0] != "1":
            raise SgfError(f"SGF game GM[{root['GM'][0]}] is not Go (GM[1])")
        try:
            komi = float(root.get("KM", ["7.5"])[0] or 7.5)
            game = Go(int(size_text), komi=komi)
        except (ValueError, BellmanError) as error:
            raise SgfError(f"SGF Go record with SZ[{size_text}]: {error}") from None
    if game_name is not None and game.name != game_name:
        raise SgfError(f"the SGF record is a {game.name} game, not {game_name}")
    return game


def _action_of(game: Game, state: Any, value: str, where: str) -> int:
    """The action of SGF point `value` at `state`."""
    width, height = _width_height(game)
    if isinstance(game, Go) and (value == "" or (value == "tt" and game.size <= 19)):
        return game.pass_action
    if len(value) != 2 or value[0] not in _LETTERS[:width] or value[1] not in _LETTERS[:height]:
        raise SgfError(f"{where}: '{value}' is not a point of the {width}x{height} board")
    col, row = _LETTERS.index(value[0]), _LETTERS.index(value[1])
    if game.name == "connect4":
        if 0 <= col < width and game.legal_mask(state)[col]:
            landing = _move_point(game, state, col)
            if landing != value:
                raise SgfError(f"{where}: a stone in column {col + 1} lands on '{landing}', "
                               f"not '{value}'")  # fmt: skip
        return col
    return row * width + col


def read_sgf(text: str, game_name: str | None = None) -> SgfRecord:
    """The game of an SGF record, every move replayed by the game's rules.

    Args:
        text: the SGF text.
        game_name: the game expected (e.g. 'go9'); None: whichever the record names.

    Raises:
        SgfError: malformed, another game, setup stones, moves out of turn or illegal.
    """
    if len(text) > MAX_SGF_BYTES:
        raise SgfError(f"SGF record of {len(text)} characters is over {MAX_SGF_BYTES}")
    nodes = parse_sgf(text)
    root = nodes[0]
    game = _game_of(root, game_name)
    moves_in_root = [key for key in ("B", "W") if key in root]
    body = nodes if moves_in_root else nodes[1:]
    if isinstance(game, Go):
        game = Go(game.size, komi=game.komi, max_moves=max(game.max_moves, len(body)))
    state, moves, players = game.initial_state(), [], []
    for number, node in enumerate(nodes):
        setup = [key for key in ("AB", "AW", "AE") if key in node]
        if setup:
            raise SgfError(
                f"SGF node {number + 1}: setup stones ({', '.join(setup)}; handicaps) are not "
                "supported: records start from the empty board"
            )
    for number, node in enumerate(body, start=1):
        where = f"SGF move {number}"
        colours = [key for key in ("B", "W") if key in node]
        if not colours:
            continue  # a node with only comments or markup
        if len(colours) > 1:
            raise SgfError(f"{where}: a node with both B and W")
        expected = "B" if game.to_play(state) == 0 else "W"
        if colours[0] != expected and isinstance(game, Go) and not game.is_terminal(state):
            state = game.set_to_play(state, "BW".index(colours[0]))
        elif colours[0] != expected:
            raise SgfError(f"{where}: {colours[0]} plays out of turn ({expected} to move)")
        action = _action_of(game, state, node[colours[0]][0], where)
        try:
            state = game.apply(state, action)
        except IllegalMoveError as error:
            raise SgfError(f"{where} ({game.format_action(action)}): {error}") from None
        moves.append(action)
        players.append("BW".index(colours[0]))
    properties = {key: values[0] for key, values in root.items()}
    return SgfRecord(game, moves, properties, players)


def read_sgf_file(path: Path, game_name: str | None = None) -> SgfRecord:
    """`read_sgf` of a file; SgfError names the file (OSError for a missing or unreadable one)."""
    path = Path(path)
    if path.stat().st_size > MAX_SGF_BYTES:
        raise SgfError(f"{path}: over {MAX_SGF_BYTES} bytes, not an SGF game record")
    try:
        return read_sgf(path.read_text(encoding="utf-8", errors="replace"), game_name)
    except SgfError as error:
        raise SgfError(f"{path}: {error}") from None
