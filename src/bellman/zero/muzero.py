"""MuZero: planning with a learned model h, g, f, trained from its own searches.

Schrittwieser et al., "Mastering Atari, Go, chess and shogi by planning with a learned model",
Nature 588, 2020 (Methods; Appendix B, "Search"; Appendix G, "Training"). The loop:

     1. Initialise h, g, f (`muzero_network`) with random weights.
     2. Repeat (one iteration):
     A.   Acting: play `games_per_iteration` episodes (board games against themselves). At every
          step t, s^0 = h(o_t), then an MCTS over the learned model (`bellman.search.mcts`:
          r^k, s^k = g(s^{k-1}, a^k) and p^k, v^k = f(s^k) at each new node, edge rewards and
          discounts in the backup, min-max normalised Q, pUCT with c1 = 1.25, c2 = 19652,
          Dirichlet noise at the root, the legal moves at the root) gives pi_t = N(s^0, a) /
          sum_b N(s^0, b) and the root value nu_t; play a_t ~ pi_t^(1/tau), observe u_{t+1}.
     B.   Store the trajectory (o_t, a_t, u_{t+1}, pi_t, nu_t) in the replay.
     C.   Training: `train_steps` times, sample positions t uniformly and unroll the model K =
          `unroll_steps` steps along the actions played:
              s^0 = h(o_t);  r^k, s^k = g(s^{k-1}, a_{t+k-1});  p^k, v^k = f(s^k)
              l = sum_{k=0..K} l^p(pi_{t+k}, p^k) + l^v(z_{t+k}, v^k) + [k > 0] l^r(u_{t+k}, r^k)
                  + c ||theta||^2
          with z_t the n-step bootstrapped value target u_{t+1} + ... + g^{n-1} u_{t+n} +
          g^n nu_{t+n} (the game's result in board games), the gradient entering the dynamics
          function scaled by 1/2 and each unrolled step's loss by 1/K.
          Option (`consistency_weight` = lambda_c > 0, EfficientZero): add
              lambda_c sum_{k=1..K} l^c(s^k, h(o_{t+k}))     (`ConsistencyHeads`)
          the unrolled state against h's state of the real observation, where t + k < T.
          Option (`reward_weight` = lambda_r, default 1 as the paper): lambda_r l^r.

This file holds the config, the loss (step C), the learner and the loop; acting and the
replay are `muzero_selfplay.py`, the networks and the value transform `muzero_network.py`.

Deviations and details:
    - Board games: value and reward are scalars in [-1, 1] with squared-error losses; the
      reward is 0 except on the last move (the result for its mover), the value target is the
      result for the player to move (n = infinity, gamma = 1, the sign flipping each ply).
      Option (`reward_classes`): the reward is a distribution over the results -1, 0, +1 with
      a cross-entropy loss against the target's class (`result_classes`), as Appendix F's
      categorical heads on a support of three.
      Vector and Atari envs: categorical value and reward over -S..S of h(x) with cross-entropy
      losses (Appendix F); gamma = `discount` and n = `td_steps`.
    - `steps` counts real moves / env steps; an iteration always finishes its episodes. Metrics
      rows, checkpoints and Ctrl-C take effect at the end of an iteration.
    - Beyond the end of an episode the targets are an absorbing state: value and reward 0, no
      policy loss, uniformly random actions to unroll.
    - Episode e of a run is played with generators seeded by (seed, e), so a run is the same
      whatever was interrupted and resumed; a group of episodes is played all at once (one
      network call per kind per search wave).
    - Board games store every symmetric copy of each trajectory (`symmetries`, as AlphaZero;
      the paper's MuZero does not augment).
    - Board games, `arena_games > 0`: every `arena_every` iterations the arena of AlphaZero
      (`bellman.zero.arena`: `arena`, `baseline_player`, `EloTable`, and AlphaZero's
      `ArenaReport` for the metrics columns) plays the agent (its search over its model,
      `eval_simulations`, no noise) against the net of the previous iteration (the "best"
      of AlphaZero without gating) and the fixed `baselines`, and updates the Elo table
      (random anchored at 0); the table and the previous net are saved in checkpoints.
    - Self-play workers (`workers > 1`): spawned processes (`selfplay.start_workers`), each
      playing groups of `concurrent_games` episodes with the weights sent as safetensors bytes
      (`play_group`); groups are cut by episode number, never by worker, so with the same seed
      a run is the same for any `workers`. A Ctrl-C during acting gives the iteration's
      episodes up and saves the state the iteration started from (`selfplay.play_groups`).
    - `priority_alpha > 0`: prioritized replay as the paper's Appendix G (P(i) proportional to
      p_i^alpha, p = |nu - z| when stored and |v^0 - z| after training on it, losses weighted
      by (N P(i))^-beta).
    - `gumbel = true`: Gumbel MuZero's root (`bellman.search.gumbel`) chooses the moves played
      and gives the policy targets (the improved policy); the trained agent plays its choice.

Reanalyse (`reanalyse_fraction` = f > 0; MuZero Reanalyze, the paper's Appendix H): step C
revisits stored positions with the latest network. For each sampled position t, with
probability f:

     C'.  for k = 0..K with t + k < T: search again from o_{t+k} with the current h, g, f (no
          noise, `simulations` as when acting) and take its visit distribution (a Gumbel root:
          its improved policy) as the new pi_{t+k};
          envs: search again at every position t + k + n whose root value the n-step value
          target bootstraps from and use the fresh nu_{t+k+n}:
              z_{t+k} = u_{t+k+1} + ... + g^{n-1} u_{t+k+n} + g^n nu^fresh_{t+k+n}
          (board games: z is the game's result, which no search changes);
     C.   then the targets and the loss as above.

All the fresh searches of a minibatch run together (`search_together`: one network call per
kind per wave). The fresh targets are used for that gradient step only; the replay keeps what
acting stored. A board position's real state (the search's root legal moves, and the tracked
states of `tree_legal_moves`) is rebuilt by replaying its episode's moves from the initial
state, so positions whose episode start has left the replay window keep their stored targets.
Deviation: the paper bootstraps the fresh value from a target network; here the latest network.
f = 0 (the default) draws no extra random numbers: runs are the same bit for bit as without the
option.

Sibling moves (`sibling_weight` = lambda_s > 0, board games; a deviation, not in the paper):
the unrolls train g only along the moves played, so a move the games never played (a win left
on the board, a reply that does not block) has a reward and a next state that nothing taught.
The rules of a board game are known, so for each sampled position t, for every legal move
b != a_t of its real state s_t (`sibling_targets`), with s' = the position b leads to:

     C'''. s^b = g(s^0, b) (the gradient into g halved, as the unroll) is trained towards what
           the rules and the latest network say of s':
              l_s(b) = lambda_r l^r(u(b), r^b) + l^v(z', v^b) + [s' not over] l^p(p', p^b)
                       (+ [s' not over] lambda_c l^c(s^b, h(o(s'))) with the consistency loss)
           with u(b) the result of b for its mover when it ends the game, 0 otherwise;
           z' = 0 when the game is over, else sg(v) of f(h(o(s'))), and p' = sg(softmax) of
           that f's policy logits; and l += lambda_s mean_b l_s(b) per position.

So every edge out of a real position learns its reward and the value and prior of the position
it leads to, as AlphaZero's tree reads them from the rules. Positions whose episode start has
left the replay have no real state here and train no siblings.

Fresh bootstrap values (`reanalyse_values = true`, envs; the value half of Reanalyze without
its searches, as muzero-general's `use_last_model_value`): for every sampled position,

     C''. at every position t + k + n whose stored root value nu_{t+k+n} an n-step value
          target bootstraps from (`bootstrap_positions`), take the latest network's
          v = f(h(o_{t+k+n})) instead (one batched call per minibatch, eval mode):
              z_{t+k} = u_{t+k+1} + ... + g^{n-1} u_{t+k+n} + g^n v(o_{t+k+n})
          so the targets follow the value function as it learns, not the one that acted
          (a root value stored early in a run is the search of an untrained model).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors

from bellman import loop, seeding
from bellman.checkpoint import check_schema
from bellman.config import TrainConfig, choices, interval
from bellman.errors import CheckpointError, ConfigError, NonFiniteError, did_you_mean
from bellman.games import GAMES, Game, make_game
from bellman.games.base import play_moves
from bellman.nets import resolve_device
from bellman.run import Run
from bellman.search.mcts import MCTS, best_move, search_together
from bellman.torch_state import check_arrays, load_module, load_optimizer, optimizer_arrays
from bellman.zero.alphazero import ArenaReport
from bellman.zero.arena import (
    BASELINES,
    EloTable,
    OpponentEnv,
    baseline_opponents,
    checked_elo,
    rated_matches,
)
from bellman.zero.muzero_network import (
    AtariMuZeroNetwork,
    BoardMuZeroNetwork,
    MuZeroModel,
    MuZeroNetwork,
    VectorMuZeroNetwork,
    result_classes,
    scalar_to_support,
    scale_gradient,
    scale_hidden,
)
from bellman.zero.muzero_selfplay import (
    ActingEpisode,
    EnvRules,
    TrajectoryReplay,
    play_episodes,
    search_policy,
    sibling_targets,
    symmetric_trajectories,
    unrolled_targets,
    value_target,
)
from bellman.zero.network import (
    check_finite,
    gradient_steps,
    load_weights,
    set_learning_rate,
    weights_bytes,
)
from bellman.zero.selfplay import idle_workers_note, play_groups, start_workers


@dataclass(frozen=True)
class MuZeroConfig(TrainConfig):
    """Hyperparameters of MuZero; defaults are the paper's where they apply to small problems."""

    env: str = ""
    """A board game (tictactoe, connect4, go9, go13, go19) or a gymnasium env with discrete
    actions (CartPole-v1, ALE/Pong-v5, ...)."""
    steps: int = field(default=1_000_000, metadata=interval("[1, inf)"))
    """Total real moves / env steps of the run (a resumed run continues to this target)."""
    log_every: int = field(default=1, metadata=interval("[1, inf)"))
    """Moves between two rows of metrics.csv (1: every iteration)."""
    simulations: int = field(default=50, metadata=interval("[1, inf)"))
    """MCTS simulations per move (MuZero: 50 Atari, 800 board games)."""
    c_puct: float = field(default=1.25, metadata=interval("(0, inf)"))
    """c1 of pUCT (MuZero: 1.25)."""
    c_base: float = field(default=19652.0, metadata=interval("(0, inf)"))
    """c2 of pUCT: c(s) = c1 + log((N(s) + c2 + 1) / c2) (MuZero: 19652)."""
    dirichlet_alpha: float = field(default=0.25, metadata=interval("(0, inf)"))
    """Root noise concentration (MuZero: 0.25 Atari; 0.3 chess, 0.03 Go)."""
    dirichlet_fraction: float = field(default=0.25, metadata=interval("[0, 1]"))
    """Weight of the root noise (MuZero: 0.25)."""
    temperature_moves: int = field(default=30, metadata=interval("[0, inf)"))
    """Moves of an episode played with tau = 1 (proportional to visits)."""
    final_temperature: float = field(default=0.0, metadata=interval("[0, inf)"))
    """tau after temperature_moves (0: the most visited move)."""
    temperature_decay: bool = False
    """The paper's Atari schedule over the run (its visit_softmax_temperature_fn, there in
    training steps, here in real moves / env steps): tau as above times 1 until half of
    `steps`, times 0.5 until three quarters, times 0.25 after; False: times 1 all run long."""
    search_batch_size: int = field(default=1, metadata=interval("[1, inf)"))
    """Descents per search round of one tree (with a virtual loss); the network batch is this
    times the episodes searching together."""
    virtual_loss: float = field(default=1.0, metadata=interval("[0, inf)"))
    """Virtual loss n_vl added along a pending descent."""
    fpu: float = field(default=0.0, metadata=interval("[0, 1]"))
    """First-play urgency: the normalised Q_bar in [0, 1] an unvisited edge scores (MuZero: 0,
    the lowest value; with a board game's known bounds (-1, 1), 0.5 is a draw, as AlphaZero's
    search here scores an unvisited move)."""
    reanalyse_fraction: float = field(default=0.0, metadata=interval("[0, 1]"))
    """Reanalyse (module docstring): the probability that a sampled position's policy targets
    (and, in envs, the bootstrapped values of its value targets) are recomputed by fresh
    searches with the latest network (MuZero Reanalyze: 0.8); 0: the targets stored by acting."""
    reanalyse_values: bool = False
    """Envs: value targets bootstrap from the latest network's f(h(o)) at the bootstrap
    position, not the root value the acting search stored (module docstring, C'')."""
    gumbel: bool = False
    """Gumbel MuZero's root (Danihelka et al. 2022; `bellman.search.gumbel`): Gumbel-top-k
    and sequential halving choose the move to play (instead of visit counts and Dirichlet
    noise) and the improved policy is the policy target."""
    max_considered: int = field(default=16, metadata=interval("[1, inf)"))
    """Gumbel root: actions considered at most (the paper: 16)."""
    tree_legal_moves: bool = False
    """Board games: mask the illegal moves inside the tree too (tracking the real states
    along each path); False: only at the root, as the paper."""
    discount: float = field(default=0.997, metadata=interval("(0, 1]"))
    """gamma of rewards and value targets in envs (MuZero Atari: 0.997; board games use 1)."""
    td_steps: int = field(default=10, metadata=interval("[1, inf)"))
    """n of the n-step value target in envs (MuZero Atari: 10; board games: to the end)."""
    unroll_steps: int = field(default=5, metadata=interval("[1, 64]"))
    """K, steps the model is unrolled in training (MuZero: 5)."""
    reward_weight: float = field(default=1.0, metadata=interval("[0, inf)"))
    """Weight of the reward loss l^r in step C (the paper: 1). On random Connect Four games g
    learned the reward of a winning move far faster alone than beside the value and policy
    losses (README, "MuZero"); > 1 gives it more of the gradient."""
    reward_classes: bool = False
    """Board games: g's reward as a distribution over the move's results -1, 0, +1 trained by
    cross-entropy (module docstring); False: a scalar in (-1, 1) trained by squared error."""
    sibling_weight: float = field(default=0.0, metadata=interval("[0, inf)"))
    """Board games: lambda_s of the sibling moves' loss (module docstring, step C''': g one
    step along every legal move not played at each sampled position, towards the rules' reward
    and the latest network's f(h(o)) of the position it leads to); 0: off, as the paper."""
    max_siblings: int = field(default=0, metadata=interval("[0, inf)"))
    """With `sibling_weight` > 0: the sibling moves trained per position at most, drawn
    uniformly (Go's 80-odd legal moves cost 80 unrolls a position); 0: all of them."""
    consistency_weight: float = field(default=0.0, metadata=interval("[0, inf)"))
    """lambda_c of EfficientZero's self-supervised consistency loss (module docstring, step C;
    EfficientZero: 2): trains g's unrolled states towards h's states of the real observations
    they stand for; 0: the paper's MuZero loss (and no projection heads in the network)."""
    projection_size: int = field(default=256, metadata=interval("[2, 65536]"))
    """Width of the consistency loss's projection (EfficientZero: 1024 on Atari)."""
    support: int = field(default=300, metadata=interval("[1, 10000]"))
    """S of the categorical value and reward over -S..S in envs (MuZero Atari: 300)."""
    blocks: int = field(default=2, metadata=interval("[0, 64]"))
    """Residual blocks of h and of g (board games, Atari's dynamics and prediction)."""
    channels: int = field(default=32, metadata=interval("[1, 1024]"))
    """Filters of the residual towers (the latent state's planes)."""
    value_hidden: int = field(default=32, metadata=interval("[1, 4096]"))
    """Units of a board game's value and reward heads' hidden layer."""
    hidden_size: int = field(default=64, metadata=interval("[1, 65536]"))
    """Vector envs: size of the latent state."""
    layers: str = "64"
    """Vector envs: hidden layer sizes of every MLP, comma-separated."""
    replay_window: int = field(default=100_000, metadata=interval("[1, inf)"))
    """Positions kept for training (whole episodes; the oldest are dropped)."""
    priority_alpha: float = field(default=0.0, metadata=interval("[0, inf)"))
    """Prioritized replay (MuZero: 1): sample position i with probability p_i^alpha /
    sum_j p_j^alpha, p = |nu - z| when stored, then |v^0 - z| after each gradient step on it;
    0: uniform sampling."""
    priority_beta: float = field(default=1.0, metadata=interval("[0, 1]"))
    """Exponent of the importance weights (N P(i))^-beta of prioritized replay (MuZero: 1)."""
    batch_size: int = field(default=256, metadata=interval("[1, inf)"))
    """Positions per minibatch (MuZero: 2048 board games, 1024 Atari)."""
    optimizer: str = field(default="adam", metadata=choices("sgd", "adam"))
    """adam or sgd (with momentum, as the paper)."""
    learning_rate: float = field(default=0.001, metadata=interval("(0, inf)"))
    """Step size (at the start of the run when lr_final_fraction < 1)."""
    lr_final_fraction: float = field(default=1.0, metadata=interval("(0, 1]"))
    """The learning rate decays linearly (in real moves / env steps) from learning_rate to this
    fraction of it at `steps`, as AlphaZero's; 1: constant (the paper decays it
    exponentially)."""
    momentum: float = field(default=0.9, metadata=interval("[0, 1)"))
    """SGD momentum (MuZero: 0.9); unused by adam."""
    weight_decay: float = field(default=1e-4, metadata=interval("[0, inf)"))
    """c of the loss's c ||theta||^2 term (MuZero: 1e-4)."""
    train_steps: int = field(default=50, metadata=interval("[0, inf)"))
    """Gradient steps per iteration (when replay_ratio is 0)."""
    replay_ratio: float = field(default=0.0, metadata=interval("[0, inf)"))
    """When > 0, an iteration's gradient steps are ceil(replay_ratio * new positions (the
    symmetric copies counted) / batch_size), as AlphaZero's: each new position starts about
    this many unrolls, however long the iteration's episodes were (CartPole's grow 25-fold as
    it learns); 0: `train_steps` per iteration."""
    games_per_iteration: int = field(default=16, metadata=interval("[1, inf)"))
    """Episodes per iteration, all played at once (one network call per kind per wave)."""
    symmetries: bool = True
    """Board games: store every symmetric copy of each trajectory (8 for tic-tac-toe and Go,
    2 for Connect Four), as AlphaZero does; the paper's MuZero does not."""
    max_episode_steps: int = field(default=0, metadata=interval("[0, inf)"))
    """Envs: cut a self-play episode after this many steps (a time limit: its last value
    target bootstraps), so that an iteration of long Atari games ends; 0: the env's own end."""
    eval_simulations: int = field(default=50, metadata=interval("[1, inf)"))
    """Simulations per move of the trained agent (`bellman eval`, `play`, `move`)."""
    arena_games: int = field(default=0, metadata=interval("[0, inf)"))
    """Board games: arena games against each opponent (half as first player) every
    `arena_every` iterations, as AlphaZero's; 0: no arena."""
    arena_every: int = field(default=1, metadata=interval("[1, inf)"))
    """Iterations between two arenas."""
    baselines: str = "random,mcts,alphabeta"
    """The arena's fixed opponents, comma-separated: random, mcts (classic MCTS with random
    rollouts), alphabeta (depth-limited alpha-beta); empty for none."""
    elo_k: float = field(default=16.0, metadata=interval("(0, inf)"))
    """K factor of the arena's Elo updates."""
    eval_opponent: str = field(default="alphabeta", metadata=choices("random", "mcts", "alphabeta"))
    """Board games: the fixed opponent of `bellman eval`."""
    baseline_simulations: int = field(default=200, metadata=interval("[1, inf)"))
    """Simulations (one random rollout each) of the classic MCTS opponent of `bellman eval`."""
    baseline_depth: int = field(default=2, metadata=interval("[1, 64]"))
    """Plies of the alpha-beta opponent of `bellman eval`."""
    solve: bool = False
    """(Kept False: a learned model proves nothing; here for the shared eval opponents.)"""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the learner's network runs: auto uses CUDA when present."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch in every process."""
    workers: int = field(default=1, metadata=interval("[1, 256]"))
    """Self-play processes (spawned; 1 plays in the learner's process), as AlphaZero's."""
    concurrent_games: int = field(default=0, metadata=interval("[0, 4096]"))
    """Episodes a process plays at once, the leaves of all their trees evaluated in one network
    call per kind per wave. An iteration's episodes are split into groups of this many by
    episode number, whatever the number of workers, so a run is the same for any `workers`;
    0: all of an iteration's episodes in one group (then extra workers have nothing to do)."""
    train_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch for the gradient steps (step C), which run while the self-play
    workers wait: with 2 workers on 2 cores, 2 uses the core that would idle. Fixed per run, so
    a run stays reproducible."""

    def validate(self) -> None:
        if self.batch_size > self.replay_window:
            raise ConfigError(
                f"batch_size = {self.batch_size} is larger than replay_window = "
                f"{self.replay_window}; make replay_window >= batch_size"
            )
        if self.solve:
            raise ConfigError("solve = true needs the real rules; MuZero searches a learned model")
        unknown = [name for name in self.baseline_names if name not in BASELINES]
        if unknown:
            raise ConfigError(
                f"baselines = '{self.baselines}' names unknown players {', '.join(unknown)}; "
                f"valid: {', '.join(BASELINES)} (comma-separated)"
            )
        try:
            self.layer_sizes  # noqa: B018 - parses
        except ValueError:
            raise ConfigError(
                f"layers = '{self.layers}' is invalid; valid: positive integers, "
                "comma-separated, e.g. '64,64'"
            ) from None
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device = cuda but no CUDA GPU is visible; use device = auto or cpu")
        if self.reanalyse_values and self.board:
            raise ConfigError(
                f"reanalyse_values = true needs an env's bootstrapped value targets; {self.env}'s "
                "targets are the game's result (valid: CartPole-v1 or an ALE game)"
            )
        if self.sibling_weight > 0 and not self.board:
            raise ConfigError(
                f"sibling_weight > 0 needs a board game's rules to try the moves not played; "
                f"{self.env} is an env (valid: {', '.join(GAMES)})"
            )
        if self.reward_classes and not self.board:
            raise ConfigError(
                f"reward_classes = true is for a board game's rewards (-1, 0, +1); {self.env}'s "
                f"reward is categorical over -support..support already (valid: {', '.join(GAMES)})"
            )
        if self.reanalyse_values and self.reanalyse_fraction > 0:
            raise ConfigError(
                "reanalyse_values = true and reanalyse_fraction > 0 both replace the bootstrapped "
                "values; choose one (reanalyse_fraction = 0, or reanalyse_values = false)"
            )

    @property
    def baseline_names(self) -> list[str]:
        """The arena's fixed opponents, in order."""
        return [name.strip() for name in self.baselines.split(",") if name.strip()]

    @property
    def arena(self) -> bool:
        """True when the run plays arenas (a board game with arena_games > 0)."""
        return self.board and self.arena_games > 0

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        sizes = tuple(int(part) for part in self.layers.split(",") if part.strip())
        if not sizes or min(sizes) < 1:
            raise ValueError(self.layers)
        return sizes

    @property
    def board(self) -> bool:
        """True for a board game (two players, scalar value and reward)."""
        return self.env in GAMES


