"""PUCT Monte-Carlo tree search, as in AlphaGo Zero and AlphaZero, over the `Game` protocol.

Silver et al., "Mastering the game of Go without human knowledge", Nature 550, 2017 (Methods,
"Search algorithm"), and Silver et al., "A general reinforcement learning algorithm that masters
chess, shogi, and Go through self-play", Science 362, 2018. Each edge (s, a) of the tree stores
a prior P(s, a), a visit count N(s, a), a total value W(s, a) and a mean value Q(s, a) = W / N.
One simulation from the root s_0:

    1. Select.   From s_0, until a leaf s_L (a state not yet expanded) is reached, take
                     a_t = argmax_a Q(s_t, a) + U(s_t, a),
                     U(s, a) = c_puct P(s, a) sqrt(N(s)) / (1 + N(s, a))        (PUCT)
    2. Expand and evaluate.
                 (p, v) = f(s_L); each edge (s_L, a) starts at N = 0, W = 0, Q = 0, P = p_a.
                 At the root, P(s_0, a) = (1 - eps) p_a + eps eta_a with eta ~ Dir(alpha)
                 (self-play only, for exploration).
    3. Backup.   For every edge (s_t, a_t) on the path, t <= L:
                     N(s_t, a_t) += 1,  W(s_t, a_t) += v_t,  Q(s_t, a_t) = W / N
                 where v_t is the leaf's value seen from the player to move at s_t.
    4. Play.     After all the simulations, play from pi(a | s_0) = N(s_0, a)^(1/tau) /
                 sum_b N(s_0, b)^(1/tau) (`visit_policy`, `select_action`); the chosen child's
                 subtree is kept as the next root (`MCTS.advance`), the rest discarded.

The papers evaluate leaves in mini-batches of 8 from parallel search threads, using a virtual loss
so the threads do not all descend the same path. Here one thread does the same thing in rounds:

    - Step 1 runs up to `batch_size` times; each descent adds a virtual loss along its path,
          N(s, a) += n_vl,  W(s, a) -= n_vl     (the edge looks like n_vl lost games)
      so the next descent of the round is pushed elsewhere.
    - Step 2 evaluates the distinct non-terminal leaves of the round in ONE `evaluator.evaluate`
      call. Terminal leaves are never expanded nor evaluated: their value is `game.outcome`.
    - Step 3 backs up every descent and removes its virtual loss.

Every descent is one simulation: when two descents of a round end at the same leaf (possible when
the virtual loss does not push the second elsewhere, or is 0), the leaf is evaluated once and each
descent backs up that value and adds its own visit. So a search adds exactly `simulations` visits
at the root, and with `batch_size=1` it is the classic one-leaf-per-call search (the virtual loss
is added and removed within the one descent, so it changes nothing).

Many trees at once. Self-play plays many games per process; each game has its own tree, and
`search_wave` runs one round of every tree still searching, then evaluates the leaves of ALL of
them in one `evaluator.evaluate` call (batches of hundreds of positions from rounds of a few).
Each tree keeps its own PUCT selection, virtual loss, noise and reuse, and makes the same rounds
as alone (`MCTS.begin` / `next_leaves` / `expand` / `finish_round` / `end` are `search` in
steps), so with an evaluator whose outputs do not depend on the rest of the batch a tree
searched together gives exactly the result it gives alone (`search_together`).

Points of view. Values are always from the player to move at a state. The evaluator returns v(s_L)
for the player to move at s_L; `game.outcome` at a terminal state is for the player to move there.
The statistics W(s, a), Q(s, a) stored at node s are from the point of view of the player to move
at s (who chooses a), so selection maximises Q at every level; players alternate, so backup flips
the sign at each ply: v_t = -v_{t+1}, and the edge into s_L gets -v(s_L).

Details and deviations:
    - N(s) in U is the node's own visit count: its expansion counts as its first visit, so
      N(s) = 1 + sum_b N(s, b) (as in OpenSpiel and mctx). The paper writes sqrt(sum_b N(s, b)),
      which is 0 at a fresh node, so the first selection there would ignore the priors.
    - c_puct is a constant (AlphaZero's pseudocode grows it as log((1 + N(s) + 19652) / 19652)
      + 1.25, which differs from 1.25 by under 5% below 1000 visits).
    - First-play urgency: an unvisited edge has Q = `fpu` (default 0.0, a draw, in the papers'
      [-1, 1] value range; AlphaZero's pseudocode uses 0 in its [0, 1] range, i.e. a loss).
    - Priors from the evaluator are masked to the legal moves and renormalised; if they give the
      legal moves no mass at all, the legal moves get uniform priors.
    - argmax ties go to the lowest action (as numpy's `argmax`), so searches are deterministic
      for a fixed seed and evaluator.
    - A node's statistics are Python lists, and `puct_scores` scores its few edges in plain
      Python: on arrays of 2-82 entries each numpy call costs more than the arithmetic.

Planning with rewards, discounts and a learned model (MuZero; Schrittwieser et al., "Mastering
Atari, Go, chess and shogi by planning with a learned model", Nature 588, 2020, Appendix B). The
same search, with four generalisations that all default to AlphaZero's behaviour above:
    - Rewards and discounts on edges (`discount`, a child's `reward`): step 3 backs up
                     G = r(s_t, a_t) + gamma * sign * G_{t+1},   W(s_t, a_t) += G
      with sign = -1 for two-player games (`two_player=True`: the next state's value is the
      opponent's) and +1 for one-player environments. AlphaZero is r = 0, gamma = 1, sign = -1.
    - Min-max normalised Q (`normalize_q=True`): selection uses
                     Q_bar(s, a) = (Q(s, a) - min Q) / (max Q - min Q)
      with min and max over the Q values backed up in this search (MuZero's MinMaxStats), so
      values of any scale (unbounded returns) meet priors on the same footing; an unvisited edge
      scores `fpu` (MuZero: 0) and Q is used raw until two different values have been seen.
    - MuZero's pUCT constants (`c_base`): the exploration weight grows with the visits,
                     c(s) = c1 + log((N(s) + c2 + 1) / c2),   c1 = `c_puct` = 1.25, c2 = 19652.
    - A learned model as the evaluator (an evaluator with `initial_inference` and
      `recurrent_inference`, the `Model` protocol): the root is represented from the real state
      (h, then f), every other node is reached through the model (g from its parent's latent
      state and the edge's action, then f), which also gives the edge's reward. Nothing is
      terminal inside the tree, and the tree is never reused (each search starts from h of the
      real state, as in the paper). Legal moves: at the root the game's legal moves; inside the
      tree every action, or with `tree_legal_moves=True` the legal moves of the real states the
      search tracks along the path (board games; once the tracked game is over, every action).
    Gumbel MuZero's root (`gumbel=True`; Danihelka et al. 2022, `bellman.search.gumbel`)
    replaces PUCT at the root only: Gumbel-top-k and sequential halving choose the root's edges,
    and the result carries the chosen action and the improved policy.
    How leaves are evaluated is the one function `evaluate_leaves` (see `Evaluator`, `Model`):
    an evaluator that only gives priors and values (a network, random rollouts, a mix of both)
    plugs in without touching the search.

MCTS-Solver (`solve=True`; Winands, Bjornsson and Saito, "Monte-Carlo Tree Search Solver",
2008; OpenSpiel's MCTSBot has it too). Game-theoretic values are proven from the terminal
states upward and then used instead of estimates:
    - A node's `proven` value (for the player to move there) is its outcome when terminal; an
      expanded node is proven a win (+1) as soon as one child is proven a loss for its mover,
      and proven max_a -proven(child_a) once every child is proven (a loss or a draw).
    - Proving happens in step 3, along the path just backed up, from the leaf upward.
    - Step 1 stops at a proven node below the root as at a terminal one: it is not searched
      further, and step 3 backs up its exact value instead of the network's estimate. (The root
      is always descended, so a search still adds exactly `simulations` visits.)
    - `best_move` plays a proven win when there is one, and never a proven loss while some move
      is not proven lost; otherwise the most visited move.
Without `solve` only terminal nodes carry a proven value, which is their outcome: the search is
exactly the plain one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bellman.errors import ConfigError, NonFiniteError
from bellman.games.base import Game, IllegalMoveError
from bellman.search.gumbel import GumbelRoot


class Evaluator(Protocol):
    """What search calls to evaluate leaves: a network, random rollouts, a learned model."""

    def evaluate(self, states: list) -> tuple[np.ndarray, np.ndarray]:
        """Evaluate a batch of non-terminal states.

        Args:
            states: B states of the game (B >= 1).

        Returns:
            `(priors, values)`: priors float32 `[B, A]`, non-negative, a distribution over the
            actions (need not be masked: search masks the illegal moves and renormalises);
            values float32 `[B]` in [-1, 1], each from the point of view of the player to move
            at its state.
        """
        ...


class Model(Protocol):
    """A learned model as search's evaluator (MuZero): h and f at the root, g and f below.

    Latent states are opaque to the search (a row of an array is typical); the search only
    stores them on the nodes and hands them back to `recurrent_inference` with an action.
    """

    def initial_inference(self, states: list) -> tuple[np.ndarray, np.ndarray, list]:
        """h then f on B real states (observations): `(priors [B, A], values [B], latents)`,
        values from the point of view of the player to move (one-player: the agent)."""
        ...

    def recurrent_inference(
        self, latents: list, actions: list[int]
    ) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
        """g then f on B (latent, action) pairs: `(priors [B, A], values [B], next latents,
        rewards [B])`, each reward for the player who took the action, each value for the
        player to move after it."""
        ...


def evaluate_leaves(evaluator, leaves: list) -> tuple:
    """Step 2's evaluation of `leaves` (unexpanded, non-terminal nodes), in one call per kind.

    An `Evaluator` gets the leaves' states in ONE `evaluate` call and this returns its
    `(priors [L, A], values [L])`. A `Model` gets the roots' real states in one
    `initial_inference` call and the other leaves' (parent latent, action) pairs in one
    `recurrent_inference` call; this returns `(priors [L, A], values [L], latents [L],
    rewards [L])` in the leaves' order (a root's reward is 0). `MCTS.expand` takes either.
    """
    if not hasattr(evaluator, "recurrent_inference"):
        return evaluator.evaluate([leaf.state for leaf in leaves])
    roots = [i for i, leaf in enumerate(leaves) if leaf.source is None]
    inner = [i for i, leaf in enumerate(leaves) if leaf.source is not None]
    size = len(leaves)
    priors: list = [None] * size
    values = np.zeros(size, np.float64)
    rewards = np.zeros(size, np.float64)
    latents: list = [None] * size
    if roots:
        p, v, h = evaluator.initial_inference([leaves[i].state for i in roots])
        for j, i in enumerate(roots):
            priors[i], values[i], latents[i] = p[j], v[j], h[j]
    if inner:
        sources = [leaves[i].source for i in inner]
        p, v, h, r = evaluator.recurrent_inference(
            [latent for latent, _ in sources], [action for _, action in sources]
        )
        for j, i in enumerate(inner):
            priors[i], values[i], latents[i], rewards[i] = p[j], v[j], h[j], r[j]
    return np.stack(priors), values, latents, rewards


class RandomRolloutEvaluator:
    """Classic MCTS evaluation: uniform priors, value = mean outcome of random playouts.

    Args:
        game: the game.
        rollouts: playouts per evaluated state; the value is their mean outcome.
        seed: seed of the generator choosing the playout moves.
    """

    def __init__(self, game: Game, *, rollouts: int = 1, seed: int = 0):
        _check("rollouts", rollouts, lambda: _is_int(rollouts) and rollouts >= 1, "an integer >= 1")
        self.game = game
        self.rollouts = int(rollouts)
        self.rng = np.random.default_rng(seed)
        self._uniforms: list[float] = []
        self._next = 0

    def evaluate(self, states: list) -> tuple[np.ndarray, np.ndarray]:
        """Uniform priors over the legal moves `[B, A]` and mean playout outcomes `[B]`."""
        priors = np.zeros((len(states), self.game.action_size), np.float32)
        values = np.zeros(len(states), np.float32)
        for b, state in enumerate(states):
            mask = self.game.legal_mask(state)
            if mask.any():
                priors[b, mask] = 1.0 / mask.sum()
            values[b] = sum(self.playout(state) for _ in range(self.rollouts)) / self.rollouts
        return priors, values

    def playout(self, state: Any) -> float:
        """The outcome, for the player to move at `state`, of one uniformly random game from it."""
        game = self.game
        sign = 1.0
        while not game.is_terminal(state):
            if self._next >= len(self._uniforms):  # random floats drawn 1024 at a time
                self._uniforms = self.rng.random(1024).tolist()
                self._next = 0
            legal = game.legal_actions(state)
            state = game.apply(state, legal[int(self._uniforms[self._next] * len(legal))])
            self._next += 1
            sign = -sign  # the other player moves at the next state
        return sign * game.outcome(state)


@dataclass(frozen=True)
class SearchResult:
    """What a search found at its root.

    Attributes:
        visit_counts: int64 `[A]`, N(s_0, a); 0 for illegal moves. They sum to the search's
            `simulations` plus the visits kept from earlier searches by tree reuse.
        q_values: float64 `[A]`, Q(s_0, a) from the root mover's point of view; 0 where N = 0.
        value: the root's value from its mover's point of view: sum_a W(s_0, a) / sum_a N(s_0, a).
        priors: float64 `[A]`, the P(s_0, a) the search used (with Dirichlet noise when it was
            added); 0 for illegal moves.
        proven: float64 `[A]`, the game-theoretic result of each move for the root's mover
            (+1 win, 0 draw, -1 loss) where the search proved it (MCTS-Solver, or a move that
            ends the game), NaN elsewhere.
    """

    visit_counts: np.ndarray
    q_values: np.ndarray
    value: float
    priors: np.ndarray
    proven: np.ndarray
    selected: int = -1
    """Gumbel root (`gumbel=True`): the action sequential halving chose (A_{n+1}); else -1."""
    improved_policy: np.ndarray | None = None
    """Gumbel root: float64 `[A]`, the improved policy pi' (the policy target); else None."""


