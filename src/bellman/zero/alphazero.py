"""AlphaZero: a network f(s) = (p, v) trained only from self-play guided by PUCT search.

Silver et al., "Mastering the game of Go without human knowledge", Nature 550, 2017 (AlphaGo
Zero), and Silver et al., "A general reinforcement learning algorithm that masters chess, shogi,
and Go through self-play", Science 362, 2018 (AlphaZero). The loop, as the papers describe it:

     1. Initialise f_theta with random weights; the best player alpha_theta* = f_theta.
     2. Repeat (one iteration):
     3.   Self-play: play `games_per_iteration` games of the best player against itself. At
          every position s_t run an MCTS (`bellman.search.mcts`, Dirichlet noise at the root)
          guided by f_theta*, giving pi_t(a) = N(s_t, a)^(1/tau) / sum_b N(s_t, b)^(1/tau);
          play a_t ~ pi_t with tau = 1 for the first `temperature_moves` moves, then tau -> 0.
     4.   At the end of the game (result r_T), store (s_t, pi_t, z_t) for every move, with
          z_t = +-r_T from the point of view of the player to move at s_t; augment each with
          the board's symmetries; keep the last `replay_window` positions.
     5.   Training: `train_steps` times, sample a minibatch uniformly from the window and take a
          gradient step on
              l = (z - v)^2 - pi . log p + c ||theta||^2,        (p, v) = f_theta(s)
     6.   Evaluation (arena): play f_theta (with search, no noise, tau -> 0) against the best
          player and against fixed baselines (random, classic MCTS with random rollouts, alpha-
          beta); update the Elo table.
     7.   Gating (AlphaGo Zero): f_theta becomes the best player only if it won >= 55% of the
          games against it. AlphaZero drops the gate: self-play always uses the latest f_theta.

This file holds the config, the learner (step 5) and the loop; the rest of the algorithm is in
    network.py    f_theta as the search's evaluator (`NetworkEvaluator`), its weights as bytes
    selfplay.py   steps 3-4: self-play games played many at once, augmentation, the window
    arena.py      steps 6-7's arena and Elo table; the agent against a fixed opponent as a
                  gymnasium env (`OpponentEnv`, what `bellman eval` plays)

Deviations and details:
    - `steps` counts self-play moves (positions played, before augmentation); an iteration
      always finishes its games, so a run may end a few moves past its target. Metrics rows,
      checkpoints and Ctrl-C all take effect at the end of an iteration.
    - pi_t stored for training is always the visit distribution with tau = 1 (tau only shapes
      the move played), as in most reimplementations.
    - c ||theta||^2 is an explicit term of the loss over every parameter (BN scales and biases
      included); the optimizer's own weight decay is 0.
    - Game g of the run is played with generators seeded by (seed, g), in whichever worker
      process it runs, and results are stored in game order. A process plays a group of
      `concurrent_games` games at once (one network call per wave for the leaves of all their
      trees, `search_wave`); the groups are cut by game number, never by worker, so with the
      same seed a run is the same for any `workers` (bit-exact with workers = 1; across
      processes up to torch's floating point, which is deterministic on one thread).
    - Self-play evaluates with a TorchScript copy of f_theta frozen for inference (BatchNorm
      folded), equal to the eager network up to float rounding; the arena uses the eager one.
    - Options for small budgets, all off by default: playout cap randomisation
      (`fast_simulations`, `full_search_prob`; Wu, "Accelerating self-play learning in Go",
      2019): only the moves searched in full are recorded; a value target mixing z with the
      root's search value (`value_target_mix`); gradient steps per iteration set by a replay
      ratio (`replay_ratio`); a linear learning-rate decay over `steps` (`lr_final_fraction`).
    - Weights travel to the self-play workers as safetensors bytes, never as pickled modules.
    - backend = ray: the self-play workers are Ray actors that call the same group function
      (`bellman.distributed.selfplay`), the weights put in the object store once per version.
      max_policy_lag = 0 keeps step 3 synchronous (the same run as the process pool's); with
      L > 0 the actors play the next L iterations' games with the net of the moment while the
      learner trains (AlphaZero's asynchronous self-play), so a game's net is up to L
      iterations old.
    - The arena's Elo table anchors the random player at 0; ratings move by the Elo rule with
      K = `elo_k` after every arena game, both players (except the anchor) being updated.
    - A NaN or an infinity stops the run with NonFiniteError naming the step and the value or
      tensor: the loss at every gradient step, and every float tensor of f_theta (weights and
      BatchNorm running statistics, which a too large learning rate overflows while the loss
      stays finite) before it becomes the best player and before every checkpoint. No
      checkpoint holds a non-finite tensor; `latest` stays on the last good one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors

from bellman import loop, seeding
from bellman.checkpoint import check_schema
from bellman.config import TrainConfig, choices, interval
from bellman.errors import CheckpointError, ConfigError, NonFiniteError
from bellman.games import Game, make_game
from bellman.games.base import play_moves
from bellman.nets import resolve_device
from bellman.run import Run
from bellman.torch_state import check_arrays, load_module, load_optimizer, optimizer_arrays
from bellman.zero.arena import (
    BASELINES,
    EloTable,
    OpponentEnv,
    baseline_opponents,
    checked_elo,
    rated_matches,
    search_player,
)
from bellman.zero.network import (
    NetworkEvaluator,
    build_network,
    check_finite,
    gradient_steps,
    load_network,
    load_weights,
    set_learning_rate,
    weights_bytes,
)
from bellman.zero.selfplay import (
    GameRecord,
    ReplayWindow,
    SelfPlaySettings,
    augment,
    idle_workers_note,
    play_groups,
    self_play_games,
    start_workers,
)


@dataclass(frozen=True)
class AlphaZeroConfig(TrainConfig):
    """Hyperparameters of AlphaZero; defaults are the papers' where they apply to small games."""

    env: str = ""
    """The game: tictactoe, connect4, go9, go13 or go19."""
    steps: int = field(default=1_000_000, metadata=interval("[1, inf)"))
    """Total self-play moves of the run (a resumed run continues to this target)."""
    log_every: int = field(default=1, metadata=interval("[1, inf)"))
    """Self-play moves between two rows of metrics.csv: a row ends each iteration that crosses a
    multiple of it or runs the arena (1: every iteration); losses are that iteration's."""
    simulations: int = field(default=800, metadata=interval("[1, inf)"))
    """MCTS simulations per self-play move (AlphaZero: 800)."""
    c_puct: float = field(default=1.25, metadata=interval("(0, inf)"))
    """PUCT exploration constant (AlphaZero's c_init: 1.25)."""
    dirichlet_alpha: float = field(default=0.3, metadata=interval("(0, inf)"))
    """Root noise concentration (AlphaZero: 0.3 chess, 0.15 shogi, 0.03 Go)."""
    dirichlet_fraction: float = field(default=0.25, metadata=interval("[0, 1]"))
    """Weight eps of the root noise (AlphaZero: 0.25)."""
    temperature_moves: int = field(default=30, metadata=interval("[0, inf)"))
    """Self-play moves played with tau = 1 (proportional to visits); tau -> 0 after them."""
    search_batch_size: int = field(default=8, metadata=interval("[1, inf)"))
    """Leaves evaluated per network call (AlphaGo Zero: 8), with a virtual loss."""
    virtual_loss: float = field(default=1.0, metadata=interval("[0, inf)"))
    """Virtual loss n_vl added along a pending descent."""
    gumbel: bool = False
    """Gumbel MuZero's root in every search (Danihelka et al. 2022; `bellman.search.gumbel`):
    Gumbel-top-k and sequential halving choose the move (self-play and the agent) and the
    improved policy is the policy target, instead of visit counts and Dirichlet noise."""
    max_considered: int = field(default=16, metadata=interval("[1, inf)"))
    """Gumbel root: moves considered at most (the paper: 16)."""
    solve: bool = False
    """MCTS-Solver in every search (self-play, arena, play, move): proven wins, losses and
    draws are backed up exactly and not searched further; the agent plays a proven win and
    never a proven loss while another move is open (`bellman.search.mcts`)."""
    blocks: int = field(default=19, metadata=interval("[0, 64]"))
    """Residual blocks of the network (AlphaZero: 19)."""
    channels: int = field(default=256, metadata=interval("[1, 1024]"))
    """Filters per convolution (AlphaZero: 256)."""
    value_hidden: int = field(default=256, metadata=interval("[1, 4096]"))
    """Units of the value head's hidden layer (AlphaZero: 256)."""
    replay_window: int = field(default=500_000, metadata=interval("[1, inf)"))
    """Positions (after symmetry augmentation) kept for training; the oldest are dropped."""
    batch_size: int = field(default=4096, metadata=interval("[1, inf)"))
    """Positions per minibatch (AlphaZero: 4096)."""
    optimizer: str = field(default="sgd", metadata=choices("sgd", "adam"))
    """sgd (with momentum, as the papers) or adam."""
    learning_rate: float = field(default=0.2, metadata=interval("(0, inf)"))
    """Step size (AlphaZero: 0.2, then annealed; constant here)."""
    momentum: float = field(default=0.9, metadata=interval("[0, 1)"))
    """SGD momentum (AlphaZero: 0.9); unused by adam."""
    weight_decay: float = field(default=1e-4, metadata=interval("[0, inf)"))
    """c of the loss's c ||theta||^2 term (AlphaZero: 1e-4)."""
    train_steps: int = field(default=100, metadata=interval("[0, inf)"))
    """Gradient steps per iteration."""
    games_per_iteration: int = field(default=25, metadata=interval("[1, inf)"))
    """Self-play games per iteration."""
    symmetries: bool = True
    """Store every symmetric copy of each position (8 for tic-tac-toe and Go, 2 for Connect 4)."""
    arena_games: int = field(default=10, metadata=interval("[0, inf)"))
    """Arena games against each opponent per evaluation (half as first player); 0: no arena."""
    arena_every: int = field(default=1, metadata=interval("[1, inf)"))
    """Iterations between two arena evaluations."""
    arena_simulations: int = field(default=100, metadata=interval("[1, inf)"))
    """MCTS simulations per move of the network player in the arena and in `bellman eval`."""
    baselines: str = "random,mcts,alphabeta"
    """Fixed arena opponents, comma-separated: random, mcts (classic MCTS with random
    rollouts), alphabeta (depth-limited alpha-beta); empty for none."""
    baseline_simulations: int = field(default=200, metadata=interval("[1, inf)"))
    """Simulations (one random rollout each) of the classic MCTS baseline."""
    baseline_depth: int = field(default=2, metadata=interval("[1, 64]"))
    """Plies of the alpha-beta baseline (with the game's heuristic when it has one)."""
    gating: bool = False
    """AlphaGo Zero's gate: self-play uses the best net, replaced only by a net that wins
    >= gating_threshold of its arena games against it. False: AlphaZero (always the latest)."""
    gating_threshold: float = field(default=0.55, metadata=interval("(0, 1]"))
    """Score (wins + draws / 2) against the best net needed to replace it (AlphaGo Zero: 0.55)."""
    elo_k: float = field(default=16.0, metadata=interval("(0, inf)"))
    """K factor of the arena's Elo updates."""
    eval_opponent: str = field(default="alphabeta", metadata=choices("random", "mcts", "alphabeta"))
    """The fixed opponent of `bellman eval` (the reward is the game's result for the agent)."""
    workers: int = field(default=1, metadata=interval("[1, 256]"))
    """Self-play processes (spawned; 1 plays in the learner's process), or Ray actors."""
    backend: str = field(default="local", metadata=choices("local", "ray"))
    """local: self-play in this machine's processes, exactly as before; ray: `workers` self-play
    actors on a Ray cluster (`bellman.distributed.selfplay`)."""
    ray_address: str = ""
    """backend = ray: HOST:PORT of a Ray cluster to join; empty starts a local Ray."""
    max_policy_lag: int = field(default=0, metadata=interval("[0, 1024]"))
    """backend = ray: how many versions old the self-play net may be. 0: every game uses the
    latest best net (reproducible: the same run as the process pool's); L > 0: the actors play
    the next L iterations' games while the learner trains (asynchronous)."""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the learner's network runs: auto uses CUDA when present (self-play uses the CPU)."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch in every process (1 is fastest on small, shared machines)."""
    train_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch for the learner's gradient steps (step 5), which run while the
    self-play workers wait: with 2 workers on 2 cores, 2 uses the core that would idle (1.5x
    faster steps for the Connect Four net). Fixed per run, so a run stays reproducible."""
    concurrent_games: int = field(default=32, metadata=interval("[1, 4096]"))
    """Self-play games a process plays at once, the leaves of all their trees evaluated in ONE
    network call per wave (batches of up to concurrent_games * search_batch_size positions).
    The iteration's games are split into groups of this many by game number, whatever the
    number of workers, so a run is the same for any `workers`."""
    fast_simulations: int = field(default=0, metadata=interval("[0, inf)"))
    """Playout cap randomisation (Wu, KataGo, 2019): when > 0, a move is searched with the full
    `simulations` (with root noise, recorded for training) only with probability
    full_search_prob, else with this many simulations (no noise, not recorded). 0: off."""
    full_search_prob: float = field(default=0.25, metadata=interval("[0, 1]"))
    """Share of full, recorded searches under playout cap randomisation (KataGo: 0.25)."""
    sgf_every: int = field(default=0, metadata=interval("[0, inf)"))
    """Write every sgf_every-th self-play game (by number) as SGF to RUN/games/ (0: none), for
    Go viewers and `bellman.games.sgf.read_sgf`."""
    value_target_mix: float = field(default=0.0, metadata=interval("[0, 1]"))
    """lambda of the value target (1 - lambda) z + lambda q, q the root value of the move's
    search (from the mover's point of view); 0: the papers' z."""
    replay_ratio: float = field(default=0.0, metadata=interval("[0, inf)"))
    """When > 0, an iteration's gradient steps are ceil(replay_ratio * new positions (after
    augmentation) / batch_size): each new position is trained on about this many times,
    whatever the iteration's length. 0: `train_steps` per iteration."""
    lr_final_fraction: float = field(default=1.0, metadata=interval("(0, 1]"))
    """The learning rate decays linearly (in self-play moves) from learning_rate to this
    fraction of it at `steps`; 1: constant (the papers step it down at fixed points)."""

    def validate(self) -> None:
        if self.batch_size > self.replay_window:
            raise ConfigError(
                f"batch_size = {self.batch_size} is larger than replay_window = "
                f"{self.replay_window}; make replay_window >= batch_size"
            )
        if self.gating and self.arena_games == 0:
            raise ConfigError("gating needs arena games against the best net: set arena_games > 0")
        unknown = [name for name in self.baseline_names if name not in BASELINES]
        if unknown:
            raise ConfigError(
                f"baselines = '{self.baselines}' names unknown players {', '.join(unknown)}; "
                f"valid: {', '.join(BASELINES)} (comma-separated)"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device = cuda but no CUDA GPU is visible; use device = auto or cpu")
        if self.backend == "local" and (self.max_policy_lag or self.ray_address):
            raise ConfigError(
                "max_policy_lag and ray_address are settings of Ray self-play actors: "
                "set backend = ray, or leave them at 0 and ''"
            )

    @property
    def baseline_names(self) -> list[str]:
        """The fixed arena opponents, in order."""
        return [name.strip() for name in self.baselines.split(",") if name.strip()]


Config = AlphaZeroConfig


# ---- step 5: training ---------------------------------------------------------------------
def alphazero_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    target_policies: torch.Tensor,
    target_outcomes: torch.Tensor,
    parameters: list[torch.Tensor],
    c: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 5's l = (z - v)^2 - pi . log p + c ||theta||^2, averaged over the batch.

    Args:
        logits: `[B, A]` policy logits (p = softmax(logits)).
        values: `[B]` v.
        target_policies: `[B, A]` pi.
        target_outcomes: `[B]` z.
        parameters: theta, every parameter of the network.
        c: the L2 coefficient.

    Returns:
        (l, mean (z - v)^2, mean -pi . log p).
    """
    value_loss = ((target_outcomes - values) ** 2).mean()
    policy_loss = -(target_policies * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    l2 = sum(p.pow(2).sum() for p in parameters)
    return value_loss + policy_loss + c * l2, value_loss, policy_loss


# ---- the learner --------------------------------------------------------------------------
class AlphaZeroLearner:
    """f_theta, the best net, the optimizer, the window, the Elo table and the counters:
    everything a checkpoint holds."""

    def __init__(self, config: AlphaZeroConfig, game: Game):
        self.config = config
        self.game = game
        self.device = resolve_device(config.device)
        self.rng = seeding.seed_everything(config.seed)
        torch.manual_seed(config.seed)
        self.network = build_network(config, game).to(self.device)  # 1. random weights
        self.parameters = list(self.network.parameters())
        self.optimizer = make_optimizer(config, self.parameters)
        self.best = weights_bytes(self.network)  # alpha_theta* = f_theta
        self.window = ReplayWindow(config.replay_window, game.observation_shape, game.action_size)
        self.elo = EloTable(config.elo_k)
        self.step = 0
        self.games = 0
        self.iteration = 0
        self.updates = 0
        self.best_generation = 0

    def train_step(self) -> tuple[float, float, float]:
        """Step 5 once: sample a minibatch and descend l. Returns (l, value loss, policy loss)."""
        planes, policies, outcomes = self.window.sample(self.config.batch_size, self.rng)
        device = self.device
        self.network.train()
        logits, values = self.network(torch.from_numpy(planes).to(device))
        loss, value_loss, policy_loss = alphazero_loss(
            logits, values, torch.from_numpy(policies).to(device),
            torch.from_numpy(outcomes).to(device), self.parameters, self.config.weight_decay,
        )  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        losses = float(loss.detach()), float(value_loss.detach()), float(policy_loss.detach())
        if not math.isfinite(losses[0]):
            raise NonFiniteError(
                f"loss is {losses[0]} at step {self.step} (gradient step {self.updates}; "
                "training diverged: lower learning_rate)"
            )
        return losses

    def promote(self) -> None:
        """f_theta becomes the best player, of this iteration's generation (steps 3 and 7),
        once every tensor of it is checked finite (the best net is saved in checkpoints)."""
        check_finite(self.network, "network", self.step)
        self.best, self.best_generation = weights_bytes(self.network), self.iteration

    # ---- checkpoints -----------------------------------------------------------------------
    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, state) of a checkpoint: f_theta and the best net (BatchNorm statistics
        included), the optimizer, the window, the counters, the Elo table and every generator
        (`seeding.capture_rngs`). f_theta is checked finite first, so no checkpoint ever holds
        a NaN or an infinity (the best net was checked when it was promoted)."""
        check_finite(self.network, "network", self.step)
        rng_arrays, rng_state = seeding.capture_rngs(self.device, numpy_rng=self.rng)
        arrays = {f"net/{k}": v.cpu().numpy() for k, v in self.network.state_dict().items()}
        arrays.update({f"best/{k}": v.numpy() for k, v in load_tensors(self.best).items()})
        arrays.update(optimizer_arrays(self.optimizer))
        arrays.update(self.window.arrays())
        arrays.update(rng_arrays)
        state = {
            "game": self.game.name,
            "observation_shape": list(self.game.observation_shape),
            "action_size": self.game.action_size,
            **{name: getattr(self, name) for name in COUNTERS},
            "replay_size": self.window.size,
            "replay_position": self.window.position,
            "elo": self.elo.ratings,
            **rng_state,
        }
        return arrays, state

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Continue from a checkpoint (`checkpoint.load`'s arrays and meta). Every array is
        checked against the live networks, optimizer and window (key, shape, dtype) and every
        JSON value against what was saved before it is used; a CheckpointError otherwise."""
        where = f"checkpoint step-{meta['step']}"
        state = meta["state"]
        check_schema(state, STATE_SCHEMA, where)
        elo = checked_elo(state["elo"], where)
        load_module(self.network, arrays, "net/", self.device, where)
        best = build_network(self.config, self.game, scratch=True)
        load_module(best, arrays, "best/", "cpu", where)
        self.best = weights_bytes(best)
        load_optimizer(self.optimizer, arrays, where)
        self.window.load(arrays, state["replay_size"], state["replay_position"])
        seeding.restore_rngs(arrays, state, self.device, numpy_rng=self.rng)
        self.step = meta["step"]
        for name in COUNTERS:
            setattr(self, name, state[name])
        self.elo = EloTable(self.config.elo_k, elo)


#: The learner's counters, saved in a checkpoint's JSON state as they are.
COUNTERS = ("games", "iteration", "updates", "best_generation")

#: What `AlphaZeroLearner.restore` reads of a checkpoint's JSON state (`checkpoint.check_schema`;
#: the generators' states are checked by `seeding.restore_rngs`).
STATE_SCHEMA = {
    **dict.fromkeys(COUNTERS, "count"), "replay_size": "count", "replay_position": "count",
    "elo": dict,
}  # fmt: skip


def make_optimizer(config: AlphaZeroConfig, parameters: list) -> torch.optim.Optimizer:
    """SGD with momentum (the papers) or Adam, with the config's learning rate."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.learning_rate, momentum=config.momentum)
    return torch.optim.Adam(parameters, lr=config.learning_rate)


# ---- the module protocol (see bellman.api) -------------------------------------------------
def game_of(config: AlphaZeroConfig) -> Game:
    """The config's game; ConfigError naming the valid games for an unknown name."""
    return make_game(config.env)


def make_eval_env(config: AlphaZeroConfig, render_mode: str | None = None) -> OpponentEnv:
    """The game against `config.eval_opponent` (see `OpponentEnv`)."""
    return OpponentEnv(game_of(config), config.eval_opponent, config, render_mode=render_mode)


def make_train_env(config: AlphaZeroConfig) -> Game:
    """What AlphaZero trains on: the game itself (self-play needs no env); a ConfigError naming
    the valid games for an unknown name."""
    return game_of(config)


#: What the loop uses of a game (`bellman.games.base.Game`).
GAME_MEMBERS = (
    "name", "observation_shape", "action_size", "initial_state", "apply", "is_terminal",
    "outcome", "to_play", "legal_mask", "observation", "symmetries",
)  # fmt: skip


def check_env(game: Game, config: AlphaZeroConfig | None = None) -> None:
    """AlphaZero trains on a board game (`make_train_env`), the one its config names."""
    missing = [name for name in GAME_MEMBERS if not hasattr(game, name)]
    if missing:
        raise ConfigError(
            f"AlphaZero trains on board games (tictactoe, connect4, go9, go13, go19), not on "
            f"{type(game).__name__} (it has no {', '.join(missing)})"
        )
    if config is not None and game.name != config.env:
        raise ConfigError(f"the game is '{game.name}' but the config's env is '{config.env}'")


def check_checkpoint(arrays: dict[str, np.ndarray], game, config: AlphaZeroConfig) -> None:
    """Every array a resume loads fits this config's learner, key for key (shape and dtype):
    f_theta and the best net with their BatchNorm statistics, the optimizer's state and the
    replay window; a CheckpointError naming the first that does not (a net trained on another
    game or board size, a crafted or re-saved file), before anything is loaded or written."""
    game = game_of(config)
    where = f"checkpoint (for {config.env}, {config.blocks} blocks of {config.channels} channels)"
    network = build_network(config, game, scratch=True)
    for prefix in ("net/", "best/"):
        load_module(network, arrays, prefix, "cpu", where)  # (a scratch copy: checks, loads)
    load_optimizer(make_optimizer(config, list(network.parameters())), arrays, where)
    replay = {key: value for key, value in arrays.items() if key.startswith("replay/")}
    layout = ReplayWindow.layout(config.replay_window, game.observation_shape, game.action_size)
    check_arrays(replay, layout, where)


def load_policy(
    arrays: dict[str, np.ndarray], env: OpponentEnv, config: AlphaZeroConfig, seed: int
):
    """obs (the move sequence, see `OpponentEnv`) -> the agent's move, searched with
    `arena_simulations` simulations, no noise, the most visited move."""
    torch.set_num_threads(config.torch_threads)
    game = env.game
    evaluator = NetworkEvaluator(game, load_network(arrays, config, game), frozen=True)
    act = search_player(game, evaluator, config.arena_simulations, config)

    def policy(obs: np.ndarray) -> int:
        moves = [int(a) for a in np.asarray(obs) if a >= 0]
        return act(play_moves(game, moves))

    return policy


# ---- the loop -----------------------------------------------------------------------------
def _self_play(
    learner: AlphaZeroLearner, config: AlphaZeroConfig, run: Run, pool
) -> list[GameRecord] | None:
    """Step 3 for one iteration: the games numbered games, games + 1, ... in game order; None
    when a stop was asked for before they were all played (`play_groups`)."""
    tasks = _self_play_tasks(learner, config, 0)
    if config.max_policy_lag:  # Ray actors play the next L iterations' games meanwhile
        pool.prefetch(self_play_games, tasks)
        for ahead in range(1, config.max_policy_lag + 1):
            pool.prefetch(self_play_games, _self_play_tasks(learner, config, ahead))
    played = play_groups(tasks, pool, lambda: run.stop_requested)
    return None if played is None else [record for _, record in played]


def _self_play_tasks(learner: AlphaZeroLearner, config: AlphaZeroConfig, ahead: int) -> list:
    """The self-play tasks of the iteration `ahead` iterations from now, with the best net."""
    settings = SelfPlaySettings.of(config)
    first = learner.games + ahead * config.games_per_iteration
    numbers = list(range(first, first + config.games_per_iteration))
    size = config.concurrent_games  # groups by game number: the same for any `workers`
    return [(learner.best, settings, config.seed, numbers[i : i + size])
            for i in range(0, len(numbers), size)]  # fmt: skip


def _evaluate(learner: AlphaZeroLearner, config: AlphaZeroConfig) -> dict[str, float]:
    """Steps 6-7: the arena against the best net and the baselines; Elo; the gate."""
    game, iteration = learner.game, learner.iteration
    name = f"net-{iteration}"
    best_name = f"net-{learner.best_generation}"
    evaluator = NetworkEvaluator(game, learner.network, learner.device)
    agent = search_player(game, evaluator, config.arena_simulations, config)
    best_network = build_network(config, game, scratch=True)
    load_weights(best_network, learner.best)
    opponents = {"best": search_player(
        game, NetworkEvaluator(game, best_network), config.arena_simulations, config
    )}  # fmt: skip
    opponents.update(baseline_opponents(game, config, iteration))
    columns = rated_matches(game, agent, opponents, config, learner.elo, name, best_name)
    learner.network.train()
    # 7. The gate: AlphaGo Zero replaces the best net only after a clear win.
    if not config.gating or columns["score_vs_best"] >= config.gating_threshold:
        learner.promote()
    columns["elo"] = learner.elo.ratings[name]
    return columns


def _arena_columns(config: AlphaZeroConfig) -> list[str]:
    names = ["best", *config.baseline_names]
    return ["elo"] + [f"{kind}_vs_{n}" for n in names for kind in ("score", "win")]


def train(config: AlphaZeroConfig, game: Game, run: Run) -> AlphaZeroLearner:
    """Run AlphaZero on `game` for `config.steps` self-play moves (the module docstring's steps
    1-7). After each iteration `loop.after_iteration` writes the metrics row (when log_every is
    crossed, the arena played or the run ends), then the checkpoint when one is due; a Ctrl-C or
    SIGTERM saves and stops after the iteration it came in (the whole state is in the
    checkpoint: there are no env episodes to restart); one that comes during self-play gives
    the iteration's games up (`play_groups`) and saves the state the iteration started from,
    which is the same run: self-play changes nothing of it."""
    torch.set_num_threads(config.torch_threads)
    learner = AlphaZeroLearner(config, game)  # 1. random f_theta, best = f_theta
    if run.restored is not None:
        learner.restore(*run.restored)
    groups = math.ceil(config.games_per_iteration / config.concurrent_games)
    note = idle_workers_note(config.workers, config.games_per_iteration, config.concurrent_games)
    if note:  # groups are by game number, whatever the workers (exactness)
        run.notes.append(note)
    pool = _start_self_play(config, groups)
    try:
        with run.session(start_step=learner.step):
            while learner.step < config.steps and not run.stop_requested:  # 2. iterations
                before = learner.step
                done = _iteration(learner, config, run, pool)
                if done is None:  # stopped during self-play: the state of the last iteration
                    run.save(learner.step, *learner.checkpoint())
                    break
                if _after_iteration(learner, run, before, *done):
                    break
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return learner


def _start_self_play(config: AlphaZeroConfig, groups: int):
    """The self-play workers: Ray actors (backend = ray), a process pool (workers > 1), or
    none (self-play in this process)."""
    if config.backend == "ray":
        from bellman.distributed.cluster import connect
        from bellman.distributed.selfplay import SelfPlayActors

        connect(config.ray_address, config.workers)
        ahead = config.max_policy_lag + 1  # iterations whose groups may be in flight at once
        return SelfPlayActors(min(config.workers, groups * ahead), config.max_policy_lag)
    return start_workers(min(config.workers, groups)) if config.workers > 1 else None


def _write_sgf(run: Run, game: Game, number: int, record: GameRecord) -> None:
    """Self-play game `number` as RUN/games/selfplay-NNNNNNN.sgf (atomically)."""
    from bellman.checkpoint import atomic_write_text
    from bellman.games.sgf import to_sgf

    folder = run.dir / "games"
    folder.mkdir(exist_ok=True)
    name = f"bellman alphazero (self-play game {number})"
    text = to_sgf(game, record.actions, black=name, white=name)
    atomic_write_text(folder / f"selfplay-{number:07d}.sgf", text)


def _iteration(
    learner: AlphaZeroLearner, config: AlphaZeroConfig, run: Run, pool
) -> tuple[dict[str, float], ArenaReport] | None:
    """One pass of steps 3-7. Returns the metrics row's own columns and the arena's report, or
    None when a stop came during self-play (the learner is then as the iteration found it)."""
    game = learner.game
    started = time.perf_counter()
    records = _self_play(learner, config, run, pool)  # 3. self-play with the best net
    if records is None:
        return None
    new_positions = 0
    for record in records:  # 4. (s, pi, z) with symmetries into the window
        planes, policies, outcomes = augment(game, record, config.symmetries)
        learner.window.add(planes, policies, outcomes)
        new_positions += len(outcomes)
        if config.sgf_every and learner.games % config.sgf_every == 0:
            _write_sgf(run, game, learner.games, record)
        learner.games += 1
        learner.step += record.moves
        run.log_episode(learner.step, record.first_player_result, record.moves)
    selfplay_seconds = time.perf_counter() - started
    started = time.perf_counter()
    losses = []
    if len(learner.window) >= config.batch_size:  # 5. gradient steps on l
        set_learning_rate(learner.optimizer, config, learner.step)
        torch.set_num_threads(config.train_threads)
        try:
            losses = [learner.train_step() for _ in range(gradient_steps(config, new_positions))]
        finally:
            torch.set_num_threads(config.torch_threads)
    train_seconds = time.perf_counter() - started
    learner.iteration += 1
    started = time.perf_counter()
    report = ArenaReport(config)
    if config.arena_games and learner.iteration % config.arena_every == 0:
        report.played(_evaluate(learner, config))  # 6.-7. arena, Elo, gate
    elif not config.gating:
        learner.promote()
    mean = np.mean(losses, axis=0) if losses else [math.nan] * 3
    row = {
        "iteration": learner.iteration, "games": learner.games, "loss": float(mean[0]),
        "value_loss": float(mean[1]), "policy_loss": float(mean[2]),
        "updates": learner.updates, "replay_size": len(learner.window),
        "best_generation": learner.best_generation,
        "selfplay_seconds": round(selfplay_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "arena_seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip
    return row, report


def _after_iteration(
    learner: AlphaZeroLearner, run: Run, before: int, row: dict[str, float], report: ArenaReport
) -> bool:
    """`loop.after_iteration` for AlphaZero: the row (its columns, the arena's, the timings),
    then the checkpoint when due. Returns whether training stops."""

    def log(arena_columns: dict[str, float]) -> None:
        columns = {k: v for k, v in row.items() if k not in TIMINGS}
        timings = {k: row[k] for k in TIMINGS}
        run.log(learner.step, **columns, **arena_columns, **timings)

    return loop.after_iteration(
        run, learner.step, before, save=learner.checkpoint, log=log, evaluation=report,
        policy=lambda: None,
    )  # fmt: skip


#: The timing columns that end a metrics row, after the arena's.
TIMINGS = ("selfplay_seconds", "train_seconds", "arena_seconds")


class ArenaReport:
    """The arena of steps 6-7 as `loop.after_iteration` sees an evaluation: due when it was
    played this iteration (so that iteration writes a row), its columns (NaN when it was not
    played, so every row has the same columns), never "solved" (a run trains to its steps).

    Args:
        config: gives the arena's opponents (the columns' names).
    """

    def __init__(self, config: AlphaZeroConfig):
        self.columns_ = dict.fromkeys(_arena_columns(config), math.nan)
        self.was_played = False

    def played(self, columns: dict[str, float]) -> None:
        """The arena was played (in `_iteration`) with these results."""
        self.columns_.update(columns)
        self.was_played = True

    def due(self, before: int, step: int) -> bool:
        return self.was_played

    def run(self, policy) -> None:
        """Nothing: the arena is played in `_iteration`, before the gate (step 7)."""

    def columns(self) -> dict[str, float]:
        return self.columns_

    def solved(self) -> bool:
        return False


def check_game_matches(run_config: AlphaZeroConfig, game_name: str, run_dir) -> None:
    """A checkpoint is only used on the game (and Go board size) it was trained on."""
    if run_config.env != game_name:
        raise CheckpointError(
            f"run '{run_dir}' was trained on '{run_config.env}', not '{game_name}'; "
            f"use a run trained with --env {game_name}"
        )