Config = MuZeroConfig


# ---- the world: a board game or a gymnasium env ---------------------------------------------
def make_train_env(config: MuZeroConfig):
    """The board game, or the gymnasium env (Atari with DeepMind's preprocessing) it trains
    on; a ConfigError naming what is valid for an unknown name."""
    if config.board:
        return make_game(config.env)
    close = did_you_mean(config.env, list(GAMES))
    if close:  # a misspelt board game, not a gymnasium id
        raise ConfigError(
            f"unknown environment '{config.env}'{close}; valid: a board game "
            f"({', '.join(GAMES)}) or a gymnasium env with discrete actions (`bellman envs`)"
        )
    return _make_gym(config, training=True)


def _make_gym(config: MuZeroConfig, *, training: bool, render_mode: str | None = None):
    from bellman.envs import make_env
    from bellman.envs.atari import is_atari, make_atari_env

    if is_atari(config.env):
        return make_atari_env(config.env, training=training, render_mode=render_mode)
    return make_env(config.env, render_mode=render_mode)


def make_eval_env(config: MuZeroConfig, render_mode: str | None = None):
    """Board games: the game against `eval_opponent` (`OpponentEnv`); envs: the env itself."""
    if config.board:
        return OpponentEnv(make_game(config.env), config.eval_opponent, config,
                           render_mode=render_mode)  # fmt: skip
    return _make_gym(config, training=False, render_mode=render_mode)