class Node:
    """A state in the search tree and the statistics of its outgoing edges.

    Edges are stored compactly over the legal actions only: index i of the lists is action
    `actions[i]`. W and Q are from the point of view of the player to move at this node. The
    statistics are plain Python lists of floats, not numpy arrays: a node has a handful of
    edges, and on arrays that small every numpy call costs more than the arithmetic itself.

    Attributes:
        state: the game state.
        terminal: True when the game is over here; such a node is never expanded.
        value: from the point of view of the player to move here: `game.outcome` for a terminal
            node, the evaluator's value once expanded, else None.
        proven: the game-theoretic value for the player to move here when known: the outcome
            of a terminal node, or proven by MCTS-Solver; else None.
        actions: the legal actions (tuple of L ints), None until expanded.
        prior: `[L]` floats, P(s, a).
        visit_counts: `[L]` floats, N(s, a) (floats so a virtual loss is cheap to apply).
        value_sums: `[L]` floats, W(s, a).
        q_values: `[L]` floats, Q(s, a) = W / N, or the search's `fpu` where N = 0 (kept up to
            date by selection and backup, so PUCT needs no division).
        visits: N(s) = 1 + sum_b N(s, b), virtual losses included (kept up to date likewise).
        children: action -> child Node, created when the edge is first selected.
        reward: r, the reward on the edge into this node for the player who took it (0 for
            real games; a learned model's prediction otherwise).
        latent: a learned model's hidden state of this node, once expanded (else None).
        source: `(parent latent, action)` for a node a learned model has yet to reach (what
            `recurrent_inference` takes); None for the root and for real game states.
    """

    __slots__ = (
        "state",
        "terminal",
        "value",
        "proven",
        "actions",
        "prior",
        "visit_counts",
        "value_sums",
        "q_values",
        "visits",
        "children",
        "reward",
        "latent",
        "source",
    )

    def __init__(self, game: Game, state: Any, *, learned: bool = False, source=None):
        """A node of `state` (for a learned model: the real state when tracked, or None, and
        `source` below the root; such a node is never terminal)."""
        self.state = state
        self.terminal = False if learned else game.is_terminal(state)
        self.value: float | None = float(game.outcome(state)) if self.terminal else None
        self.proven: float | None = self.value
        self.actions: tuple[int, ...] | None = None
        self.prior: list[float] = []
        self.visit_counts: list[float] = []
        self.value_sums: list[float] = []
        self.q_values: list[float] = []
        self.visits = 1.0
        self.children: dict[int, Node] = {}
        self.reward = 0.0
        self.latent = None
        self.source = source

    @property
    def expanded(self) -> bool:
        """True once the evaluator has been called here (never for a terminal node)."""
        return self.actions is not None


