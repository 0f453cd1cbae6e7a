"""AlphaGo (2016): a policy learned from experts, improved by self-play, a value net, and a tree
search whose leaves mix the value net with fast rollouts.

Silver et al., "Mastering the game of Go with deep neural networks and tree search", Nature 529,
2016. The pipeline, as the paper describes it (its stages are this module's stages, run in this
order and each reported with the paper's own metric):

    1. sl       Supervised learning of a policy network p_sigma(a | s) on expert positions
                (s, a), maximising log p_sigma(a | s) by stochastic gradient ascent.
                Metric: accuracy on held-out expert moves (paper: 57.0% on KGS).
    2. rollout  A fast linear softmax rollout policy p_pi(a | s) on the same positions.
                Metric: its accuracy and time per move (paper: 24.2% at 2 us vs 3 ms for
                p_sigma).
    3. rl       A policy network p_rho, initialised to p_sigma, plays games against a randomly
                chosen earlier version of itself (a pool to which the current p_rho is added
                every `rl_pool_every` iterations); after each minibatch of n games
                    Delta rho = alpha / n sum_i sum_t d log p_rho(a_t^i | s_t^i) / d rho  z_t^i
                with z_t = +-1 the game's result for the player to move at t (REINFORCE).
                Metric: p_rho's win rate against p_sigma, both sampling moves (paper: 80%).
    4. value    A value network v_theta(s) ~ E[z_t | s_t = s, a_{t..T} ~ p_rho], trained by
                regression (MSE) on ONE position per self-play game: U ~ unif{1, ..., T_max};
                moves 1..U-1 from p_sigma, move U uniformly at random, then p_rho to the end;
                the position s_{U+1} with the final result z_{U+1}.
                Metric: MSE on held-out positions (and, for scale, that of predicting 0).
                The results are close to coin tosses (two sampling policies), so the net
                over-fits a few thousand positions: it trains on every symmetric copy, with
                weight decay, and keeps the epoch best on a validation share (early stopping).
    5. search   PUCT tree search (`bellman.search.mcts.MCTS`, the one search of bellman):
                    a_t = argmax_a Q(s_t, a) + u(s_t, a),
                    u(s, a) = c_puct P(s, a) sqrt(sum_b N(s, b)) / (1 + N(s, a)),
                priors P = p_sigma (the paper found the SL policy the better prior), and each
                leaf evaluated as
                    V(s_L) = (1 - lambda) v_theta(s_L) + lambda z_L,
                z_L the result of one rollout from s_L with p_pi (`MixedLeafEvaluator`).
                Metric: the paper's ablation table, lambda = 0 (value net only), 0.5 (mixed),
                1 (rollouts only), each against the others, the raw SL policy and the expert.

The expert: Debian's GnuGo for Go (SGF files from `bellman data gnugo`, or games generated here),
bellman's alpha-beta search (`bellman.search.alphabeta`) for Connect Four, both with a few
random opening moves so the games differ (`random_opening`).

One run is one resumable pipeline. Its step counter is the number of stages done (1 sl ... 5
search); it trains the first `steps` stages (all five by default), or up to `stage` when that
names one; `bellman train --resume RUN --steps N` takes a run on to stage N. A checkpoint is written
after each stage with every network trained so far, the metrics and every generator
(`seeding.capture_rngs`), so `--resume` continues at the next stage exactly as an uninterrupted
run would; a Ctrl-C or SIGTERM gives the stage in progress up within a game or a minibatch and
the run ends on its last checkpoint (step 0, the initial state, for a run stopped in stage 1).

Deviations from the paper:
    - Networks: p_sigma, p_rho and v_theta are bellman's residual `AlphaZeroNetwork` (the
      paper: 13-layer plain convnets); the policy nets train only its policy head's loss, the
      value net only its value head's. Inputs are the game's observation planes: on Go
      with `features = "tactical"` (the go9 config's) 13 of the paper's 48 hand-made feature
      planes join them (liberties, capture size, liberties after move, sensibleness; see
      `bellman.games.go`), with `features = "board"` none.
    - The rollout policy is a linear softmax over the same planes (the paper: over local 3x3
      and 12-point diamond patterns around the last moves), run in numpy.
    - Moves are sampled from the policies at temperature 1 in RL, value data and the RL/SL
      match, as in the paper; searched players play their most visited move.
    - The value stage's games are played 64 at a time (one network call per policy and
      ply), still one position per game.
    - The search evaluates leaves in batches (`search_batch_size`) with virtual loss in one
      thread, where the paper ran asynchronous CPU rollouts and GPU network calls.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bellman import seeding
from bellman.checkpoint import check_schema
from bellman.config import TrainConfig, choices, interval
from bellman.errors import ConfigError
from bellman.games import Game, Go, make_game
from bellman.nets import AlphaZeroNetwork, resolve_device
from bellman.run import Run
from bellman.search.alphabeta import AlphaBetaPlayer
from bellman.search.mcts import MCTS
from bellman.torch_state import load_module
from bellman.zero.arena import OpponentEnv, arena


class StageStopped(Exception):
    """A stop request (Ctrl-C, SIGTERM) noticed inside a stage: the stage is given up."""


def no_stop() -> None:
    """The stop check of code run outside a training run: never stops."""


STAGES = ("sl", "rollout", "rl", "value", "search")
"""The pipeline's stages, in order; the step counter is how many are done."""
GAMES = ("connect4", "go9", "go13", "go19")