def check_env(world, config: MuZeroConfig | None = None) -> None:
    """MuZero trains on a board game or on an env with discrete actions and array
    observations (a vector or stacked frames)."""
    if hasattr(world, "initial_state"):
        if config is not None and world.name != config.env:
            raise ConfigError(f"the game is '{world.name}' but the config's env is '{config.env}'")
        return
    import gymnasium as gym

    name = config.env if config is not None else type(world).__name__
    if not isinstance(world.action_space, gym.spaces.Discrete):
        raise ConfigError(
            f"MuZero needs discrete actions; {name} has {type(world.action_space).__name__} "
            "actions (try CartPole-v1, an ALE game or a board game)"
        )
    shape = world.observation_space.shape
    if not isinstance(world.observation_space, gym.spaces.Box) or len(shape) not in (1, 3):
        raise ConfigError(
            f"MuZero needs vector or image observations; {name} has "
            f"{world.observation_space} (try CartPole-v1, an ALE game or a board game)"
        )


def world_spec(world) -> tuple[tuple[int, ...], Any, int]:
    """(observation shape, observation dtype, A) of a board game or an env."""
    if hasattr(world, "initial_state"):
        return tuple(world.observation_shape), np.float32, world.action_size
    space = world.observation_space
    return tuple(space.shape), np.dtype(space.dtype), int(world.action_space.n)


