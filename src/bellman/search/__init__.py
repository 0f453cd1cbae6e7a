"""Search over the `Game` protocol: PUCT Monte-Carlo tree search and alpha-beta.

mcts.py        `MCTS` (AlphaZero's PUCT search with batched leaf evaluation, virtual loss and
               tree reuse; MuZero's edge rewards, discounts, min-max normalised Q and learned
               models), `search_wave` / `search_together` / `play_together` (many trees, one
               evaluator call per wave), the `Evaluator` and `Model` protocols, `evaluate_leaves`,
               `MinMaxStats`, `RandomRolloutEvaluator`, `SearchResult`,
               `visit_policy`, `select_action` and `best_move` (MCTS-Solver's choice)
gumbel.py      `GumbelRoot`: Gumbel MuZero's root (Gumbel-top-k, sequential halving, the
               improved policy), an option of `MCTS` (`gumbel=True`)
alphabeta.py   `alphabeta` (depth-limited negamax), `AlphaBetaPlayer`, and the exact
               `PerfectPlayer` / `solved_values` for small games
"""

from __future__ import annotations

from bellman.search.alphabeta import AlphaBetaPlayer, PerfectPlayer, alphabeta, solved_values
from bellman.search.mcts import (
    MCTS,
    Evaluator,
    MinMaxStats,
    Model,
    Node,
    RandomRolloutEvaluator,
    SearchResult,
    add_dirichlet_noise,
    best_move,
    evaluate_leaves,
    play_together,
    puct_scores,
    search_together,
    search_wave,
    select_action,
    visit_policy,
)

__all__ = [
    "MCTS",
    "AlphaBetaPlayer",
    "Evaluator",
    "MinMaxStats",
    "Model",
    "Node",
    "PerfectPlayer",
    "RandomRolloutEvaluator",
    "SearchResult",
    "add_dirichlet_noise",
    "alphabeta",
    "best_move",
    "evaluate_leaves",
    "play_together",
    "puct_scores",
    "search_together",
    "search_wave",
    "select_action",
    "solved_values",
    "visit_policy",
]