@dataclass(frozen=True)
class AlphaGoConfig(TrainConfig):
    """Hyperparameters of the AlphaGo pipeline, sized for a CPU (the paper's in comments)."""

    env: str = ""
    """The game: connect4 (expert: alpha-beta) or go9/go13/go19 (expert: GnuGo)."""
    steps: int = field(default=5, metadata=interval("[1, 5]"))
    """Stages this run trains, 1 (sl) to 5 (search), when `stage` is all; `bellman train
    --resume RUN --steps N` continues a run to stage N."""
    log_every: int = field(default=1, metadata=interval("[1, inf)"))
    """Unused: every stage writes its row."""
    checkpoint_every: int = field(default=1, metadata=interval("[1, inf)"))
    """Unused: a checkpoint ends every stage."""
    stage: str = field(default="all", metadata=choices("all", *STAGES))
    """The last stage this run trains, by name (sl, rollout, rl, value, search), for the run's
    whole life; all: the first `steps` stages."""
    expert_games: int = field(default=400, metadata=interval("[2, inf)"))
    """Expert games of the SL and rollout stages (paper: 160,000 KGS games)."""
    expert_dir: str = ""
    """Go: a directory of SGF expert games (`bellman data gnugo`); empty: GnuGo plays them."""
    expert_workers: int = field(default=0, metadata=interval("[0, 256]"))
    """Go: GnuGo games played at once, each its own process (0: one per core); the games are
    the same for any number."""
    expert_depth: int = field(default=4, metadata=interval("[1, 12]"))
    """Connect Four: plies of the alpha-beta expert (with Connect4.heuristic)."""
    expert_level: int = field(default=1, metadata=interval("[0, 10]"))
    """Go: GnuGo's --level for the expert games and the search stage's GnuGo opponent."""
    random_opening: int = field(default=2, metadata=interval("[0, inf)"))
    """Connect Four: uniformly random first moves of each expert game, so the games differ."""
    held_out: float = field(default=0.1, metadata=interval("(0, 0.5]"))
    """Share of the expert games (and value positions) held out for the metrics."""
    blocks: int = field(default=2, metadata=interval("[0, 40]"))
    """Residual blocks of the policy and value networks."""
    channels: int = field(default=32, metadata=interval("[1, 512]"))
    """Channels of the networks."""
    value_hidden: int = field(default=32, metadata=interval("[1, 1024]"))
    """Hidden units of the value head."""
    batch_size: int = field(default=128, metadata=interval("[1, inf)"))
    """Minibatch of the SL, rollout and value stages (paper: 16 for SL, 32 for value)."""
    learning_rate: float = field(default=0.002, metadata=interval("(0, 1]"))
    """Adam's step size for SL, rollout and value (paper: SGD, 0.003 halved every 80M steps)."""
    sl_epochs: int = field(default=8, metadata=interval("[1, inf)"))
    """Passes over the expert positions of the SL policy."""
    rollout_epochs: int = field(default=8, metadata=interval("[1, inf)"))
    """Passes over the expert positions of the rollout policy."""
    rl_iterations: int = field(default=20, metadata=interval("[0, inf)"))
    """Policy-gradient updates of p_rho (paper: 10,000 minibatches)."""
    rl_games: int = field(default=32, metadata=interval("[2, inf)"))
    """Games per update, n (paper: 128)."""
    rl_learning_rate: float = field(default=0.0005, metadata=interval("(0, 1]"))
    """alpha of the policy gradient (Adam here; the paper: SGD at 0.001)."""
    rl_pool_every: int = field(default=5, metadata=interval("[1, inf)"))
    """Iterations between two additions of p_rho to the opponent pool (paper: 500)."""
    value_games: int = field(default=8000, metadata=interval("[8, inf)"))
    """Self-play games, one value position each (paper: 30 million)."""
    value_epochs: int = field(default=8, metadata=interval("[1, inf)"))
    """Passes over the value positions; the epoch with the lowest validation MSE is kept."""
    value_weight_decay: float = field(default=1e-3, metadata=interval("[0, 1]"))
    """AdamW's decoupled weight decay of the value net (it regresses noisy +-1 results)."""
    features: str = field(default="board", metadata=choices("board", "tactical"))
    """Go: the networks' input planes (`bellman.games.go`): board, the 6 planes of the rules'
    observation; tactical, those and 13 of the paper's feature planes (the liberties of every
    group, how many stones a move captures, the liberties its group keeps, sensibleness). The
    rollout policy sees them too (its time per move grows with them)."""
    sensible_playouts: bool = True
    """Go: the games played to their end for a result (stage 3's self-play, stage 4's value
    games, stage 5's rollouts) sample only moves that do not fill the mover's own eye, and pass
    only when no other move is left (`Go.playout_mask`), as Monte-Carlo Go's playouts do and as
    the paper's policies see in their "sensibleness" plane. Without it (false: every legal
    move), measured on the go9 run's nets: p_rho filled 5.9 of its own eyes a game and p_pi's
    rollouts from the empty board ended after 44 moves, on unsettled boards that Tromp-Taylor
    scores as they stand. No effect on Connect Four."""
    simulations: int = field(default=64, metadata=interval("[1, inf)"))
    """Search simulations per move in the search stage (and of the trained agent)."""
    c_puct: float = field(default=5.0, metadata=interval("(0, inf)"))
    """c_puct of u(s, a) (paper: 5)."""
    mixing: float = field(default=0.5, metadata=interval("[0, 1]"))
    """lambda of the trained agent's leaf evaluation (paper: 0.5)."""
    lambdas: str = "0,0.5,1"
    """The ablation's lambdas, comma-separated."""
    search_batch_size: int = field(default=8, metadata=interval("[1, 256]"))
    """Leaves evaluated per network call in the search (with virtual loss)."""
    virtual_loss: float = field(default=1.0, metadata=interval("[0, inf)"))
    """Virtual loss of the batched search."""
    arena_games: int = field(default=20, metadata=interval("[0, inf)"))
    """Games per pairing of the rl and search stages' matches, colours alternating."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch."""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the pipeline's networks train and play (auto: CUDA when present). The games'
    rules, the rollouts (numpy) and GnuGo stay on the CPU, and a run's agent searches on the
    CPU; `--resume` is exact on the CPU (on CUDA up to its kernels' nondeterminism)."""
    eval_opponent: str = field(default="alphabeta", metadata=choices("random", "mcts", "alphabeta"))
    """The fixed opponent of `bellman eval`."""
    baseline_depth: int = field(default=4, metadata=interval("[1, 12]"))
    """Plies of `bellman eval`'s alpha-beta opponent."""
    baseline_simulations: int = field(default=200, metadata=interval("[1, inf)"))
    """Simulations of `bellman eval`'s classic MCTS opponent."""

    def validate(self) -> None:
        if self.env and self.env not in GAMES:
            raise ConfigError(f"AlphaGo trains on {', '.join(GAMES)}, not '{self.env}'")
        if self.expert_dir and not self.env.startswith("go"):
            raise ConfigError("expert_dir holds SGF Go games: it is for go9, go13 or go19")
        if self.device == "cuda":
            resolve_device(self.device)  # no GPU visible: the ConfigError, before any writing
        if self.features != "board" and not self.env.startswith("go"):
            raise ConfigError(
                f"features = '{self.features}' are Go's planes; {self.env} has: board"
            )
        lambda_values(self.lambdas)

    @property
    def target(self) -> int:
        """The stages this run trains (1 sl ... 5 search)."""
        return self.steps if self.stage == "all" else STAGES.index(self.stage) + 1

    # what the arena's OpponentEnv and agent_search read of a config
    solve: bool = False
    """Unused by AlphaGo (kept for the shared search helpers): no MCTS-Solver."""


Config = AlphaGoConfig


def lambda_values(text: str) -> list[float]:
    """The ablation's lambdas from 'a,b,c', each in [0, 1]."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 <= v <= 1 for v in values):
        raise ConfigError(f"lambdas = '{text}' must be numbers in [0, 1], comma-separated")
    return values


# ---- the networks --------------------------------------------------------------------------
def build_net(config: AlphaGoConfig, game: Game) -> AlphaZeroNetwork:
    """A policy or value network (see the module docstring's deviations)."""
    return AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=config.blocks,
                            channels=config.channels, value_hidden=config.value_hidden)  # fmt: skip


class RolloutPolicy(nn.Module):
    """p_pi(a | s) = softmax(W x + b), x the flattened observation planes: linear and fast."""

    def __init__(self, game: Game):
        super().__init__()
        self.linear = nn.Linear(int(np.prod(game.observation_shape)), game.action_size)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        return self.linear(planes.flatten(1))

    def numpy_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(W [A, D], b [A]) as float32 arrays, for numpy rollouts."""
        return (self.linear.weight.detach().cpu().numpy().copy(),
                self.linear.bias.detach().cpu().numpy().copy())  # fmt: skip


def masked_probabilities(logits: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """softmax over the legal moves only: `[B, A]` logits and masks -> `[B, A]`."""
    logits = np.where(legal, logits, -np.inf)
    logits = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def device_of(network: nn.Module) -> torch.device:
    """The device a network's weights are on (where its inputs must go)."""
    return next(network.parameters()).device


def tensor(array: np.ndarray, network: nn.Module) -> torch.Tensor:
    """A numpy array as a tensor on `network`'s device."""
    return torch.from_numpy(array).to(device_of(network))


def policy_logits(network: nn.Module, game: Game, states: list) -> np.ndarray:
    """A policy network's logits `[B, A]` at `states` (one forward)."""
    planes = tensor(np.stack([game.observation(s) for s in states]), network)
    with torch.inference_mode():
        out = network(planes)
    return (out[0] if isinstance(out, tuple) else out).cpu().numpy()


def move_mask(game: Game, sensible: bool):
    """state -> the Boolean mask of the moves a game played out for its result samples from:
    `Go.playout_mask` when `sensible` (the `sensible_playouts` setting), else the legal moves."""
    return game.playout_mask if sensible and hasattr(game, "playout_mask") else game.legal_mask


def sampler(network: nn.Module, game: Game, rng: np.random.Generator, mask=None):
    """states -> actions sampled from the network's policy over the moves `mask(state)` allows
    (None: the legal moves)."""
    mask = mask or game.legal_mask

    def sample(states: list) -> list[int]:
        legal = np.stack([mask(s) for s in states])
        probabilities = masked_probabilities(policy_logits(network, game, states), legal)
        return [int(rng.choice(len(p), p=p)) for p in probabilities]

    return sample


def greedy_player(network: nn.Module, game: Game):
    """state -> the network policy's most probable legal move."""

    def act(state) -> int:
        logits = policy_logits(network, game, [state])[0]
        return int(np.argmax(np.where(game.legal_mask(state), logits, -np.inf)))

    return act


# ---- expert data ---------------------------------------------------------------------------
def connect4_expert_games(game: Game, config: AlphaGoConfig, rng, check=no_stop) -> list[list[int]]:
    """Alpha-beta against itself after `random_opening` random moves; distinct games only
    (`check()` before each game: it raises StageStopped on a stop request)."""
    expert = AlphaBetaPlayer(game, config.expert_depth, heuristic=game.heuristic,
                             seed=int(rng.integers(2**31)))  # fmt: skip
    games, seen, attempts = [], set(), 0
    while len(games) < config.expert_games and attempts < 20 * config.expert_games:
        check()
        attempts += 1
        state, moves = game.initial_state(), []
        while not game.is_terminal(state):
            if len(moves) < config.random_opening:
                action = int(rng.choice(game.legal_actions(state)))
            else:
                action = expert.act(state)
            moves.append(action)
            state = game.apply(state, action)
        if tuple(moves) not in seen:
            seen.add(tuple(moves))
            games.append(moves)
    return games


def go_expert_games(
    game: Go, config: AlphaGoConfig, run_dir: Path, check=no_stop
) -> list[list[int]]:
    """The SGF games of `expert_dir`, or `expert_games` GnuGo games played into run/expert/,
    `expert_workers` at a time, each file written when its game ends (`check()` before each
    starts), so a resumed run reads the games it has and plays only the rest (game n with
    GnuGo's --seed seed + n: the same games either way, and for any number of workers)."""
    from bellman.games.sgf import read_sgf_file
    from bellman.zero.gtp import gnugo_file_name, gnugo_workers, play_gnugo_games

    if config.expert_dir:
        files = sorted(Path(config.expert_dir).glob("*.sgf"))
        if len(files) < 2:
            raise ConfigError(
                f"expert_dir '{config.expert_dir}' holds {len(files)} SGF files; it needs at "
                "least 2 (bellman data gnugo --games N --out DIR)"
            )
    else:
        folder = run_dir / "expert"
        folder.mkdir(exist_ok=True)
        level, numbers = config.expert_level, range(config.expert_games)
        missing = [n for n in numbers if not (folder / gnugo_file_name(level, n)).exists()]
        play_gnugo_games(game, folder, level, missing, config.seed,
                         gnugo_workers(config.expert_workers), check)  # fmt: skip
        files = [folder / gnugo_file_name(level, n) for n in numbers]
    games = []
    for path in files:
        record = read_sgf_file(path, game.name)
        if any(player != number % 2 for number, player in enumerate(record.players)):
            raise ConfigError(
                f"expert game '{path}' has two moves of one colour in a row "
                "(setup stones); the SL stage needs games whose moves alternate"
            )
        games.append(record.moves)
    return games


def compact(planes: np.ndarray) -> np.ndarray:
    """`planes` as bytes when every value is 0 or 1 (a quarter of float32's memory: go9's
    tactical planes of 3,000 games with their symmetries are 1.4 GB instead of 5.7 GB), else
    as float32; `as_float` gives back the exact float32 values."""
    packed = planes.astype(np.uint8)
    return packed if np.array_equal(packed, planes) else planes.astype(np.float32)


def as_float(planes: np.ndarray) -> np.ndarray:
    """Planes stored by `compact` as the float32 the networks take (no copy when float32)."""
    return np.asarray(planes, dtype=np.float32)


def expert_positions(game: Game, games: list[list[int]], symmetries: bool):
    """(planes `[N, C, H, W]`, actions `[N]`) of every move of `games` (with every symmetric
    copy when `symmetries`); the planes stored by `compact`."""
    planes, actions = [], []
    for moves in games:
        state = game.initial_state()
        for action in moves:
            observation = game.observation(state)
            if symmetries:
                onehot = np.zeros(game.action_size, np.float32)
                onehot[action] = 1
                for sym_planes, sym_policy in game.symmetries(observation, onehot):
                    planes.append(compact(sym_planes))
                    actions.append(int(np.argmax(sym_policy)))
            else:
                planes.append(compact(observation))
                actions.append(action)
            state = game.apply(state, action)
    return np.stack(planes), np.array(actions, np.int64)  # float32 if any position was


def split(items: list, held_out: float, rng) -> tuple[list, list]:
    """(training, held-out) after a shuffle; at least one of each."""
    order = rng.permutation(len(items))
    cut = min(len(items) - 1, max(1, round(held_out * len(items))))
    return [items[i] for i in order[cut:]], [items[i] for i in order[:cut]]


# ---- stages 1, 2 and 4: supervised training ------------------------------------------------
def fit(
    model: nn.Module,
    inputs,
    targets,
    loss_of,
    config,
    epochs: int,
    rng,
    check=no_stop,
    weight_decay: float = 0.0,
    validation: tuple | None = None,
) -> float:
    """Minibatch Adam (AdamW's decoupled `weight_decay`) over (inputs, targets) for `epochs`
    passes (`check()` before each minibatch); returns the last epoch's mean loss.

    With `validation` = (inputs, targets), the loss there is measured after every epoch and
    the model ends with the weights of the epoch where it was lowest (early stopping); the
    returned loss is that epoch's training loss.
    """  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=weight_decay)  # fmt: skip
    best, best_loss, best_weights = math.inf, math.nan, None
    losses = []
    for _ in range(epochs):
        model.train()
        losses = []
        order = rng.permutation(len(targets))
        for start in range(0, len(order), config.batch_size):
            check()
            index = order[start : start + config.batch_size]
            if len(index) < 2:
                continue  # BatchNorm needs two samples
            loss = loss_of(model(tensor(as_float(inputs[index]), model)),
                           tensor(targets[index], model))  # fmt: skip
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        if validation is not None:
            model.eval()
            with torch.inference_mode():
                held = loss_of(model(tensor(as_float(validation[0]), model)),
                               tensor(validation[1], model)).item()  # fmt: skip
            if held < best:
                best, best_loss = held, float(np.mean(losses)) if losses else math.nan
                best_weights = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    if best_weights is not None:
        model.load_state_dict(best_weights)
        return best_loss
    return float(np.mean(losses)) if losses else math.nan