def build_network(config: MuZeroConfig, world, *, scratch: bool = False) -> MuZeroNetwork:
    """h, g, f for this config and world (step 1), with the consistency loss's heads when
    `consistency_weight` > 0; `scratch`: weights to be overwritten, leave torch's generator
    untouched."""
    with torch.random.fork_rng(devices=[], enabled=scratch):
        network = _functions(config, world)
        if config.consistency_weight > 0:
            network.add_consistency_heads(config.projection_size, world_spec(world)[0])
        return network


def _functions(config: MuZeroConfig, world) -> MuZeroNetwork:
    """h, g, f: the board, Atari or vector networks."""
    shape, _, actions = world_spec(world)
    if hasattr(world, "initial_state"):
        return BoardMuZeroNetwork(shape, actions, blocks=config.blocks, channels=config.channels,
                                  value_hidden=config.value_hidden,
                                  reward_classes=config.reward_classes)  # fmt: skip
    if len(shape) == 3:
        return AtariMuZeroNetwork(shape, actions, channels=config.channels, blocks=config.blocks,
                                  support=config.support)  # fmt: skip
    return VectorMuZeroNetwork(shape[0], actions, hidden_size=config.hidden_size,
                               layers=config.layer_sizes, support=config.support)  # fmt: skip


def search_for(config: MuZeroConfig, world, model, *, simulations: int, seed: int) -> MCTS:
    """The MCTS over the learned model (module docstring, step A)."""
    board = hasattr(world, "initial_state")
    rules = world if board else EnvRules(config.env, world_spec(world)[2])
    return MCTS(
        rules, model, simulations=simulations, c_puct=config.c_puct, c_base=config.c_base,
        dirichlet_alpha=config.dirichlet_alpha, dirichlet_fraction=config.dirichlet_fraction,
        batch_size=config.search_batch_size, virtual_loss=config.virtual_loss, seed=seed,
        discount=1.0 if board else config.discount, two_player=board, normalize_q=True,
        tree_legal_moves=config.tree_legal_moves and board, gumbel=config.gumbel,
        max_considered=config.max_considered, known_bounds=(-1.0, 1.0) if board else None,
        fpu=config.fpu,
    )  # fmt: skip


def model_for(network: MuZeroNetwork, world, device="cpu") -> MuZeroModel:
    """The network as the search's `Model`, observing a board's planes or an env's arrays."""
    observe = world.observation if hasattr(world, "initial_state") else np.asarray
    return MuZeroModel(network, observe, device)