def puct_scores(
    prior: Sequence[float],
    visit_counts: Sequence[float],
    q_values: Sequence[float],
    *,
    c_puct: float,
    visits: float | None = None,
) -> list[float]:
    """Q(s, a) + U(s, a) for every edge of a node: the quantity step 1 maximises (`MCTS.select`
    takes its argmax at every node it descends through).

    U(s, a) = c_puct P(s, a) sqrt(N(s)) / (1 + N(s, a)) with N(s) = 1 + sum_b N(s, b) (see the
    module docstring). Plain Python over the node's lists: a node has a handful of edges, and on
    arrays that small every numpy call costs more than the arithmetic.

    Args:
        prior: `[L]` P(s, a).
        visit_counts: `[L]` N(s, a), virtual losses included.
        q_values: `[L]` Q(s, a), virtual losses included; the first-play urgency where N = 0.
        c_puct: exploration constant.
        visits: N(s) when the caller keeps it up to date (`Node.visits`); default
            1 + sum_b N(s, b).

    Returns:
        `[L]` floats.
    """
    if visits is None:
        visits = 1.0 + float(sum(visit_counts))
    scale = c_puct * math.sqrt(visits)
    scores: list[float] = []
    append = scores.append  # (a loop: cheaper than a comprehension's frame on a few edges)
    for p, n, q in zip(prior, visit_counts, q_values, strict=False):  # L each
        append(q + scale * p / (1.0 + n))
    return scores