def policy_loss(output, actions: torch.Tensor) -> torch.Tensor:
    """-log p(a | s) averaged: the SL (and rollout) objective."""
    logits = output[0] if isinstance(output, tuple) else output
    return nn.functional.cross_entropy(logits, actions)


def value_loss(output, outcomes: torch.Tensor) -> torch.Tensor:
    """(z - v(s))^2 averaged: the value net's regression."""
    return ((output[1] - outcomes) ** 2).mean()


def accuracy(model: nn.Module, planes: np.ndarray, actions: np.ndarray) -> float:
    """Share of positions whose expert move is the model's most probable move."""
    with torch.inference_mode():
        output = model.eval()(tensor(as_float(planes), model))
    logits = output[0] if isinstance(output, tuple) else output
    return float((logits.argmax(dim=1).cpu().numpy() == actions).mean())


def seconds_per_move(act, game: Game, states: list) -> float:
    """Mean wall-clock seconds of `act(state)` over `states` (one position at a time)."""
    started = time.perf_counter()
    for state in states:
        act(state)
    return (time.perf_counter() - started) / len(states)


# ---- stages 3 and 4: games of sampled policies ---------------------------------------------
def play_games(game: Game, players: list, count: int, record: list[int] | None = None):
    """`count` games at once, the positions where the same sampler moves sampled in one call.

    Args:
        players: per game, (black, white) samplers `states -> actions`.
        record: per game, the colour (0 / 1) whose (state, action) pairs are recorded; None:
            nothing recorded.

    Returns:
        (results for black `[count]`, per game the recorded (states, actions)).
    """
    states = [game.initial_state() for _ in range(count)]
    recorded: list[tuple[list, list]] = [([], []) for _ in range(count)]
    while True:
        active = [g for g in range(count) if not game.is_terminal(states[g])]
        if not active:
            break
        groups: dict[int, list[int]] = {}
        for g in active:
            groups.setdefault(id(players[g][game.to_play(states[g])]), []).append(g)
        for members in groups.values():
            first = members[0]
            sample = players[first][game.to_play(states[first])]
            for g, action in zip(members, sample([states[g] for g in members]), strict=True):
                if record is not None and game.to_play(states[g]) == record[g]:
                    recorded[g][0].append(states[g])
                    recorded[g][1].append(action)
                states[g] = game.apply(states[g], action)
    results = []
    for state in states:
        result = float(game.outcome(state))
        results.append(result if game.to_play(state) == 0 else -result)
    return np.array(results), recorded