# ---- step C: training ---------------------------------------------------------------------
def muzero_loss(
    network: MuZeroNetwork,
    batch: dict[str, torch.Tensor],
    unroll_steps: int,
    consistency_weight: float = 0.0,
    reward_weight: float = 1.0,
    sibling_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Step C's l (without the L2 term), averaged over the batch; `batch` holds observations
    `[B, ...]`, actions `[B, K]`, values, rewards and masks `[B, K + 1]`, policies
    `[B, K + 1, A]` (`unrolled_targets`) and importance weights `[B]`, and with
    `consistency_weight` > 0 the observations o_{t+1..t+K} `[B, K, ...]` as
    `next_observations` and `next_masks` `[B, K]` (`TrajectoryReplay.following`), with
    `sibling_weight` > 0 the `sibling_*` arrays (`MuZeroLearner.sibling_batch`). Returns (l,
    the value, reward and policy parts (and `consistency_loss`, `sibling_loss`) summed over
    the steps, and v^0 as `initial_values`)."""
    hidden, reward, logits, value = network.initial_inference(batch["observations"])
    root = hidden
    parts = {"value_loss": 0.0, "reward_loss": 0.0, "policy_loss": 0.0}
    if consistency_weight > 0:  # h's states of the real observations, the loss's targets
        parts["consistency_loss"] = 0.0
        following = batch["next_observations"]
        with torch.no_grad():
            observed = scale_hidden(network.represent(following.flatten(0, 1)))
        observed = observed.view(*following.shape[:2], *observed.shape[1:])
    parts["initial_values"] = network.scalar(value).detach()  # v^0 (prioritized replay)
    total = torch.zeros((), device=hidden.device)
    for k in range(unroll_steps + 1):
        if k > 0:  # the gradient into the dynamics halved; each unrolled step's loss / K
            hidden, reward, logits, value = network.recurrent_inference(
                scale_gradient(hidden, 0.5), batch["actions"][:, k - 1]
            )
        value_loss = _scalar_loss(network, value, batch["values"][:, k])
        policy_loss = _cross_entropy(batch["policies"][:, k], logits)
        step = value_loss + policy_loss * batch["masks"][:, k]
        if k > 0:
            reward_loss = _reward_loss(network, reward, batch["rewards"][:, k])
            step = step + reward_weight * reward_loss
            parts["reward_loss"] += float(reward_loss.mean().detach())
            if consistency_weight > 0:
                consistency = network.consistency.loss(hidden, observed[:, k - 1])
                consistency = consistency * batch["next_masks"][:, k - 1]
                step = step + consistency_weight * consistency
                parts["consistency_loss"] += float(consistency.mean().detach())
        parts["value_loss"] += float(value_loss.mean().detach())
        parts["policy_loss"] += float((policy_loss * batch["masks"][:, k]).mean().detach())
        step = step * batch["weights"]  # importance weights (ones when uniform)
        total = total + step.mean() * (1.0 if k == 0 else 1.0 / unroll_steps)
    if sibling_weight > 0:
        siblings = sibling_loss(network, root, batch, consistency_weight, reward_weight)
        siblings = siblings * batch["weights"]
        parts["sibling_loss"] = float(siblings.mean().detach())
        total = total + sibling_weight * siblings.mean()
    return total, parts


def sibling_loss(
    network: MuZeroNetwork,
    root: torch.Tensor,
    batch: dict[str, torch.Tensor],
    consistency_weight: float,
    reward_weight: float,
) -> torch.Tensor:
    """Step C''' (module docstring): `[B]` mean_b l_s(b) over each position's sibling moves b
    (0 for a position without any), g unrolled one step from the root states `root` `[B, ...]`
    along every b at once."""
    masks = batch["sibling_masks"]
    rows, actions = masks.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return torch.zeros(masks.shape[0], device=masks.device)
    hidden, reward, logits, value = network.recurrent_inference(
        scale_gradient(root[rows], 0.5), actions
    )
    going = 1.0 - batch["sibling_ended"][rows, actions]  # s' not over
    with torch.no_grad():  # what the latest h and f make of the real position s'
        observed, _, observed_logits, observed_value = network.initial_inference(
            batch["sibling_observations"][rows, actions]
        )
        value_target = network.scalar(observed_value) * going
        policy_target = torch.softmax(observed_logits, dim=1)
    loss = reward_weight * _reward_loss(network, reward, batch["sibling_rewards"][rows, actions])
    loss = loss + _scalar_loss(network, value, value_target)
    loss = loss + going * _cross_entropy(policy_target, logits)
    if consistency_weight > 0:
        loss = loss + going * consistency_weight * network.consistency.loss(hidden, observed)
    per_position = torch.zeros(masks.shape[0], device=masks.device).index_add(0, rows, loss)
    return per_position / masks.sum(1).clamp(min=1.0)


def _scalar_loss(network: MuZeroNetwork, raw: torch.Tensor, target: torch.Tensor):
    """`[B]` squared error (scalar heads) or cross-entropy against the target's two-hot
    projection on the support (categorical heads)."""
    if not network.support:
        return (raw - target) ** 2
    return _cross_entropy(scalar_to_support(target, network.support), raw)


def _reward_loss(network: MuZeroNetwork, raw: torch.Tensor, target: torch.Tensor):
    """`[B]` l^r: cross-entropy against the target's result classes (`reward_classes`), else
    as `_scalar_loss`."""
    if network.reward_classes:
        return _cross_entropy(result_classes(target), raw)
    return _scalar_loss(network, raw, target)


def _cross_entropy(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """`[B]` -sum_i target_i log softmax(logits)_i over the last dimension."""
    return -(target * torch.log_softmax(logits, dim=1)).sum(1)


class MuZeroLearner:
    """h, g, f, the optimizer, the replay and the counters: everything a checkpoint holds."""

    def __init__(self, config: MuZeroConfig, world):
        self.config, self.world = config, world
        self.device = resolve_device(config.device)
        self.rng = seeding.seed_everything(config.seed)
        torch.manual_seed(config.seed)
        self.network = build_network(config, world).to(self.device)  # 1. random h, g, f
        self.parameters = list(self.network.parameters())
        self.optimizer = make_optimizer(config, self.parameters)
        shape, dtype, actions = world_spec(world)
        self.replay = TrajectoryReplay(config.replay_window, shape, dtype, actions)
        self.step = self.games = self.iteration = self.updates = 0
        self.elo = EloTable(config.elo_k)
        self.best = weights_bytes(self.network) if config.arena else None  # the arena's "best"
        self.best_generation = 0

    def sample_batch(self) -> dict[str, torch.Tensor]:
        """B positions drawn uniformly (or by priority), each with its K + 1 targets
        (`unrolled_targets`), and their importance weights."""
        config, replay = self.config, self.replay
        weights = np.ones(config.batch_size, np.float32)
        if config.priority_alpha > 0:
            slots, weights = self._prioritized_slots()
        else:
            slots = self.rng.integers(0, replay.size, config.batch_size)
        columns: list[list[np.ndarray]] = [[] for _ in range(5)]
        td_steps = None if config.board else config.td_steps
        horizon = None if td_steps is None else config.unroll_steps + td_steps + 1
        trajectories = [replay.trajectory_from(slot, horizon) for slot in slots.tolist()]
        if config.reanalyse_fraction > 0:  # C'. fresh searches' targets
            chosen = self.rng.random(len(slots)) < config.reanalyse_fraction
            trajectories = self.reanalyse(slots[chosen], trajectories, np.flatnonzero(chosen))
        if config.reanalyse_values:  # C''. the latest network's bootstrap values
            trajectories = self.fresh_bootstrap_values(slots, trajectories)
        for trajectory in trajectories:
            targets = unrolled_targets(
                trajectory, 0, unroll_steps=config.unroll_steps, td_steps=td_steps,
                discount=1.0 if config.board else config.discount, two_player=config.board,
                rng=self.rng,
            )  # fmt: skip
            for column, value in zip(columns, targets, strict=True):
                column.append(value)
        names = ("actions", "values", "rewards", "policies", "masks")
        batch = {name: torch.from_numpy(np.stack(column)).to(self.device)
                 for name, column in zip(names, columns, strict=True)}  # fmt: skip
        batch["observations"] = torch.from_numpy(replay.observations[slots]).to(self.device)
        if config.consistency_weight > 0:
            following, masks = replay.following(slots, config.unroll_steps)
            batch["next_observations"] = torch.from_numpy(following).to(self.device)
            batch["next_masks"] = torch.from_numpy(masks).to(self.device)
        if config.sibling_weight > 0:  # C'''. the moves not played, by the rules
            batch |= self.sibling_batch(slots)
        batch["weights"] = torch.from_numpy(weights).to(self.device)
        batch["slots"] = torch.from_numpy(slots)
        return batch

    def sibling_batch(self, slots: np.ndarray) -> dict[str, torch.Tensor]:
        """Step C''' (module docstring): `sibling_targets` of each sampled position's real
        state, stacked as `sibling_masks`, `sibling_rewards`, `sibling_ended` `[B, A]` and
        `sibling_observations` `[B, A, C, H, W]` (all masks 0 where the episode's start has left
        the replay; at most `max_siblings` ones in a row)."""
        game = self.world
        empty = (np.zeros(game.action_size, np.float32),) * 3 + (
            np.zeros((game.action_size, *game.observation_shape), np.float32),)  # fmt: skip
        columns: list[list[np.ndarray]] = [[] for _ in range(4)]
        for slot in slots.tolist():
            states = self._real_states(slot, [0])
            targets = empty if states is None else sibling_targets(
                game, states[0], int(self.replay.actions[slot]))  # fmt: skip
            siblings = np.flatnonzero(targets[0])
            if 0 < self.config.max_siblings < len(siblings):  # a uniform subset of them
                masks = np.zeros_like(targets[0])
                masks[self.rng.choice(siblings, self.config.max_siblings, replace=False)] = 1.0
                targets = (masks, *targets[1:])
            for column, value in zip(columns, targets, strict=True):
                column.append(value)
        names = ("sibling_masks", "sibling_rewards", "sibling_ended", "sibling_observations")
        return {name: torch.from_numpy(np.stack(column)).to(self.device)
                for name, column in zip(names, columns, strict=True)}  # fmt: skip

    def reanalyse(self, slots: np.ndarray, trajectories: list, rows: np.ndarray) -> list:
        """Step C' (module docstring) for the sampled positions of ring `slots`, rows `rows` of
        `trajectories` (each from its position on, `TrajectoryReplay.trajectory_from`):
        returns `trajectories` with those rows' policies and root values replaced where a fresh
        search gives them."""
        config = self.config
        wanted: list[tuple[int, int, Any]] = []  # (row, position in its trajectory, real state)
        for slot, row in zip(slots.tolist(), rows.tolist(), strict=True):
            positions = reanalysed_positions(trajectories[row], config)
            states = self._real_states(slot, positions)
            wanted += [(row, i, state) for i, state in zip(positions, states or [], strict=False)]
        if not wanted:
            return trajectories
        model = model_for(self.network, self.world, self.device)  # (puts h, g, f in eval mode)
        searches = [search_for(config, self.world, model, simulations=config.simulations,
                               seed=0) for _ in wanted]  # fmt: skip
        results = search_together(searches, [state for _, _, state in wanted])
        fresh = {}
        for (row, index, _), result in zip(wanted, results, strict=True):
            if row not in fresh:
                old = trajectories[row]
                fresh[row] = replace(old, policies=old.policies.copy(),
                                                 root_values=old.root_values.copy())  # fmt: skip
            fresh[row].policies[index] = search_policy(result)
            fresh[row].root_values[index] = result.value
        return [fresh.get(row, trajectory) for row, trajectory in enumerate(trajectories)]

    def fresh_bootstrap_values(self, slots: np.ndarray, trajectories: list) -> list:
        """Step C'' (module docstring) for the sampled positions of ring `slots` and their
        `trajectories`: each trajectory with its root values at `bootstrap_positions`
        replaced by the latest network's v = f(h(o)), all of them in one call."""
        wanted = [(row, i) for row, trajectory in enumerate(trajectories)
                  for i in bootstrap_positions(trajectory, self.config)]  # fmt: skip
        if not wanted:
            return trajectories
        rows, positions = np.array(wanted).T
        where = (slots[rows] + positions) % self.replay.capacity
        observations = torch.from_numpy(self.replay.observations[where]).to(self.device)
        training = self.network.training
        self.network.eval()
        with torch.no_grad():
            value = self.network.initial_inference(observations)[3]
            values = self.network.scalar(value).float().cpu().numpy()
        self.network.train(training)
        fresh = {}
        for row, i, v in zip(rows.tolist(), positions.tolist(), values.tolist(), strict=True):
            if row not in fresh:
                fresh[row] = replace(trajectories[row],
                                     root_values=trajectories[row].root_values.copy())  # fmt: skip
            fresh[row].root_values[i] = v
        return [fresh.get(row, trajectory) for row, trajectory in enumerate(trajectories)]

    def _real_states(self, slot: int, positions: list[int]) -> list | None:
        """The states a fresh search starts from at `positions` (offsets from ring `slot`):
        an env's stored observations; a board game's states, rebuilt by replaying the episode's
        moves from the initial state (None when its first position has left the replay)."""
        replay = self.replay
        where = [(slot + i) % replay.capacity for i in positions]
        if not self.config.board:
            return list(replay.observations[where])
        start = replay.episode_start(slot)
        if start is None:
            return None
        game, offset = self.world, int(replay.indices[slot])
        moves = replay.actions[(start + np.arange(offset + max(positions))) % replay.capacity]
        state, states, needed = game.initial_state(), {}, set(positions)
        for played, action in enumerate(moves.tolist() + [None]):
            if played - offset in needed:
                states[played - offset] = state
            if action is not None:
                state = game.apply(state, action)
        return [states[i] for i in positions]

    def _prioritized_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """Slots drawn with P(i) = p_i^alpha / sum_j p_j^alpha and their weights
        (N P(i))^-beta / max_j (N P(j))^-beta."""
        config, size = self.config, self.replay.size
        scaled = self.replay.priorities[:size].astype(np.float64) ** config.priority_alpha
        probabilities = scaled / scaled.sum()
        slots = self.rng.choice(size, config.batch_size, p=probabilities)
        weights = (size * probabilities[slots]) ** -config.priority_beta
        return slots, (weights / weights.max()).astype(np.float32)

    def promote(self) -> None:
        """The network of this iteration becomes the next arena's "best" opponent (checked
        finite: it is saved in checkpoints)."""
        check_finite(self.network, "network", self.step)
        self.best, self.best_generation = weights_bytes(self.network), self.iteration

    def train_step(self) -> tuple[float, ...]:
        """Step C once. Returns (l, value loss, reward loss, policy loss, consistency loss,
        sibling loss (each NaN without its option))."""
        batch = self.sample_batch()
        self.network.train()
        config = self.config
        loss, parts = muzero_loss(self.network, batch, config.unroll_steps,
                                  config.consistency_weight, config.reward_weight,
                                  config.sibling_weight)  # fmt: skip
        if config.priority_alpha > 0:  # p = |v^0 - z| for the positions just trained on
            errors = (parts["initial_values"] - batch["values"][:, 0]).abs().cpu().numpy()
            self.replay.priorities[batch["slots"].numpy()] = errors + PRIORITY_EPS
        l2 = sum(p.pow(2).sum() for p in self.parameters)
        loss = loss + config.weight_decay * l2
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteError(
                f"loss is {value} at step {self.step} (gradient step {self.updates}; training "
                "diverged: lower learning_rate)"
            )
        return (value, parts["value_loss"], parts["reward_loss"], parts["policy_loss"],
                parts.get("consistency_loss", math.nan),
                parts.get("sibling_loss", math.nan))  # fmt: skip

    # ---- checkpoints -----------------------------------------------------------------------
    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, state): h, g, f (BatchNorm statistics included), the optimizer, the replay,
        the counters and every generator; the network is checked finite first."""
        check_finite(self.network, "network", self.step)
        rng_arrays, rng_state = seeding.capture_rngs(self.device, numpy_rng=self.rng)
        arrays = {f"net/{k}": v.cpu().numpy() for k, v in self.network.state_dict().items()}
        if self.best is not None:
            arrays.update({f"best/{k}": v.numpy() for k, v in load_tensors(self.best).items()})
        arrays.update(optimizer_arrays(self.optimizer))
        arrays.update(self.replay.arrays())
        arrays.update(rng_arrays)
        state = {
            **{name: getattr(self, name) for name in COUNTERS},
            "replay_size": self.replay.size, "replay_position": self.replay.position,
            "elo": self.elo.ratings, "best_generation": self.best_generation, **rng_state,
        }  # fmt: skip
        return arrays, state

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Continue from a checkpoint: every array checked against the live network, optimizer
        and replay (key, shape, dtype), the JSON state against `STATE_SCHEMA`."""
        where = f"checkpoint step-{meta['step']}"
        state = meta["state"]
        check_schema(state, STATE_SCHEMA, where)
        elo = checked_elo(state["elo"], where)
        load_module(self.network, arrays, "net/", self.device, where)
        if self.best is not None:
            best = build_network(self.config, self.world, scratch=True)
            load_module(best, arrays, "best/", "cpu", where)
            self.best = weights_bytes(best)
        load_optimizer(self.optimizer, arrays, where)
        self.replay.load(arrays, state["replay_size"], state["replay_position"])
        seeding.restore_rngs(arrays, state, self.device, numpy_rng=self.rng)
        self.step = meta["step"]
        for name in COUNTERS:
            setattr(self, name, state[name])
        self.elo, self.best_generation = EloTable(self.config.elo_k, elo), state["best_generation"]