def add_dirichlet_noise(
    prior: np.ndarray, alpha: float, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """(1 - fraction) P + fraction eta with eta ~ Dir(alpha, ..., alpha): the root's noisy priors.

    Args:
        prior: `[L]` priors over the legal moves.
        alpha: Dirichlet concentration (AlphaZero: 0.3 chess, 0.15 shogi, 0.03 Go).
        fraction: eps, the weight of the noise (AlphaZero: 0.25).
        rng: generator drawing eta.

    Returns:
        float64 `[L]`, still a distribution.
    """
    noise = rng.dirichlet(np.full(len(prior), alpha))
    return (1.0 - fraction) * np.asarray(prior, np.float64) + fraction * noise


class MCTS:
    """PUCT search with batched leaf evaluation, virtual loss and tree reuse.

    Typical self-play use:

        mcts = MCTS(game, evaluator, simulations=800)
        while not game.is_terminal(state):
            result = mcts.search(state, add_noise=True)
            action = select_action(result.visit_counts, temperature, rng)
            state = game.apply(state, action)
            mcts.advance(action)

    `search` runs a whole search. The same search can also be driven in steps, so that many
    trees (many games) share one evaluator call per wave (`search_together`, `search_wave`):
    `begin` a search, then repeatedly take the round's leaves from `next_leaves`, evaluate
    them, hand the results to `finish_round`, until `done`; `end` returns the result. A search
    driven in steps makes exactly the same rounds as `search`, so with an evaluator whose
    outputs do not depend on the rest of its batch the results are identical.

    Args:
        game: the game.
        evaluator: gives priors and values for batches of leaves (see `Evaluator`).
        simulations: simulations per search (AlphaZero: 800).
        c_puct: exploration constant of PUCT (AlphaZero's c_init: 1.25).
        dirichlet_alpha: concentration of the root noise (AlphaZero chess: 0.3).
        dirichlet_fraction: weight eps of the root noise (AlphaZero: 0.25).
        batch_size: descents per round, whose leaves are evaluated in one call (AlphaGo Zero: 8).
        virtual_loss: n_vl, lost games added to each edge of a pending descent (AlphaGo: 3; 1 is
            enough for small batches; 0 lets a round's descents share a path).
        fpu: Q of an unvisited edge, in [-1, 1] (0.0: a draw).
        seed: seed of the generator drawing the Dirichlet noise.
        solve: MCTS-Solver: prove wins, losses and draws and back up exact values (see the
            module docstring).
        discount: gamma of the backup G = r + gamma * sign * G' (1.0: AlphaZero).
        two_player: players alternate, so a child's value is the opponent's (sign = -1); False
            for one-player environments (sign = +1).
        normalize_q: select on min-max normalised Q (MuZero); `fpu` then applies after the
            normalisation.
        c_base: MuZero's c2 (19652): c(s) = c_puct + log((N(s) + c2 + 1) / c2); None keeps
            c(s) = c_puct.
        known_bounds: with `normalize_q`, the value range known in advance (MuZero's board
            games: (-1, 1)), so that the first close values of a search are not stretched to
            [0, 1]; None: the min and max seen (MuZero's Atari).
        tree_legal_moves: with a learned model, track the real states along each path and only
            expand their legal moves (board games); False: every action below the root.
        gumbel: Gumbel MuZero's root (`bellman.search.gumbel`): Gumbel-top-k and sequential
            halving choose the root's edges (instead of PUCT and Dirichlet noise; `add_noise`
            then draws the Gumbel noise), and the result carries the chosen action and the
            improved policy.
        max_considered: m, the actions the Gumbel root considers at most (the paper: 16).

    Raises:
        ConfigError: a knob is out of range (the message names it and what is valid).
    """

    def __init__(
        self,
        game: Game,
        evaluator: Evaluator,
        *,
        simulations: int = 800,
        c_puct: float = 1.25,
        dirichlet_alpha: float = 0.3,
        dirichlet_fraction: float = 0.25,
        batch_size: int = 8,
        virtual_loss: float = 1.0,
        fpu: float = 0.0,
        seed: int = 0,
        solve: bool = False,
        discount: float = 1.0,
        two_player: bool = True,
        normalize_q: bool = False,
        c_base: float | None = None,
        tree_legal_moves: bool = False,
        gumbel: bool = False,
        max_considered: int = 16,
        known_bounds: tuple[float, float] | None = None,
    ):
        _check(
            "simulations",
            simulations,
            lambda: _is_int(simulations) and simulations >= 1,
            "an integer >= 1",
        )
        _check(
            "c_puct", c_puct, lambda: c_puct > 0 and math.isfinite(c_puct), "a finite number > 0"
        )
        _check("dirichlet_alpha", dirichlet_alpha, lambda: dirichlet_alpha > 0, "a number > 0")
        _check(
            "dirichlet_fraction",
            dirichlet_fraction,
            lambda: 0 <= dirichlet_fraction <= 1,
            "in [0, 1]",
        )
        _check(
            "batch_size",
            batch_size,
            lambda: _is_int(batch_size) and batch_size >= 1,
            "an integer >= 1",
        )
        _check("virtual_loss", virtual_loss, lambda: 0 <= virtual_loss < math.inf, "a number >= 0")
        _check("fpu", fpu, lambda: -1 <= fpu <= 1, "a number in [-1, 1]")
        _check("discount", discount, lambda: 0 <= discount <= 1, "a number in [0, 1]")
        _check(
            "c_base",
            c_base,
            lambda: c_base is None or (c_base > 0 and math.isfinite(c_base)),
            "None or a finite number > 0 (MuZero: 19652)",
        )
        self.learned = hasattr(evaluator, "recurrent_inference")
        if solve and self.learned:
            raise ConfigError("solve = True needs the real rules: a learned model proves nothing")
        self.game = game
        self.evaluator = evaluator
        self.simulations = int(simulations)
        self.c_puct = float(c_puct)
        self.dirichlet_alpha = float(dirichlet_alpha)
        self.dirichlet_fraction = float(dirichlet_fraction)
        self.batch_size = int(batch_size)
        self.virtual_loss = float(virtual_loss)
        self.fpu = float(fpu)
        self.solve = bool(solve)
        self.discount = float(discount)
        self.two_player = bool(two_player)
        self.normalize_q = bool(normalize_q)
        self.c_base = None if c_base is None else float(c_base)
        self.tree_legal_moves = bool(tree_legal_moves)
        self.known_bounds = known_bounds
        _check(
            "max_considered",
            max_considered,
            lambda: _is_int(max_considered) and max_considered >= 1,
            "an integer >= 1",
        )
        self.gumbel = bool(gumbel)
        self.max_considered = int(max_considered)
        self._gumbel: GumbelRoot | None = None
        # AlphaZero's search exactly: no rewards, no discount, alternating players, raw Q
        self._plain = not self.learned and discount == 1.0 and two_player and not normalize_q
        self.bounds = MinMaxStats()
        """The min and max of the Q values backed up in the current search (`normalize_q`)."""
        self.rng = np.random.default_rng(seed)
        self.root: Node | None = None
        """The current root; kept between searches by `advance` (tree reuse)."""
        # The search in progress (see `begin`): simulations left, noise still to add, the
        # root's own priors, the priors this search uses, the round's pending descents.
        self._left = 0
        self._noise = False
        self._clean_prior: list[float] = []
        self._used_prior: list[float] = []
        self._paths: list[tuple[list[tuple[Node, int]], Node]] = []
        self._leaves: list[Node] = []

    # ---- a whole search ------------------------------------------------------------------------
    def search(
        self, state: Any, *, add_noise: bool = False, simulations: int | None = None
    ) -> SearchResult:
        """Run `simulations` simulations from `state` and return the root's statistics.

        The tree kept by `advance` is reused when its root holds `state`; otherwise a new tree is
        started. The Dirichlet noise (self-play) applies to this search's root priors only; the
        root's own priors are restored afterwards, so noise never accumulates.

        Args:
            state: a non-terminal state of the game.
            add_noise: mix Dirichlet noise into the root priors (step 2).
            simulations: this search's simulations (default: the search's `simulations`).

        Returns:
            The root's visit counts, Q values, value and the priors used (see `SearchResult`).

        Raises:
            IllegalMoveError: `state` is terminal (there is no move to search for).
        """
        self.begin(state, add_noise=add_noise, simulations=simulations)
        try:
            while not self.done:
                leaves = self.next_leaves()
                if leaves:
                    self.expand(leaves, *evaluate_leaves(self.evaluator, leaves))
                self.finish_round()
        except BaseException:
            self.abort()
            raise
        return self.end()

    # ---- the same search in steps --------------------------------------------------------------
    def begin(self, state: Any, *, add_noise: bool = False, simulations: int | None = None) -> None:
        """Start a search from `state` (reusing the tree when its root holds `state`).

        Raises:
            IllegalMoveError: `state` is terminal.
        """
        if simulations is None:
            simulations = self.simulations
        _check(
            "simulations",
            simulations,
            lambda: _is_int(simulations) and simulations >= 1,
            "an integer >= 1",
        )
        if self.learned:  # never reused: every search starts from h(real state)
            if self.game.is_terminal(state):
                raise IllegalMoveError("cannot search a finished game: the state is terminal")
            self.root = Node(self.game, state, learned=True)
        elif self.root is None or self.root.state != state:
            self.root = Node(self.game, state)
        if self.root.terminal:
            raise IllegalMoveError("cannot search a finished game: the state is terminal")
        self.bounds = MinMaxStats(self.known_bounds)
        self._gumbel = None
        self._left = int(simulations)
        self._noise = add_noise
        self._paths, self._leaves = [], []
        self._clean_prior = self._used_prior = self.root.prior

    @property
    def done(self) -> bool:
        """True when the search begun last has run all its simulations."""
        return self._left == 0 and self.root is not None and self.root.expanded

    def next_leaves(self) -> list[Node]:
        """The leaves this search wants evaluated next (pass their evaluations to `expand`, then
        call `finish_round`): the root while it is not expanded, else one round's step 1, whose
        distinct non-terminal leaves are returned (possibly none, when all are terminal)."""
        root = self.root
        if not root.expanded:
            self._leaves = [root]
            return self._leaves
        if self.gumbel and self._gumbel is None:  # Gumbel's root replaces the Dirichlet noise
            self._gumbel = GumbelRoot(
                root.prior, self._left, self.rng if self._noise else None,
                max_considered=self.max_considered,
            )  # fmt: skip
            self._noise = False
            self._clean_prior = self._used_prior = root.prior
        if self._noise:  # step 2 at the root: the first round after the root is expanded
            self._noise = False
            self._clean_prior = root.prior
            root.prior = add_dirichlet_noise(
                root.prior, self.dirichlet_alpha, self.dirichlet_fraction, self.rng
            ).tolist()
            self._used_prior = root.prior
        elif not self._used_prior:
            self._clean_prior = self._used_prior = root.prior
        # 1. Select: descend `descents` times, each adding a virtual loss along its path.
        descents = min(self.batch_size, self._left)
        self._paths = [self.select(root) for _ in range(descents)]
        # 2. The distinct leaves without a proven value (not terminal), evaluated together
        self._leaves = list(
            {id(leaf): leaf for _, leaf in self._paths if leaf.proven is None}.values()
        )
        return self._leaves

    def finish_round(self) -> None:
        """Step 3 for the round `next_leaves` started (its leaves expanded by `expand`): back up
        every descent (duplicates each add a visit) and remove its virtual loss."""
        for path, leaf in self._paths:
            self.backup(path, leaf_value(leaf))
        self._left -= len(self._paths)
        self._paths, self._leaves = [], []

    def end(self) -> SearchResult:
        """The result of the finished search; the root's own priors are restored."""
        root = self.root
        root.prior = self._clean_prior
        result = self._result(root, self._used_prior)
        if self._gumbel is None:
            return result
        q_hat, counts = self.q_hat(root), root.visit_counts
        improved = np.zeros(self.game.action_size)
        value = self._normalized(root.value)
        improved[list(root.actions)] = self._gumbel.improved_policy(q_hat, counts, value)
        selected = root.actions[self._gumbel.selected(q_hat, counts)]
        return dataclasses.replace(result, selected=selected, improved_policy=improved)

    def q_hat(self, node: Node) -> np.ndarray:
        """`[L]` the node's Q normalised to [0, 1] (min-max bounds with `normalize_q`, else
        (Q + 1) / 2 for values in [-1, 1]); 0 for unvisited edges (Gumbel's sigma(q^))."""
        counts = np.asarray(node.visit_counts)
        q = np.array([self._normalized(v) for v in node.q_values])
        return np.where(counts > 0, q, 0.0)

    def _normalized(self, value: float) -> float:
        if not self.normalize_q:
            return (value + 1.0) / 2.0
        low, high = self.bounds.minimum, self.bounds.maximum
        return (value - low) / (high - low) if high > low else value

    def abort(self) -> None:
        """Drop the tree after a failed step (an interrupted round leaves virtual losses)."""
        self.root = None
        self._paths, self._leaves, self._left = [], [], 0

    def advance(self, action: int) -> None:
        """Make the child reached by `action` the new root, keeping its subtree (tree reuse).

        Call it with each move played (by either player). When the move was never searched the
        tree is dropped and the next `search` starts afresh.
        """
        root = self.root
        self.root = None if root is None else root.children.get(int(action))

    def reset(self) -> None:
        """Drop the tree (a new game)."""
        self.root = None

    def run_round(self, root: Node, descents: int) -> None:
        """Steps 1-3 for `descents` simulations from `root` whose leaves are evaluated in one
        call (a round outside a begun search, kept for tests and experiments)."""
        paths = [self.select(root) for _ in range(descents)]
        leaves = list({id(leaf): leaf for _, leaf in paths if leaf.proven is None}.values())
        self.expand_and_evaluate(leaves)
        for path, leaf in paths:
            self.backup(path, leaf_value(leaf))

    def select(self, root: Node) -> tuple[list[tuple[Node, int]], Node]:
        """Step 1: descend by PUCT to a leaf, adding a virtual loss to each edge taken.

        Returns:
            `(path, leaf)`: the `(node, edge index)` pairs from the root, and the leaf (terminal,
            proven by the solver, or not expanded yet). Children are created here, when an edge
            is first taken.
        """
        path = []
        node = root
        loss = self.virtual_loss
        c_puct = self.c_puct
        plain = self.c_base is None and not self.normalize_q
        gumbel = self._gumbel
        while node.actions is not None:
            # argmax_a Q + c_puct P sqrt(N(s)) / (1 + N(s, a)), ties to the lowest index
            counts, q_values = node.visit_counts, node.q_values
            if gumbel is not None and node is root:  # sequential halving's next edge
                index = gumbel.next_index(self.q_hat(node), counts)
            else:
                if plain:
                    scores = puct_scores(
                        node.prior, counts, q_values, c_puct=c_puct, visits=node.visits
                    )
                else:  # MuZero's growing c(s) and/or min-max normalised Q
                    scores = self.scores(node)
                index = scores.index(max(scores))
            path.append((node, index))
            if loss:
                count = counts[index] = counts[index] + loss
                total = node.value_sums[index] = node.value_sums[index] - loss
                q_values[index] = total / count
                node.visits += loss
            action = node.actions[index]
            child = node.children.get(action)
            if child is None:
                child = node.children[action] = self._child(node, action)
            node = child
            if node.proven is not None:  # terminal, or solved: its value is exact
                break
        return path, node

    def expand_and_evaluate(self, leaves: list[Node]) -> None:
        """Step 2: one evaluator call for `leaves` (non-terminal, not expanded); expand each."""
        if leaves:
            self.expand(leaves, *evaluate_leaves(self.evaluator, leaves))

    def expand(
        self,
        leaves: list[Node],
        priors: np.ndarray,
        values: np.ndarray,
        latents: list | None = None,
        rewards: np.ndarray | None = None,
    ) -> None:
        """Step 2 after the evaluator: expand each leaf with its row of `priors` and `values`
        (what `evaluate_leaves` returns).

        Args:
            leaves: L non-terminal, unexpanded nodes.
            priors: `[L, A]` the evaluator's priors (masked to the legal moves here).
            values: `[L]` the evaluator's values.
            latents: a learned model's L hidden states (None for an `Evaluator`).
            rewards: `[L]` a learned model's rewards on the edges into the leaves.

        Raises:
            ValueError: the evaluator returned the wrong shapes or negative priors, or the game
                has no legal move at a non-terminal state (which the `Game` protocol forbids).
            NonFiniteError: the evaluator returned NaN or infinite priors or values.
        """
        priors = np.asarray(priors, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        expected = (len(leaves), self.game.action_size)
        if priors.shape != expected or values.shape != expected[:1]:
            raise ValueError(
                f"evaluator returned priors {priors.shape} and values {values.shape} for "
                f"{len(leaves)} states; expected priors {expected} and values {expected[:1]}"
            )
        if not (np.isfinite(priors).all() and np.isfinite(values).all()):
            raise NonFiniteError("evaluator returned a non-finite prior or value")
        if (priors < 0).any():
            raise ValueError(f"evaluator returned a negative prior ({priors.min()})")
        if latents is not None:
            self._learned_extras(leaves, latents, rewards)
        fpu = self.fpu
        legal_actions = self._legal_actions if self.learned else self.game.legal_actions
        for leaf, prior, value in zip(leaves, priors.tolist(), values.tolist(), strict=True):
            actions = legal_actions(leaf.state)
            if not actions:
                raise ValueError(f"{self.game.name}: a non-terminal state has no legal move")
            legal_prior = [prior[a] for a in actions]
            total = sum(legal_prior)
            size = len(actions)
            leaf.prior = [p / total for p in legal_prior] if total > 0 else [1.0 / size] * size
            leaf.visit_counts = [0.0] * size
            leaf.value_sums = [0.0] * size
            leaf.q_values = [fpu] * size
            leaf.visits = 1.0
            leaf.actions = tuple(actions)
            leaf.value = value

    def _learned_extras(self, leaves: list[Node], latents: list, rewards) -> None:
        """A learned model's part of step 2: each leaf's latent state and edge reward."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if len(latents) != len(leaves) or rewards.shape != (len(leaves),):
            raise ValueError(
                f"model returned {len(latents)} latents and rewards {rewards.shape} for "
                f"{len(leaves)} states"
            )
        if not np.isfinite(rewards).all():
            raise NonFiniteError("model returned a non-finite reward")
        for leaf, latent, reward in zip(leaves, latents, rewards.tolist(), strict=True):
            leaf.latent, leaf.reward, leaf.source = latent, reward, None

    def _legal_actions(self, state: Any) -> list[int]:
        """The actions a learned model's node expands: the real state's legal moves when it is
        known and the game not over (the root; inside the tree with `tree_legal_moves`),
        every action otherwise."""
        if state is None or self.game.is_terminal(state):
            return list(range(self.game.action_size))
        return self.game.legal_actions(state)

    def _child(self, node: Node, action: int) -> Node:
        """The node reached from `node` by `action`: the real game's next state, or for a
        learned model a node the model will reach from `node`'s latent (tracking the real state
        with `tree_legal_moves`)."""
        if not self.learned:
            return Node(self.game, self.game.apply(node.state, action))
        state = None
        if self.tree_legal_moves and node.state is not None:
            if not self.game.is_terminal(node.state):
                state = self.game.apply(node.state, action)
        return Node(self.game, state, learned=True, source=(node.latent, action))

    def backup(self, path: list[tuple[Node, int]], value: float) -> None:
        """Step 3: add one visit and the value along `path`, removing its virtual loss.

        Args:
            path: the `(node, edge index)` pairs from the root to the leaf.
            value: the leaf's value for the player to move at the leaf.
        """
        loss = self.virtual_loss
        if self._plain:  # AlphaZero: G_t = -G_{t+1}
            for node, index in reversed(path):
                value = -value  # now from the point of view of the player to move at `node`
                count = node.visit_counts[index] = node.visit_counts[index] + 1.0 - loss
                total = node.value_sums[index] = node.value_sums[index] + value + loss
                node.q_values[index] = total / count
                node.visits += 1.0 - loss
        else:  # G_t = r(s_t, a_t) + gamma * sign * G_{t+1}
            sign = -1.0 if self.two_player else 1.0
            discount, bounds = self.discount, self.bounds
            for node, index in reversed(path):
                value = node.children[node.actions[index]].reward + discount * sign * value
                count = node.visit_counts[index] = node.visit_counts[index] + 1.0 - loss
                total = node.value_sums[index] = node.value_sums[index] + value + loss
                node.q_values[index] = q = total / count
                node.visits += 1.0 - loss
                bounds.update(q)
        if self.solve:
            prove(path)

    def scores(self, node: Node) -> list[float]:
        """`puct_scores` of `node`'s edges with MuZero's c(s) = c1 + log((N(s) + c2 + 1) / c2)
        (when `c_base` is set) and min-max normalised Q (when `normalize_q` is set)."""
        c = self.c_puct
        if self.c_base is not None:
            c += math.log((node.visits + self.c_base + 1.0) / self.c_base)
        q_values = node.q_values
        if self.normalize_q:
            q_values = self.bounds.normalize(q_values, node.visit_counts, self.fpu)
        return puct_scores(node.prior, node.visit_counts, q_values, c_puct=c, visits=node.visits)

    def _result(self, root: Node, prior) -> SearchResult:
        """The root's statistics spread over all `A` actions."""
        size = self.game.action_size
        actions = list(root.actions)
        counts, sums = np.array(root.visit_counts), np.array(root.value_sums)
        visit_counts = np.zeros(size, np.int64)
        visit_counts[actions] = np.rint(counts).astype(np.int64)
        q_values = np.zeros(size)
        q_values[actions] = np.where(counts > 0, sums / np.maximum(counts, 1.0), 0.0)
        priors = np.zeros(size)
        priors[actions] = prior
        proven = np.full(size, np.nan)
        for action, child in root.children.items():
            if child.proven is not None:
                proven[action] = -child.proven
        value = float(sums.sum() / counts.sum())
        return SearchResult(visit_counts, q_values, value, priors, proven)


class MinMaxStats:
    """The smallest and largest Q backed up in a search, to normalise Q into [0, 1] (MuZero).

    Args:
        known: bounds known in advance (MuZero's board games: (-1, 1)); the values seen widen
            them only where they fall outside. None: learned from the values alone.
    """

    def __init__(self, known: tuple[float, float] | None = None):
        self.minimum, self.maximum = (math.inf, -math.inf) if known is None else known

    def update(self, value: float) -> None:
        """Widen the bounds to hold `value`."""
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def normalize(
        self, q_values: Sequence[float], visit_counts: Sequence[float], fpu: float
    ) -> list[float]:
        """`[L]` (Q - min) / (max - min) for the visited edges (Q itself until max > min), `fpu`
        for the unvisited ones."""
        low, high = self.minimum, self.maximum
        scale = 1.0 / (high - low) if high > low else None
        normalized: list[float] = []
        for q, n in zip(q_values, visit_counts, strict=True):
            if n <= 0:
                normalized.append(fpu)
            else:
                normalized.append(q if scale is None else (q - low) * scale)
        return normalized


def leaf_value(leaf: Node) -> float:
    """What step 3 backs up from a leaf: its proven value when known, else its evaluation."""
    return leaf.value if leaf.proven is None else leaf.proven


def prove(path: list[tuple[Node, int]]) -> None:
    """MCTS-Solver's step 3: from the end of `path` upward, mark each node proven while its
    children allow (see the module docstring); stop at the first node that stays unproven."""
    for node, index in reversed(path):
        if node.proven is not None:
            return
        child = node.children[node.actions[index]]
        if child.proven is None:
            return
        if child.proven <= -1.0:  # a move that wins: nothing is better
            node.proven = -child.proven
            continue
        if len(node.children) < len(node.actions):
            return
        results = [c.proven for c in node.children.values()]
        if any(result is None for result in results):
            return
        node.proven = -min(results)


def best_move(result: SearchResult) -> int:
    """The move to play from a finished search, without exploration: a proven win if there is
    one, else the most visited move that is not proven to lose (all moves if all lose); ties go
    to the lowest action."""
    proven = result.proven
    if (proven >= 1.0).any():
        return int(np.argmax(proven >= 1.0))
    counts = result.visit_counts.astype(np.float64)
    losing = proven <= -1.0
    if (counts[~losing] > 0).any():
        counts[losing] = -1.0
    return int(np.argmax(counts))


def search_wave(searches: list[MCTS], evaluator: Evaluator) -> None:
    """One wave of many searches in progress (each `begin`-ed, not `done`): every search takes
    its next leaves (one round, or its root), all of them are evaluated in ONE
    `evaluator.evaluate` call, and each search expands its own and finishes its round.

    The searches are independent trees (one per game); each still does its own PUCT selection
    with virtual loss within its round. The evaluator sees batches of up to `len(searches) *
    batch_size` positions, which is what makes many self-play games per process fast.

    Raises:
        the errors of `MCTS.expand`; every search of the wave is then aborted.
    """
    try:
        wanted = [search.next_leaves() for search in searches]
        every = [leaf for leaves in wanted for leaf in leaves]
        if every:
            outputs = evaluate_leaves(evaluator, every)
            priors, values = np.asarray(outputs[0]), np.asarray(outputs[1])
            if priors.shape[:1] != (len(every),) or values.shape != (len(every),):
                raise ValueError(
                    f"evaluator returned priors {priors.shape} and values {values.shape} for "
                    f"{len(every)} states"
                )
            outputs = (priors, values, *outputs[2:])
        start = 0
        for search, leaves in zip(searches, wanted, strict=True):
            if leaves:
                end = start + len(leaves)
                search.expand(leaves, *(output[start:end] for output in outputs))
                start = end
            search.finish_round()
    except BaseException:
        for search in searches:
            search.abort()
        raise


def search_together(
    searches: list[MCTS], states: list, evaluator: Evaluator | None = None, *, add_noise=False
) -> list[SearchResult]:
    """Whole searches of several trees at once: search i from `states[i]`, all their leaves
    evaluated together, one call per wave (`search_wave`) by `evaluator` (default: the first
    search's). Returns the results in order; each equals `searches[i].search(states[i])` for
    an evaluator whose outputs do not depend on the rest of its batch."""
    evaluator = evaluator or searches[0].evaluator
    for search, state in zip(searches, states, strict=True):
        search.begin(state, add_noise=add_noise)
    active = [search for search in searches if not search.done]
    while active:
        search_wave(active, evaluator)
        active = [search for search in active if not search.done]
    return [search.end() for search in searches]


def play_together(games: list, evaluator) -> None:
    """Play several games (or episodes) to their end, each with its own search, every wave
    evaluating the leaves of all the games still searching in one call (`search_wave`). A
    game whose search is done plays its move and begins its next search in the same wave.

    Args:
        games: objects with `mcts` (their `MCTS`), `over` (True once finished), `begin_move()`
            (begin the next search) and `play_move()` (end the search and play its move):
            AlphaZero's self-play games and MuZero's episodes.
        evaluator: an `Evaluator` or a learned `Model` (see `evaluate_leaves`).
    """
    active = [game for game in games if not game.over]
    for game in active:
        game.begin_move()
    while active:
        search_wave([game.mcts for game in active], evaluator)
        for game in active:
            if game.mcts.done:
                game.play_move()
                if not game.over:
                    game.begin_move()
        active = [game for game in active if not game.over]


def visit_policy(visit_counts: np.ndarray, temperature: float) -> np.ndarray:
    """Step 4's policy pi(a) = N(a)^(1/tau) / sum_b N(b)^(1/tau) over the root's visit counts.

    Args:
        visit_counts: `[A]` non-negative counts, not all 0.
        temperature: tau >= 0. 0 gives the one-hot policy on the most visited action, ties going
            to the lowest action; `inf` the uniform policy over the visited actions. Unvisited
            actions always get 0.

    Returns:
        float64 `[A]` summing to 1.

    Raises:
        ConfigError: `temperature` is negative or NaN.
        ValueError: the counts are negative or all 0.
    """
    _check(
        "temperature", temperature, lambda: temperature >= 0, "a number >= 0 (0 plays the argmax)"
    )
    counts = np.asarray(visit_counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"visit counts must be a non-negative vector, not all 0: {counts}")
    policy = np.zeros_like(counts)
    if temperature == 0:
        policy[int(np.argmax(counts))] = 1.0
        return policy
    visited = counts > 0
    policy[visited] = (counts[visited] / counts.max()) ** (1.0 / temperature)  # <= 1: no overflow
    return policy / policy.sum()


def select_action(visit_counts: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """An action drawn from `visit_policy(visit_counts, temperature)`.

    With temperature 0 this is the most visited action (ties: the lowest) and `rng` is not used.
    """
    policy = visit_policy(visit_counts, temperature)
    if temperature == 0:
        return int(np.argmax(policy))
    return int(rng.choice(len(policy), p=policy))


def _is_int(value: Any) -> bool:
    """True for Python and numpy integers (not bools)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check(name: str, value: Any, ok: Callable[[], bool], valid: str) -> None:
    """Raise ConfigError naming `name`, `value` and what is `valid` unless `ok()` is True.

    `ok` is a callable so that a value of the wrong type (a TypeError inside it) is reported the
    same way as a value out of range.
    """
    try:
        good = bool(ok())
    except (TypeError, ValueError):
        good = False
    if not good:
        raise ConfigError(f"{name} = {value!r} is invalid; valid: {valid}")