def reinforce_step(network, optimizer, game: Game, recorded, results, learner_colours) -> float:
    """One policy-gradient update: Delta rho ∝ 1/n sum_i sum_t grad log p(a_t | s_t) z_t."""
    planes, actions, returns = [], [], []
    for (states, moves), result, colour in zip(recorded, results, learner_colours, strict=True):
        z = result if colour == 0 else -result  # the learner's result
        for state, action in zip(states, moves, strict=True):
            planes.append(game.observation(state))
            actions.append(action)
            returns.append(z)
    if not planes:
        return 0.0
    # eval mode: log p_rho(a | s) of the policy that sampled the moves (BatchNorm's running
    # statistics, not the batch's), and the statistics are left as p_sigma learned them
    logits, _ = network.eval()(tensor(np.stack(planes), network))
    index = tensor(np.array(actions), network)
    log_p = torch.log_softmax(logits, dim=1)[torch.arange(len(index), device=index.device), index]
    z = tensor(np.array(returns, dtype=np.float32), network)
    loss = -(log_p * z).sum() / len(recorded)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.item())


def match_rate(game: Game, first, second, games: int) -> float:
    """Wins + draws/2 of sampler `first` against `second`, colours alternating, all at once."""
    players = [(first, second) if g % 2 == 0 else (second, first) for g in range(games)]
    results, _ = play_games(game, players, games)
    scores = [(r if g % 2 == 0 else -r) for g, r in enumerate(results)]
    return float(np.mean([(s + 1) / 2 for s in scores]))