def reanalysed_positions(trajectory, config: MuZeroConfig) -> list[int]:
    """The positions of `trajectory` (from a sampled position t on) that step C' searches
    again: t + k for k = 0..K (policy targets) and, in envs, the positions the value targets
    of those steps bootstrap from (`value_target`'s end, or the last position of an episode
    cut by a time limit)."""
    positions = set(range(min(config.unroll_steps + 1, trajectory.moves)))
    if not config.board:
        positions.update(bootstrap_positions(trajectory, config))
    return sorted(positions)


def bootstrap_positions(trajectory, config: MuZeroConfig) -> list[int]:
    """The positions of an env's `trajectory` (from a sampled position t on) whose root values
    the value targets z_{t+k}, k = 0..K, bootstrap from (`value_target`'s end, or the last
    position of an episode cut by a time limit), in order."""
    length, positions = trajectory.moves, set()
    for k in range(min(config.unroll_steps + 1, length)):
        end = k + config.td_steps
        if end < length:
            positions.add(end)
        elif not trajectory.terminated:
            positions.add(length - 1)
    return sorted(positions)


#: Added to every priority, so no stored position becomes impossible to sample.
PRIORITY_EPS = 1e-3


def initial_priorities(trajectory, config: MuZeroConfig) -> np.ndarray:
    """p_t = |nu_t - z_t| + eps for a new trajectory's positions (nu the search value, z the
    value target), or ones when replay is uniform."""
    if config.priority_alpha == 0:
        return np.ones(trajectory.moves, np.float32)
    knobs = dict(td_steps=None if config.board else config.td_steps,
                 discount=1.0 if config.board else config.discount, two_player=config.board,
                 terminated=trajectory.terminated)  # fmt: skip
    targets = [value_target(trajectory.rewards, trajectory.root_values, t, **knobs)
               for t in range(trajectory.moves)]  # fmt: skip
    return (np.abs(trajectory.root_values - np.array(targets)) + PRIORITY_EPS).astype(np.float32)


#: The learner's counters, saved in a checkpoint's JSON state as they are.
COUNTERS = ("games", "iteration", "updates")
#: What `MuZeroLearner.restore` reads of a checkpoint's JSON state.
STATE_SCHEMA = {**dict.fromkeys(COUNTERS, "count"), "replay_size": "count",
                "replay_position": "count", "elo": dict, "best_generation": "count"}  # fmt: skip


def make_optimizer(config: MuZeroConfig, parameters: list) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or Adam."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.learning_rate, momentum=config.momentum)
    return torch.optim.Adam(parameters, lr=config.learning_rate)


def check_checkpoint(arrays: dict[str, np.ndarray], world, config: MuZeroConfig) -> None:
    """Every array a resume loads fits this config's learner (h, g, f, the optimizer, the
    replay), key for key; a CheckpointError naming the first that does not."""
    where = f"checkpoint (for {config.env})"
    network = build_network(config, world, scratch=True)
    load_module(network, arrays, "net/", "cpu", where)
    if config.arena:
        load_module(network, arrays, "best/", "cpu", where)
    load_optimizer(make_optimizer(config, list(network.parameters())), arrays, where)
    replay = {key: value for key, value in arrays.items() if key.startswith("replay/")}
    shape, dtype, actions = world_spec(world)
    check_arrays(replay, TrajectoryReplay.layout(config.replay_window, shape, dtype, actions),
                 where)  # fmt: skip


def load_network(arrays: dict[str, np.ndarray], config: MuZeroConfig, world) -> MuZeroNetwork:
    """A checkpoint's trained h, g, f in eval mode on the CPU, checked key by key."""
    network = build_network(config, world, scratch=True)
    load_module(network, arrays, "net/", "cpu", f"checkpoint (for {config.env})")
    return network.eval()


def agent_act(config: MuZeroConfig, world, network: MuZeroNetwork, simulations: int):
    """A real state -> the most visited move of a fresh search (no noise) over the model."""
    mcts = search_for(config, world, model_for(network, world), simulations=simulations, seed=0)

    def act(state) -> int:
        mcts.reset()
        result = mcts.search(state)
        return result.selected if result.selected >= 0 else best_move(result)

    act.mcts = mcts  # (for `bellman play`'s statistics)
    return act


def load_policy(arrays: dict[str, np.ndarray], env, config: MuZeroConfig, seed: int):
    """obs -> the agent's move, searched with `eval_simulations` (board games: obs is the move
    sequence of `OpponentEnv`)."""
    torch.set_num_threads(config.torch_threads)
    world = env.game if config.board else env
    act = agent_act(config, world, load_network(arrays, config, world), config.eval_simulations)
    if not config.board:
        return lambda obs: act(np.asarray(obs))
    return lambda obs: act(play_moves(world, [int(a) for a in np.asarray(obs) if a >= 0]))


# ---- the loop -----------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def temperature_scale(config: MuZeroConfig, step: int) -> float:
    """What tau is multiplied by at real move `step` of the run (`temperature_decay`)."""
    if not config.temperature_decay:
        return 1.0
    progress = step / config.steps
    return 1.0 if progress < 0.5 else 0.5 if progress < 0.75 else 0.25