def value_positions(
    game: Game, sl, rl, rng, max_u: int, count: int, check=no_stop, parallel: int = 64
) -> list[tuple[np.ndarray, float]]:
    """Stage 4's data: `count` positions, ONE per self-play game (successive positions of one
    game are strongly correlated; the paper's one-per-game removes that). Each game draws
    U ~ unif{1..max_u}, plays moves 1..U-1 with p_sigma, move U uniformly at random, then p_rho
    to the end; it gives (observation of s_{U+1}, z for the player to move at s_{U+1}). A game
    that ends before s_{U+1} gives nothing. `parallel` games are played at once, each
    policy's moves of a ply sampled in one network call (`check()` before each batch).
    """
    positions: list[tuple[np.ndarray, float]] = []
    while len(positions) < count:
        check()
        u = rng.integers(1, max_u + 1, size=parallel)
        states = [game.initial_state() for _ in range(parallel)]
        kept: list = [None] * parallel  # s_{U+1} and its mover
        played, alive = 0, list(range(parallel))
        while alive:
            moves: dict[int, int] = {}
            for policy, members in ((sl, [g for g in alive if played < u[g] - 1]),
                                    (rl, [g for g in alive if played >= u[g]])):  # fmt: skip
                if members:
                    moves.update(zip(members, policy([states[g] for g in members]), strict=True))
            for g in alive:
                if played == u[g] - 1:  # move U: uniformly random
                    moves[g] = int(rng.choice(game.legal_actions(states[g])))
            played += 1
            for g in alive:
                states[g] = game.apply(states[g], moves[g])
                if played == u[g]:
                    kept[g] = (states[g], game.to_play(states[g]))
            alive = [g for g in alive if not game.is_terminal(states[g])]
        for g in range(parallel):
            if kept[g] is None or game.is_terminal(kept[g][0]):
                continue  # the game ended before s_{U+1}
            position, mover = kept[g]
            result = float(game.outcome(states[g]))
            z = result if game.to_play(states[g]) == mover else -result
            positions.append((game.observation(position), z))
    return positions[:count]


def value_arrays(game: Game, positions: list, symmetries: bool) -> tuple[np.ndarray, np.ndarray]:
    """(planes `[N, C, H, W]`, z `[N]`) of (observation, z) positions, with every symmetric
    copy of each when `symmetries`."""
    planes, outcomes = [], []
    no_policy = np.zeros(game.action_size, np.float32)
    for observation, z in positions:
        copies = game.symmetries(observation, no_policy) if symmetries else [(observation, None)]
        planes += [p for p, _ in copies]
        outcomes += [z] * len(copies)
    return np.stack(planes).astype(np.float32), np.array(outcomes, np.float32)


def train_value_net(value, game: Game, sl, rl, config: AlphaGoConfig, rng, check=no_stop) -> dict:
    """Stage 4 with samplers `sl` (moves 1..U-1) and `rl` (after the random move U): the
    network `value` trained on `config.value_games` positions (`value_positions`), split three
    ways: held out (the metric only), validation (early stopping: the epoch with the lowest
    MSE there is kept) and training, used with every symmetric copy of each position (a
    mirror image has the same value). Returns the metrics value_positions, value_mse (on the
    held-out positions) and value_mse_of_zero (predicting 0 there)."""
    positions = value_positions(game, sl, rl, rng, _typical_length(game), config.value_games,
                                check)  # fmt: skip
    training, held_out = split(positions, config.held_out, rng)
    training, validation = split(training, config.held_out, rng)
    planes, outcomes = value_arrays(game, training, symmetries=True)
    fit(value, planes, outcomes, value_loss, config, config.value_epochs, rng, check,
        weight_decay=config.value_weight_decay,
        validation=value_arrays(game, validation, symmetries=False))  # fmt: skip
    test, z = value_arrays(game, held_out, symmetries=False)
    with torch.inference_mode():
        v = value(tensor(test, value))[1].cpu().numpy()
    return {"value_positions": float(len(positions)), "value_mse": float(np.mean((z - v) ** 2)),
            "value_mse_of_zero": float(np.mean(z**2))}  # fmt: skip