def play_group(task: tuple[bytes, MuZeroConfig, list[int], float]) -> list[tuple[int, Any]]:
    """Step A for the episodes numbered `numbers`, all at once, with h, g, f given as safetensors
    bytes and tau scaled by `scale` (`temperature_scale`): a self-play worker's job
    (`selfplay.play_groups`), also run in the learner's process when workers = 1. Episode e is
    seeded by (seed, e). Returns (number, trajectory) pairs."""
    blob, config, numbers, scale = task
    if _WORKER.get("config") != config:  # this process's world and network, built once
        torch.set_num_threads(config.torch_threads)
        world = make_game(config.env) if config.board else _make_gym(config, training=True)
        network = build_network(config, world, scratch=True)
        _WORKER.update(config=config, world=world, network=network)
    world, network = _WORKER["world"], _WORKER["network"]
    load_weights(network, blob)
    model = model_for(network, world)
    episodes = []
    for number in numbers:
        seed = np.random.SeedSequence([config.seed, number])
        search_seed, episode_seed = seed.spawn(2)
        env = world if config.board else _make_gym(config, training=True)
        mcts = search_for(config, env, model, simulations=config.simulations,
                          seed=int(search_seed.generate_state(1)[0]))  # fmt: skip
        episodes.append(ActingEpisode(env, mcts, config, episode_seed, scale))
    try:
        return list(zip(numbers, play_episodes(episodes, model), strict=True))
    finally:
        if not config.board:
            for episode in episodes:
                episode.world.close()


def _acting(
    learner: MuZeroLearner, config: MuZeroConfig, pool=None, stop_requested=lambda: False
) -> list | None:
    """Step A for one iteration: episodes games, games + 1, ... in groups of concurrent_games
    (in the pool's workers, or here); None when a stop came first (`play_groups`)."""
    first = learner.games
    numbers = list(range(first, first + config.games_per_iteration))
    size = config.concurrent_games or len(numbers)  # groups by number: the same for any workers
    blob = weights_bytes(learner.network)
    scale = temperature_scale(config, learner.step)
    tasks = [(blob, config, numbers[i : i + size], scale) for i in range(0, len(numbers), size)]
    played = play_groups(tasks, pool, stop_requested, play=play_group)
    return None if played is None else [trajectory for _, trajectory in played]


def train(config: MuZeroConfig, world, run: Run) -> MuZeroLearner:
    """Run MuZero for `config.steps` moves (the module docstring's steps 1, A-C); after each
    iteration `loop.after_iteration` logs and checkpoints; Ctrl-C saves and stops there."""
    torch.set_num_threads(config.torch_threads)
    learner = MuZeroLearner(config, world)
    if run.restored is not None:
        learner.restore(*run.restored)
    size = config.concurrent_games or config.games_per_iteration  # (0: one group)
    groups = math.ceil(config.games_per_iteration / size)
    note = idle_workers_note(config.workers, config.games_per_iteration, size)
    if note:
        run.notes.append(note)
    pool = start_workers(min(config.workers, groups)) if config.workers > 1 else None
    try:
        _loop(learner, config, run, pool)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return learner


def _loop(learner: MuZeroLearner, config: MuZeroConfig, run: Run, pool) -> None:
    """`train`'s iterations, each followed by `loop.after_iteration`; a stop during acting
    saves the state the iteration started from (acting changes nothing of it)."""
    with run.session(start_step=learner.step):
        while learner.step < config.steps and not run.stop_requested:  # 2. iterations
            before = learner.step
            row = _iteration(learner, config, run, pool)
            if row is None:  # stopped during acting
                run.save(learner.step, *learner.checkpoint())
                break

            report = ArenaReport(config) if config.arena else None
            if report is not None:
                started = time.perf_counter()
                if learner.iteration % config.arena_every == 0:
                    report.played(_arena(learner, config))  # the arena and Elo
                row["arena_seconds"] = round(time.perf_counter() - started, 3)
                learner.promote()

            def log(columns: dict[str, float], row=row) -> None:
                run.log(learner.step, **row, **columns)

            if loop.after_iteration(run, learner.step, before, save=learner.checkpoint,
                                    log=log, evaluation=report, policy=lambda: None):  # fmt: skip
                break


def _iteration(
    learner: MuZeroLearner, config: MuZeroConfig, run: Run, pool
) -> dict[str, float] | None:
    """One pass of steps A-C; returns the metrics row's columns, or None when a stop came
    during acting (the learner is then as the iteration found it)."""
    started = time.perf_counter()
    trajectories = _acting(learner, config, pool, lambda: run.stop_requested)  # A. act
    if trajectories is None:
        return None
    scores, new_positions = [], 0
    for trajectory in trajectories:  # B. store the trajectories (and their symmetric copies)
        priorities = initial_priorities(trajectory, config)
        copies = [trajectory]
        if config.board and config.symmetries:
            copies = symmetric_trajectories(learner.world, trajectory)
        for copy in copies:
            learner.replay.add(copy, learner.games, priorities)
            new_positions += copy.moves
        learner.games += 1
        learner.step += trajectory.moves
        scores.append(trajectory.score)
        run.log_episode(learner.step, trajectory.score, trajectory.moves)
    acting_seconds = time.perf_counter() - started
    started = time.perf_counter()
    losses = []
    if len(learner.replay) >= config.batch_size:  # C. unrolled gradient steps
        set_learning_rate(learner.optimizer, config, learner.step)
        torch.set_num_threads(config.train_threads)
        try:
            losses = [learner.train_step() for _ in range(gradient_steps(config, new_positions))]
        finally:
            torch.set_num_threads(config.torch_threads)
    learner.iteration += 1
    mean = np.mean(losses, axis=0) if losses else [math.nan] * 6
    options = {"consistency_loss": float(mean[4])} if config.consistency_weight > 0 else {}
    if config.sibling_weight > 0:
        options["sibling_loss"] = float(mean[5])
    return {
        "iteration": learner.iteration, "games": learner.games, "loss": float(mean[0]),
        "value_loss": float(mean[1]), "reward_loss": float(mean[2]),
        "policy_loss": float(mean[3]), **options, "score_mean": float(np.mean(scores)),
        "updates": learner.updates, "replay_size": len(learner.replay),
        "selfplay_seconds": round(acting_seconds, 3),
        "train_seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip


def _arena(learner: MuZeroLearner, config: MuZeroConfig) -> dict[str, float]:
    """The arena (module docstring): the agent against the previous iteration's net and the
    baselines, every game rated in the Elo table; AlphaZero's columns (`ArenaReport`)."""
    game, iteration = learner.world, learner.iteration
    name, best_name = f"net-{iteration}", f"net-{learner.best_generation}"
    network = build_network(config, game, scratch=True)
    network.load_state_dict(learner.network.state_dict())
    best = build_network(config, game, scratch=True)
    load_weights(best, learner.best)
    opponents = {"best": agent_act(config, game, best.eval(), config.eval_simulations)}
    opponents.update(baseline_opponents(game, config, iteration))
    agent = agent_act(config, game, network.eval(), config.eval_simulations)
    columns = rated_matches(game, agent, opponents, config, learner.elo, name, best_name)
    columns["elo"] = learner.elo.ratings[name]
    return columns


def check_game_matches(run_config: MuZeroConfig, game_name: str, run_dir) -> None:
    """A checkpoint is only used on the game it was trained on."""
    if run_config.env != game_name:
        raise CheckpointError(
            f"run '{run_dir}' was trained on '{run_config.env}', not '{game_name}'; "
            f"use a run trained with --env {game_name}"
        )


def game_of(config: MuZeroConfig) -> Game:
    """The config's board game (ConfigError naming the valid games otherwise)."""
    return make_game(config.env)