# ---- stage 5: the search -------------------------------------------------------------------
class MixedLeafEvaluator:
    """The search's `Evaluator` of stage 5: priors p_sigma(s_L) and the leaf value
    V(s_L) = (1 - lambda) v_theta(s_L) + lambda z_L, z_L the result (for the player to move at
    s_L) of one rollout to the end of the game with p_pi, sampled in numpy.

    Args:
        game, policy, value: the game, p_sigma and v_theta (eval mode).
        rollout: (W [A, D], b [A]) of p_pi.
        mixing: lambda; 0 skips the rollouts, 1 skips the value net.
        seed: seed of the rollouts' move sampling.
        mask: state -> the moves a rollout samples from (`move_mask`; None: the legal ones).
    """

    def __init__(self, game: Game, policy, value, rollout, mixing: float, seed: int, mask=None):
        self.game, self.policy, self.value = game, policy, value
        self.mask = mask or game.legal_mask
        self.weights, self.bias = rollout
        self.mixing = mixing
        self.rng = np.random.default_rng(seed)

    def evaluate(self, states: list) -> tuple[np.ndarray, np.ndarray]:
        planes = tensor(np.stack([self.game.observation(s) for s in states]), self.policy)
        with torch.inference_mode():
            logits, _ = self.policy(planes)
            priors = torch.softmax(logits, dim=1).cpu().numpy()
            v = self.value(planes)[1].cpu().numpy() if self.mixing < 1 else np.zeros(len(states))
        z = np.array([self.rollout(s) for s in states]) if self.mixing > 0 else 0.0
        return priors, ((1 - self.mixing) * v + self.mixing * z).astype(np.float32)

    def rollout(self, state) -> float:
        """z_L: p_pi plays both sides to the end; the result for the player to move at `state`."""
        game, mover = self.game, self.game.to_play(state)
        while not game.is_terminal(state):
            logits = self.weights @ game.observation(state).ravel() + self.bias
            p = masked_probabilities(logits[None], self.mask(state)[None])[0]
            state = game.apply(state, int(self.rng.choice(len(p), p=p)))
        result = float(game.outcome(state))
        return result if game.to_play(state) == mover else -result


def search_agent(game: Game, nets: dict, config: AlphaGoConfig, mixing: float, seed: int):
    """state -> the most visited move of a fresh search with lambda = `mixing` (the function
    keeps its search as `act.mcts` and the last search's SearchResult as `act.last`)."""
    mask = move_mask(game, config.sensible_playouts)
    evaluator = MixedLeafEvaluator(game, nets["sl"], nets["value"],
                                   nets["rollout"].numpy_weights(), mixing, seed, mask)  # fmt: skip
    mcts = MCTS(game, evaluator, simulations=config.simulations, c_puct=config.c_puct,
                batch_size=config.search_batch_size, virtual_loss=config.virtual_loss)  # fmt: skip

    def act(state) -> int:
        mcts.reset()
        act.last = mcts.search(state)
        return int(np.argmax(act.last.visit_counts))

    act.mcts, act.last = mcts, None  # the tree and the last search, for a viewer (bellman serve)
    return act


# ---- the pipeline --------------------------------------------------------------------------
NETWORKS = ("sl", "rollout", "rl", "value")
"""The checkpoint's networks (all four in every checkpoint; untrained ones as initialised)."""


def metric_names(config: AlphaGoConfig) -> list[str]:
    """The columns of every metrics row (NaN until their stage has run)."""
    names = ["stage", "expert_positions", "sl_accuracy", "sl_loss", "sl_ms_per_move",
             "rollout_accuracy", "rollout_us_per_move", "rl_win_rate_vs_sl", "rl_loss",
             "value_positions", "value_mse", "value_mse_of_zero"]  # fmt: skip
    tags = [_tag(v) for v in lambda_values(config.lambdas)]
    for tag in tags:
        names += [f"search_{tag}_vs_sl", f"search_{tag}_vs_expert"]
        names += [f"search_{tag}_vs_{other}" for other in tags if other != tag]
    return names


def _tag(mixing: float) -> str:
    return f"lambda{mixing:g}"


class AlphaGoPipeline:
    """Everything a checkpoint holds: the four networks, the stages done, the metrics so far
    and the run's generator."""

    def __init__(self, config: AlphaGoConfig, game: Game):
        self.config, self.game = config, game
        self.device = resolve_device(config.device)
        self.rng = seeding.seed_everything(config.seed)
        torch.manual_seed(config.seed)
        self.nets: dict[str, nn.Module] = {
            "sl": build_net(config, game), "rollout": RolloutPolicy(game),
            "rl": build_net(config, game), "value": build_net(config, game),
        }  # fmt: skip
        for net in self.nets.values():
            net.to(self.device).eval()
        self.done = 0
        self.metrics = dict.fromkeys(metric_names(config), math.nan)
        self._expert: tuple | None = None
        self.stop_requested = lambda: False
        #: the moves of games played out for their result (`sensible_playouts`)
        self.mask = move_mask(game, config.sensible_playouts)

    def check(self) -> None:
        """Raise StageStopped when a stop was requested (polled inside the stages' loops)."""
        if self.stop_requested():
            raise StageStopped

    def checked(self, player):
        """`player` polling for a stop before each of its moves: a search with rollouts takes
        seconds a move on Go, an arena of them minutes, and Ctrl-C ends the stage within a move."""

        def act(state):
            self.check()
            return player(state)

        return act

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        rng_arrays, rng_state = seeding.capture_rngs(self.device, numpy_rng=self.rng)
        arrays = {f"{name}/{key}": value.detach().cpu().numpy()
                  for name, net in self.nets.items()
                  for key, value in net.state_dict().items()}  # fmt: skip
        arrays.update(rng_arrays)
        metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in self.metrics.items()}  # fmt: skip
        return arrays, {"stages_done": self.done, "metrics": metrics, **rng_state}

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        state = meta["state"]
        check_schema(state, {"stages_done": int, "metrics": dict}, "checkpoint state")
        if not 0 <= state["stages_done"] <= len(STAGES):
            raise ValueError(f"stages_done = {state['stages_done']} is not 0-{len(STAGES)}")
        for name, net in self.nets.items():
            load_module(net, arrays, f"{name}/", self.device, "checkpoint")
            net.eval()
        seeding.restore_rngs(arrays, state, self.device, numpy_rng=self.rng)
        self.done = state["stages_done"]
        for key in self.metrics:
            value = state["metrics"].get(key)
            self.metrics[key] = math.nan if value is None else float(value)

    # ---- the stages --------------------------------------------------------------------
    def expert_data(self, run: Run):
        """(train planes, train actions, held-out planes, held-out actions): the same on every
        call and after a resume (its own generator, seeded by the run's seed)."""
        if self._expert is None:
            game, config = self.game, self.config
            rng = np.random.default_rng([config.seed, 1])
            if isinstance(game, Go):
                games = go_expert_games(game, config, run.dir, self.check)
            else:
                games = connect4_expert_games(game, config, rng, self.check)
            training, held_out = split(games, config.held_out, rng)
            self._expert = (*expert_positions(game, training, symmetries=True),
                            *expert_positions(game, held_out, symmetries=False))  # fmt: skip
        return self._expert

    def stage_sl(self, run: Run) -> None:
        """1. p_sigma by maximum likelihood of the expert moves; held-out accuracy."""
        planes, actions, test_planes, test_actions = self.expert_data(run)
        net = self.nets["sl"]
        self.metrics["sl_loss"] = fit(net, planes, actions, policy_loss, self.config,
                                      self.config.sl_epochs, self.rng, self.check)  # fmt: skip
        self.metrics["expert_positions"] = float(len(actions))
        self.metrics["sl_accuracy"] = accuracy(net, test_planes, test_actions)

    def stage_rollout(self, run: Run) -> None:
        """2. p_pi on the same positions; its accuracy and time per move, and p_sigma's."""
        planes, actions, test_planes, test_actions = self.expert_data(run)
        rollout = self.nets["rollout"]
        fit(rollout, planes, actions, policy_loss, self.config, self.config.rollout_epochs,
            self.rng, self.check)  # fmt: skip
        self.metrics["rollout_accuracy"] = accuracy(rollout, test_planes, test_actions)
        game, states = self.game, self._sample_states(32)
        weights, bias = rollout.numpy_weights()
        mask = self.mask

        def fast(state) -> int:  # a rollout's move, as MixedLeafEvaluator.rollout takes it
            logits = weights @ game.observation(state).ravel() + bias
            return int(np.argmax(np.where(mask(state), logits, -np.inf)))

        self.metrics["rollout_us_per_move"] = 1e6 * seconds_per_move(fast, game, states)
        sl = greedy_player(self.nets["sl"], game)
        self.metrics["sl_ms_per_move"] = 1e3 * seconds_per_move(sl, game, states)

    def _sample_states(self, count: int) -> list:
        """Positions of random games, for timing the policies."""
        game, rng, states = self.game, np.random.default_rng([self.config.seed, 2]), []
        while len(states) < count:
            state = game.initial_state()
            while not game.is_terminal(state) and len(states) < count:
                states.append(state)
                state = game.apply(state, int(rng.choice(game.legal_actions(state))))
        return states

    def stage_rl(self, run: Run) -> None:
        """3. p_rho from p_sigma by REINFORCE against a pool of its earlier versions."""
        config, game = self.config, self.game
        rl = self.nets["rl"]
        rl.load_state_dict(self.nets["sl"].state_dict())
        optimizer = torch.optim.Adam(rl.parameters(), lr=config.rl_learning_rate)
        pool = [{k: v.clone() for k, v in rl.state_dict().items()}]
        opponent = build_net(config, game).to(self.device).eval()
        losses = []
        for iteration in range(1, config.rl_iterations + 1):
            self.check()
            opponent.load_state_dict(pool[int(self.rng.integers(len(pool)))])
            learner, other = (sampler(net, game, self.rng, self.mask) for net in (rl, opponent))
            colours = [g % 2 for g in range(config.rl_games)]  # the learner's colour
            players = [(learner, other) if c == 0 else (other, learner) for c in colours]
            results, recorded = play_games(game, players, config.rl_games, record=colours)
            losses.append(reinforce_step(rl, optimizer, game, recorded, results, colours))
            if iteration % config.rl_pool_every == 0:
                pool.append({k: v.clone() for k, v in rl.state_dict().items()})
        self.metrics["rl_loss"] = float(np.mean(losses)) if losses else math.nan
        self.metrics["rl_win_rate_vs_sl"] = match_rate(
            game, sampler(rl, game, self.rng, self.mask),
            sampler(self.nets["sl"], game, self.rng, self.mask), max(2, config.arena_games),
        )  # fmt: skip

    def stage_value(self, run: Run) -> None:
        """4. v_theta by regression on one position per game of p_sigma then p_rho."""
        game = self.game
        sl, rl = (sampler(self.nets[name], game, self.rng, self.mask) for name in ("sl", "rl"))
        self.metrics.update(train_value_net(self.nets["value"], game, sl, rl, self.config,
                                            self.rng, self.check))  # fmt: skip

    def stage_search(self, run: Run) -> None:
        """5. The lambda ablation: each lambda against the others, the SL policy, the expert."""
        config, game = self.config, self.game
        lambdas = lambda_values(config.lambdas)
        seeds = [int(s) for s in self.rng.integers(2**31, size=len(lambdas))]
        agents = {v: self.checked(search_agent(game, self.nets, config, v, s))
                  for v, s in zip(lambdas, seeds, strict=True)}  # fmt: skip
        games = max(2, config.arena_games)
        sl = greedy_player(self.nets["sl"], game)
        for a in lambdas:
            self.metrics[f"search_{_tag(a)}_vs_sl"] = arena(game, agents[a], sl, games)["score"]
            self.metrics[f"search_{_tag(a)}_vs_expert"] = self._against_expert(agents[a], games)
            for b in lambdas:
                if a < b:
                    score = arena(game, agents[a], agents[b], games)["score"]
                    self.metrics[f"search_{_tag(a)}_vs_{_tag(b)}"] = score
                    self.metrics[f"search_{_tag(b)}_vs_{_tag(a)}"] = 1 - score

    def _against_expert(self, agent, games: int) -> float:
        """The agent's score against the expert: alpha-beta, or GnuGo (NaN without it)."""
        config, game = self.config, self.game
        if not isinstance(game, Go):
            expert = AlphaBetaPlayer(game, config.expert_depth, heuristic=game.heuristic,
                                     seed=int(self.rng.integers(2**31)))  # fmt: skip
            return arena(game, agent, expert.act, games)["score"]
        from bellman.zero.gtp import GtpEngine, LocalClient, find_gnugo, play_against_gnugo

        try:
            find_gnugo()
        except ConfigError:
            return math.nan  # no gnugo here: the column stays empty
        scores = []
        for g in range(games):
            self.check()
            ours = LocalClient(GtpEngine(agent, game))
            _, won = play_against_gnugo(ours, game, config.expert_level, config.seed,
                                        ours_black=g % 2 == 0)  # fmt: skip
            scores.append(0.5 if won is None else float(won))
        return float(np.mean(scores))


def _typical_length(game: Game) -> int:
    """T_max of stage 4's U ~ unif{1..T_max}: the paper's 450 for 19x19 Go, scaled."""
    if isinstance(game, Go):
        return game.size * game.size
    return int(np.prod(game.board_shape)) - 4


# ---- the module protocol (see bellman.api) -------------------------------------------------
def make_train_env(config: AlphaGoConfig) -> Game:
    """The game itself with the config's input planes (ConfigError for an unknown name or one
    AlphaGo does not play)."""
    if config.env not in GAMES:
        raise ConfigError(f"AlphaGo trains on {', '.join(GAMES)}, not '{config.env}'")
    game = make_game(config.env)
    if isinstance(game, Go) and config.features != game.features:
        return Go(game.size, game.komi, game.max_moves, features=config.features)
    return game


def make_eval_env(config: AlphaGoConfig, render_mode: str | None = None) -> OpponentEnv:
    """The game against `config.eval_opponent` (see `bellman.zero.arena.OpponentEnv`)."""
    return OpponentEnv(make_train_env(config), config.eval_opponent, config,
                       render_mode=render_mode)  # fmt: skip


def check_env(game: Game, config: AlphaGoConfig | None = None) -> None:
    if getattr(game, "name", None) not in GAMES:
        raise ConfigError(f"AlphaGo trains on {', '.join(GAMES)}, not {game!r}")
    if config is not None and game.name != config.env:
        raise ConfigError(f"the game is '{game.name}' but the config's env is '{config.env}'")
    features = getattr(game, "features", "board")
    if config is not None and features != config.features:
        raise ConfigError(f"the game's features are '{features}' but the config's are "
                          f"'{config.features}'")  # fmt: skip


def check_checkpoint(arrays: dict[str, np.ndarray], game: Game, config: AlphaGoConfig) -> None:
    """Every network's arrays fit this config (key, shape, dtype) before anything is loaded."""
    load_nets(arrays, config, game)


def load_policy(arrays: dict[str, np.ndarray], env: OpponentEnv, config: AlphaGoConfig, seed):
    """obs (the move sequence, see `OpponentEnv`) -> the searched move with lambda = mixing."""
    from bellman.games.base import play_moves

    torch.set_num_threads(config.torch_threads)
    game = env.game
    act = search_agent(game, load_nets(arrays, config, game), config, config.mixing, seed)

    def policy(obs: np.ndarray) -> int:
        return act(play_moves(game, [int(a) for a in np.asarray(obs) if a >= 0]))

    return policy


def load_nets(arrays: dict[str, np.ndarray], config: AlphaGoConfig, game: Game) -> dict:
    """The four networks of a checkpoint, checked and in eval mode."""
    with torch.random.fork_rng(devices=[]):
        nets = {"sl": build_net(config, game), "rollout": RolloutPolicy(game),
                "rl": build_net(config, game), "value": build_net(config, game)}  # fmt: skip
    for name, net in nets.items():
        load_module(net, arrays, f"{name}/", "cpu", f"checkpoint (for {config.env})")
        net.eval()
    return nets


def train(config: AlphaGoConfig, game: Game, run: Run) -> AlphaGoPipeline:
    """Stages done + 1 ... `config.target` (the module docstring's 1-5), a metrics row and a
    checkpoint after each. A new run first saves its initial state (step 0). A stop request
    (Ctrl-C, SIGTERM) is polled inside the stages' loops: the stage in progress is given up
    within a game or a minibatch and the run ends on its last checkpoint, from which
    `--resume` plays that stage again exactly."""
    torch.set_num_threads(config.torch_threads)
    pipeline = AlphaGoPipeline(config, game)
    if run.restored is not None:
        pipeline.restore(*run.restored)
    pipeline.stop_requested = lambda: run.stop_requested
    stages = (pipeline.stage_sl, pipeline.stage_rollout, pipeline.stage_rl,
              pipeline.stage_value, pipeline.stage_search)  # fmt: skip
    with run.session(start_step=pipeline.done):
        if run.restored is None:
            run.save(0, *pipeline.checkpoint())
        while pipeline.done < config.target and not run.stop_requested:
            try:
                stages[pipeline.done](run)  # 1. sl  2. rollout  3. rl  4. value  5. search
            except StageStopped:
                break
            pipeline.done += 1
            pipeline.metrics["stage"] = float(pipeline.done)
            run.log(pipeline.done, **pipeline.metrics)
            run.save(pipeline.done, *pipeline.checkpoint())
    return pipeline
