"""PUCT search: hand-built trees with exact statistics, known tic-tac-toe positions, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bellman.errors import ConfigError, NonFiniteError
from bellman.games.base import IllegalMoveError, play_moves
from bellman.games.tictactoe import TicTacToe
from bellman.search.alphabeta import solved_values
from bellman.search.mcts import (
    MCTS,
    RandomRolloutEvaluator,
    SearchResult,
    add_dirichlet_noise,
    best_move,
    puct_scores,
    select_action,
    visit_policy,
)
from tests.conftest import HashEvaluator

TTT = TicTacToe()


def position(moves: str):
    """A tic-tac-toe state from cell notation, e.g. "1425"."""
    return play_moves(TTT, TTT.parse_moves(moves))


class TreeGame:
    """A game given as an explicit tree, for hand-computed searches.

    States are node names. `moves[name]` maps actions to child names; `outcomes[name]` is the
    outcome of a terminal node for the player to move there. Players alternate by depth.
    """

    name = "tree"
    board_shape = (1, 1)
    observation_shape = (1, 1, 1)

    def __init__(self, moves: dict, outcomes: dict, action_size: int, root: str = "root"):
        self.moves, self.outcomes, self.action_size, self.root = moves, outcomes, action_size, root
        self.depth = {root: 0}
        stack = [root]
        while stack:
            parent = stack.pop()
            for child in self.moves.get(parent, {}).values():
                self.depth[child] = self.depth[parent] + 1
                stack.append(child)

    def initial_state(self):
        return self.root

    def to_play(self, state):
        return self.depth[state] % 2

    def legal_actions(self, state):
        return sorted(self.moves.get(state, {}))

    def legal_mask(self, state):
        mask = np.zeros(self.action_size, bool)
        mask[self.legal_actions(state)] = True
        return mask

    def apply(self, state, action):
        if action not in self.moves.get(state, {}):
            raise IllegalMoveError(f"{action} is illegal at {state}")
        return self.moves[state][action]

    def is_terminal(self, state):
        return state in self.outcomes

    def outcome(self, state):
        return self.outcomes.get(state, 0.0)

    def observation(self, state):
        return np.zeros(self.observation_shape, np.float32)

    def symmetries(self, planes, policy):
        return [(planes, policy)]

    def render(self, state):
        return state

    def format_action(self, action):
        return str(action)

    def parse_action(self, text):
        return int(text)

    def parse_moves(self, line):
        return [int(c) for c in line.split()]


class StubEvaluator:
    """Priors and values chosen by the test, per state; counts its calls.

    Args:
        action_size: A.
        priors: state -> raw prior `[A]` (unmasked); default uniform over all A actions.
        values: state -> value for the player to move; default 0.
    """

    def __init__(self, action_size, priors=None, values=None):
        self.action_size = action_size
        self.priors = priors or {}
        self.values = values or {}
        self.batches: list[list] = []

    def evaluate(self, states):
        self.batches.append(list(states))
        uniform = np.full(self.action_size, 1.0 / self.action_size)
        priors = np.array([self.priors.get(s, uniform) for s in states], np.float32)
        values = np.array([self.values.get(s, 0.0) for s in states], np.float32)
        return priors, values


class CountingEvaluator:
    """Wraps an evaluator and records the size of every batch it is called with."""

    def __init__(self, inner):
        self.inner = inner
        self.batch_sizes: list[int] = []

    def evaluate(self, states):
        self.batch_sizes.append(len(states))
        return self.inner.evaluate(states)


# --- the pure pieces -------------------------------------------------------------------------


def test_puct_scores_hand_computed():
    # N(s) = 1 + 3 = 4, sqrt = 2; U = 1.5 * 2 * P / (1 + N) = [0.5, 0.45, 0.6].
    scores = puct_scores(
        np.array([0.5, 0.3, 0.2]), np.array([2.0, 1.0, 0.0]), np.array([0.1, -0.5, 0.0]), c_puct=1.5
    )
    assert scores == pytest.approx([0.6, -0.05, 0.6])


def test_select_descends_by_puct_scores(monkeypatch):
    # MCTS.select takes the argmax of `puct_scores` (the formula checked above) at every node,
    # with the node's own N(s), which equals 1 + sum_b N(s, b) once the virtual losses are gone
    from bellman.search import mcts as module

    real, calls = module.puct_scores, []

    def recording(prior, visit_counts, q_values, *, c_puct, visits=None):
        scores = real(prior, visit_counts, q_values, c_puct=c_puct, visits=visits)
        calls.append((list(prior), list(visit_counts), list(q_values), visits, scores))
        return scores

    monkeypatch.setattr(module, "puct_scores", recording)
    search = MCTS(TTT, HashEvaluator(9), simulations=60, batch_size=4, c_puct=1.3)
    search.search(position("15"))
    assert len(calls) >= 60  # one call per node descended through, at least one per simulation
    for prior, counts, q_values, visits, scores in calls:
        assert scores == real(prior, counts, q_values, c_puct=1.3, visits=visits)
    nodes = [search.root]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children.values())
        if node.expanded:
            assert node.visits == 1.0 + sum(node.visit_counts)
            stats = node.prior, node.visit_counts, node.q_values
            assert real(*stats, c_puct=1.3, visits=node.visits) == real(*stats, c_puct=1.3)


def test_visit_policy_worked_example():
    counts = np.array([1, 3, 0, 6])
    assert visit_policy(counts, 1.0) == pytest.approx([0.1, 0.3, 0.0, 0.6])
    assert visit_policy(counts, 0.5) == pytest.approx(np.array([1, 9, 0, 36]) / 46)
    assert visit_policy(counts, 0).tolist() == [0, 0, 0, 1]
    assert visit_policy(counts, math.inf) == pytest.approx([1 / 3, 1 / 3, 0, 1 / 3])
    assert visit_policy(np.array([0, 800, 799]), 0.01).sum() == pytest.approx(1.0)  # no overflow


def test_temperature_zero_is_the_argmax_with_ties_to_the_lowest_action():
    rng = np.random.default_rng(0)
    assert select_action(np.array([2, 7, 1, 3]), 0, rng) == 1
    assert select_action(np.array([3, 5, 5]), 0, rng) == 1
    assert visit_policy(np.array([3, 5, 5]), 0).tolist() == [0, 1, 0]


def test_select_action_samples_the_visit_policy():
    rng = np.random.default_rng(0)
    draws = [select_action(np.array([1, 3, 0, 6]), 1.0, rng) for _ in range(4000)]
    frequencies = np.bincount(draws, minlength=4) / len(draws)
    assert frequencies == pytest.approx([0.1, 0.3, 0.0, 0.6], abs=0.03)
    assert frequencies[2] == 0


def test_bad_temperature_and_counts():
    with pytest.raises(ConfigError, match=r"temperature = -1 is invalid; valid: a number >= 0"):
        visit_policy(np.array([1, 2]), -1)
    with pytest.raises(ConfigError, match="temperature"):
        visit_policy(np.array([1, 2]), float("nan"))
    with pytest.raises(ValueError, match="not all 0"):
        visit_policy(np.array([0, 0]), 1.0)


def test_dirichlet_noise_is_a_distribution_and_fraction_zero_is_no_noise():
    rng = np.random.default_rng(0)
    prior = np.array([0.7, 0.2, 0.1])
    noisy = add_dirichlet_noise(prior, 0.3, 0.25, rng)
    assert noisy.sum() == pytest.approx(1.0) and not np.allclose(noisy, prior)
    assert np.all(noisy >= 0.75 * prior)
    assert np.array_equal(add_dirichlet_noise(prior, 0.3, 0.0, rng), prior)


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("simulations", 0),
        ("simulations", 2.5),
        ("c_puct", 0),
        ("c_puct", -1.0),
        ("batch_size", 0),
        ("dirichlet_alpha", 0),
        ("dirichlet_fraction", 1.5),
        ("virtual_loss", -1),
        ("fpu", 2.0),
        ("c_puct", "big"),
    ],
)
def test_bad_knobs_are_config_errors_naming_the_value(knob, value):
    with pytest.raises(ConfigError, match=rf"{knob} = {value!r} is invalid; valid: "):
        MCTS(TTT, RandomRolloutEvaluator(TTT), **{knob: value})


def test_bad_rollouts():
    with pytest.raises(ConfigError, match="rollouts = 0 is invalid"):
        RandomRolloutEvaluator(TTT, rollouts=0)


# --- a hand-built depth-2 tree ----------------------------------------------------------------


def two_ply_tree(labels):
    """root -> A (non-terminal leaf) and B; B -> B0 (terminal: its mover lost) and B1 (a leaf).

    `labels` = (action to A, action to B, an illegal action) at the root; B's moves use
    (labels[0] -> B0, labels[1] -> B1). The stub gives unmasked priors with mass on the illegal
    action: root [A 0.3, B 0.2, illegal 0.5] -> masked [0.6, 0.4]; B [B0 0.2, B1 0.8]; values
    v(A) = 0.5 (for A's mover, player 1), v(B) = -0.2 (player 1), v(B1) = 0.6 (player 0).
    """
    to_a, to_b, illegal = labels
    game = TreeGame(
        moves={
            "root": {to_a: "A", to_b: "B"},
            "A": {0: "A0"},
            "B": {to_a: "B0", to_b: "B1"},
            "B1": {0: "B10"},
        },
        outcomes={"B0": -1.0, "A0": 0.0, "B10": 0.0},
        action_size=3,
    )
    root_prior = np.zeros(3)
    root_prior[[to_a, to_b, illegal]] = [0.3, 0.2, 0.5]
    b_prior = np.zeros(3)
    b_prior[[to_a, to_b]] = [0.2, 0.8]
    stub = StubEvaluator(
        3,
        priors={"root": root_prior, "B": b_prior},
        values={"root": 0.9, "A": 0.5, "B": -0.2, "B1": 0.6},
    )
    return game, stub


@pytest.mark.parametrize("labels", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_backup_flips_the_sign_each_ply_on_a_hand_tree(labels):
    # c_puct = 1, fpu = 0. By hand (root priors 0.6 / 0.4):
    #   sim 1: scores A 0.6, B 0.4 -> A; v(A) = 0.5 for player 1   -> edge A: N 1, W -0.5
    #   sim 2: A -0.5 + 0.6 sqrt2 / 2 = -0.08, B 0.4 sqrt2 = 0.57 -> B; v(B) = -0.2 -> B: W 0.2
    #   sim 3: A 0.02, B 0.2 + 0.4 sqrt3 / 2 = 0.55 -> B; at B (priors 0.2 / 0.8) -> B1;
    #          v(B1) = 0.6 for player 0: edge (B, B1) W -0.6, edge B: N 2, W 0.8
    #   sim 4: A 0.1, B 0.4 + 0.4 * 2 / 3 = 0.67 -> B; at B: B0 0.2 sqrt2 = 0.28,
    #          B1 -0.6 + 0.8 sqrt2 / 2 = -0.03 -> B0, terminal, outcome -1 for player 0 there:
    #          edge (B, B0) W +1, edge B: N 3, W -0.2
    to_a, to_b, illegal = labels
    game, stub = two_ply_tree(labels)
    mcts = MCTS(game, stub, simulations=4, c_puct=1.0, batch_size=1, fpu=0.0)
    result = mcts.search("root")
    assert result.visit_counts[[to_a, to_b, illegal]].tolist() == [1, 3, 0]
    assert result.q_values[[to_a, to_b, illegal]] == pytest.approx([-0.5, -0.2 / 3, 0.0])
    assert result.value == pytest.approx((-0.5 - 0.2) / 4)
    assert result.priors[[to_a, to_b, illegal]] == pytest.approx([0.6, 0.4, 0.0])
    node_b = mcts.root.children[to_b]
    counts, sums, qs = node_b.visit_counts, node_b.value_sums, node_b.q_values
    edges = zip(node_b.actions, counts, sums, qs, strict=True)
    stats = {node_b.children[action].state: (n, w, q) for action, n, w, q in edges}
    assert stats["B0"] == (1, 1.0, 1.0)  # player 1's point of view
    assert stats["B1"] == (1, pytest.approx(-0.6), pytest.approx(-0.6))
    # The terminal leaf was never sent to the evaluator; root, A, B, B1 were, one at a time.
    assert [batch for batch in stub.batches] == [["root"], ["A"], ["B"], ["B1"]]
    assert mcts.root.children[to_b].children[to_a].terminal


def test_win_in_one_on_a_hand_tree_beats_a_misleading_prior():
    # Action 2 wins at once (the child's mover has lost); 0 and 1 lead to quiet subtrees.
    moves = {"root": {0: "a", 1: "b", 2: "win"}, "a": {0: "a0"}, "b": {0: "b0"}}
    game = TreeGame(moves, outcomes={"win": -1.0, "a0": 0.0, "b0": 0.0}, action_size=3)
    stub = StubEvaluator(3, priors={"root": np.array([0.45, 0.45, 0.1])})
    result = MCTS(game, stub, simulations=50, batch_size=1).search("root")
    assert int(np.argmax(result.visit_counts)) == 2
    assert result.q_values[2] == 1.0


# --- tic-tac-toe positions --------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 8])
def test_finds_the_win_in_one(batch_size):
    state = position("1425")  # X: 1 2, O: 4 5; X wins at 3
    mcts = MCTS(TTT, RandomRolloutEvaluator(TTT, seed=1), simulations=200, batch_size=batch_size)
    result = mcts.search(state)
    assert select_action(result.visit_counts, 0, np.random.default_rng(0)) == 2
    assert result.q_values[2] == 1.0


def test_blocks_the_opponents_immediate_win():
    state = position("152")  # X: 1 2, O: 5; O to move must block at 3
    assert np.nanargmax(solved_values(TTT, state)) == 2  # the only move that does not lose
    result = MCTS(TTT, RandomRolloutEvaluator(TTT), simulations=400).search(state)
    assert int(np.argmax(result.visit_counts)) == 2


@pytest.mark.parametrize(("simulations", "batch_size"), [(50, 1), (50, 8), (7, 3), (1, 8)])
def test_root_visits_sum_to_simulations_on_a_fresh_tree(simulations, batch_size):
    mcts = MCTS(TTT, RandomRolloutEvaluator(TTT), simulations=simulations, batch_size=batch_size)
    result = mcts.search(TTT.initial_state())
    assert result.visit_counts.sum() == simulations
    assert result.visit_counts.dtype == np.int64


def test_illegal_moves_get_no_prior_no_visits_and_are_never_chosen():
    state = position("5139")
    legal = TTT.legal_mask(state)
    # All the raw prior mass on occupied cells: search masks it away and falls back to uniform.
    bad_prior = np.where(legal, 0.0, 1.0)
    stub = StubEvaluator(9, priors={state: bad_prior})
    result = MCTS(TTT, stub, simulations=100).search(state)
    assert (result.visit_counts[~legal] == 0).all() and (result.priors[~legal] == 0).all()
    assert result.priors[legal] == pytest.approx(np.full(legal.sum(), 1 / legal.sum()))
    rng = np.random.default_rng(0)
    for temperature in [0, 0.5, 1.0, 2.0]:
        for _ in range(20):
            assert legal[select_action(result.visit_counts, temperature, rng)]


def test_priors_steer_the_visits():
    prior = np.full(9, 0.01)
    prior[6] = 0.92
    stub = StubEvaluator(9, priors={TTT.initial_state(): prior})
    result = MCTS(TTT, stub, simulations=30, batch_size=1).search(TTT.initial_state())
    assert int(np.argmax(result.visit_counts)) == 6
    assert result.visit_counts[6] > result.visit_counts.sum() / 2


def test_dirichlet_noise_changes_only_the_root_priors_and_only_when_asked():
    state = TTT.initial_state()
    clean = MCTS(TTT, StubEvaluator(9), simulations=40, seed=3)
    assert np.array_equal(clean.search(state).priors, np.full(9, 1 / 9))
    noisy = MCTS(TTT, StubEvaluator(9), simulations=40, seed=3)
    result = noisy.search(state, add_noise=True)
    assert not np.allclose(result.priors, 1 / 9)
    assert result.priors.sum() == pytest.approx(1.0)
    assert np.array_equal(noisy.root.prior, np.full(9, 1 / 9))  # restored after the search
    children = [child for child in noisy.root.children.values() if child.expanded]
    assert children
    for child in children:
        assert np.array_equal(child.prior, np.full(8, 1 / 8))  # uniform over 8 legal moves
    # Fresh noise each search; same seed, same noise.
    again = MCTS(TTT, StubEvaluator(9), simulations=40, seed=3).search(state, add_noise=True)
    assert np.array_equal(again.priors, result.priors)
    assert not np.array_equal(noisy.search(state, add_noise=True).priors, result.priors)


def test_tree_reuse_keeps_the_childs_visits():
    mcts = MCTS(TTT, RandomRolloutEvaluator(TTT), simulations=300, batch_size=1)
    state = TTT.initial_state()
    result = mcts.search(state)
    action = int(np.argmax(result.visit_counts))
    kept = int(result.visit_counts[action])
    mcts.advance(action)
    child = mcts.root
    assert child.state == TTT.apply(state, action)
    assert sum(child.visit_counts) == kept - 1  # its first visit was its own evaluation
    after = mcts.search(TTT.apply(state, action))
    assert mcts.root is child
    assert after.visit_counts.sum() == kept - 1 + 300


def test_a_root_that_does_not_match_is_rebuilt():
    mcts = MCTS(TTT, RandomRolloutEvaluator(TTT), simulations=60)
    mcts.search(TTT.initial_state())
    mcts.advance(4)
    other = position("1")  # not the position after 4
    assert mcts.search(other).visit_counts.sum() == 60
    mcts.advance(8)
    mcts.advance(2)  # a move the tree never reached below
    assert mcts.root is None
    mcts.reset()
    assert mcts.root is None


def test_batched_search_calls_the_evaluator_less_and_still_finds_the_win():
    calls = {}
    for batch_size in [1, 8]:
        evaluator = CountingEvaluator(RandomRolloutEvaluator(TTT))
        mcts = MCTS(TTT, evaluator, simulations=64, batch_size=batch_size)
        assert mcts.search(TTT.initial_state()).visit_counts.sum() == 64
        assert max(evaluator.batch_sizes) <= batch_size
        calls[batch_size] = len(evaluator.batch_sizes)
    assert calls[1] > 40  # about one call per simulation: few leaves are terminal this early
    assert calls[8] <= 1 + 64 // 8  # the root, then at most one call per round
    evaluator = CountingEvaluator(RandomRolloutEvaluator(TTT))
    result = MCTS(TTT, evaluator, simulations=64, batch_size=8).search(position("1425"))
    assert int(np.argmax(result.visit_counts)) == 2
    assert len(evaluator.batch_sizes) <= 1 + 64 // 8


def test_virtual_loss_spreads_one_rounds_descents():
    stub = StubEvaluator(9)
    MCTS(TTT, stub, simulations=8, batch_size=8).search(TTT.initial_state())
    assert [len(batch) for batch in stub.batches] == [1, 8]  # 8 distinct first moves
    stub = StubEvaluator(9)
    MCTS(TTT, stub, simulations=8, batch_size=8, virtual_loss=0).search(TTT.initial_state())
    assert [len(batch) for batch in stub.batches] == [1, 1]  # all 8 descents share one leaf


def test_duplicate_leaves_in_a_round_each_count_as_a_visit():
    stub = StubEvaluator(9, values={TTT.apply(TTT.initial_state(), 0): 0.5})
    mcts = MCTS(TTT, stub, simulations=8, batch_size=8, virtual_loss=0)
    result = mcts.search(TTT.initial_state())
    assert result.visit_counts.tolist() == [8, 0, 0, 0, 0, 0, 0, 0, 0]
    assert result.q_values[0] == pytest.approx(-0.5)  # 0.5 for O is -0.5 for X


def test_a_fixed_seed_is_deterministic():
    def run(seed):
        mcts = MCTS(TTT, RandomRolloutEvaluator(TTT, seed=seed), simulations=100, seed=seed)
        result = mcts.search(position("5"), add_noise=True)
        return result.visit_counts.tolist(), result.priors.tolist()

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_random_rollout_values():
    evaluator = RandomRolloutEvaluator(TTT, rollouts=4)
    win_now = position("67854192")  # X's only move, 3, completes 3-6-9
    draw_now = position("12354687")  # X's only move, 9, fills the board without a line
    priors, values = evaluator.evaluate([win_now, draw_now, TTT.initial_state()])
    assert priors.shape == (3, 9) and priors.dtype == np.float32 and values.dtype == np.float32
    assert values[:2].tolist() == [1.0, 0.0]
    assert -1 <= values[2] <= 1
    assert priors[0].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert priors[2] == pytest.approx(np.full(9, 1 / 9))


def test_searching_a_finished_game_is_an_error():
    with pytest.raises(IllegalMoveError, match="terminal"):
        MCTS(TTT, RandomRolloutEvaluator(TTT)).search(position("14253"))


def test_bad_evaluator_output_is_reported():
    class WrongShape:
        def evaluate(self, states):
            return np.zeros((len(states), 4), np.float32), np.zeros(len(states), np.float32)

    class NotFinite:
        def evaluate(self, states):
            return np.full((len(states), 9), 1 / 9, np.float32), np.full(len(states), np.nan)

    with pytest.raises(ValueError, match=r"expected priors \(1, 9\)"):
        MCTS(TTT, WrongShape()).search(TTT.initial_state())
    mcts = MCTS(TTT, NotFinite())
    with pytest.raises(NonFiniteError, match="non-finite"):
        mcts.search(TTT.initial_state())
    assert mcts.root is None  # a failed search drops its tree


@settings(max_examples=30, deadline=None)
@given(
    moves=st.permutations(list(range(9))),
    length=st.integers(0, 8),
    simulations=st.integers(1, 40),
    batch_size=st.integers(1, 8),
)
def test_property_no_visits_on_illegal_moves_and_visits_sum_to_simulations(
    moves, length, simulations, batch_size
):
    state = TTT.initial_state()
    for action in moves[:length]:
        if TTT.is_terminal(state):
            break
        state = TTT.apply(state, action)
    if TTT.is_terminal(state):
        return
    legal = TTT.legal_mask(state)
    mcts = MCTS(TTT, RandomRolloutEvaluator(TTT), simulations=simulations, batch_size=batch_size)
    result = mcts.search(state, add_noise=True)
    assert result.visit_counts.sum() == simulations
    assert (result.visit_counts[~legal] == 0).all()
    assert (result.priors[~legal] == 0).all() and result.priors.sum() == pytest.approx(1.0)
    assert (result.q_values[~legal] == 0).all()
    assert np.all(np.abs(result.q_values) <= 1.0)


# --- many trees searched together (one evaluator call per wave) ---------------------------------


STARTS = ["", "5", "51", "519", "1425", "5137"]


@pytest.mark.parametrize(("batch_size", "add_noise"), [(1, False), (4, True), (8, False)])
def test_search_together_equals_one_by_one(batch_size, add_noise):
    from bellman.search.mcts import search_together

    def searches(evaluator):
        return [MCTS(TTT, evaluator, simulations=37, batch_size=batch_size, seed=i)
                for i in range(len(STARTS))]  # fmt: skip

    states = [position(moves) for moves in STARTS]
    pairs = zip(searches(HashEvaluator(9)), states, strict=True)
    alone = [m.search(s, add_noise=add_noise) for m, s in pairs]
    evaluator = HashEvaluator(9)
    together = search_together(searches(evaluator), states, add_noise=add_noise)
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a.visit_counts, b.visit_counts)
        np.testing.assert_array_equal(a.q_values, b.q_values)
        np.testing.assert_array_equal(a.priors, b.priors)
        assert a.value == b.value
    # the trees share the calls: about one call per wave, not one per tree and round
    assert max(evaluator.batch_sizes) > batch_size
    assert len(evaluator.batch_sizes) <= 1 + math.ceil(37 / batch_size)


def test_search_together_visits_sum_to_simulations_and_never_illegal():
    from bellman.search.mcts import search_together

    states = [position(moves) for moves in STARTS]
    searches = [MCTS(TTT, RandomRolloutEvaluator(TTT, seed=i), simulations=50, batch_size=3)
                for i in range(len(states))]  # fmt: skip
    results = search_together(searches, states, RandomRolloutEvaluator(TTT), add_noise=True)
    for state, result in zip(states, results, strict=True):
        legal = TTT.legal_mask(state)
        assert result.visit_counts.sum() == 50
        assert (result.visit_counts[~legal] == 0).all()
        assert result.priors.sum() == pytest.approx(1.0)
    # tree reuse after searching together: the child keeps its visits
    action = int(np.argmax(results[0].visit_counts))
    searches[0].advance(action)
    again = searches[0].search(TTT.apply(states[0], action))
    assert again.visit_counts.sum() == results[0].visit_counts[action] - 1 + 50


def test_a_search_in_steps_takes_its_own_simulation_count():
    mcts = MCTS(TTT, HashEvaluator(9), simulations=40, batch_size=4)
    assert mcts.search(TTT.initial_state(), simulations=9).visit_counts.sum() == 9
    with pytest.raises(ConfigError, match="simulations = 0"):
        mcts.search(TTT.initial_state(), simulations=0)


def test_a_failing_wave_drops_every_tree():
    from bellman.search.mcts import search_together

    class NotFinite:
        def evaluate(self, states):
            return np.full((len(states), 9), 1 / 9, np.float32), np.full(len(states), np.nan)

    searches = [MCTS(TTT, NotFinite(), simulations=8) for _ in range(3)]
    with pytest.raises(NonFiniteError):
        search_together(searches, [TTT.initial_state()] * 3)
    assert all(search.root is None for search in searches)


# ---- MCTS-Solver ------------------------------------------------------------------------------
def endgame_positions(count: int, empty: int, seed: int) -> list:
    """Distinct non-terminal tic-tac-toe positions with `empty` empty cells, from random games."""
    rng = np.random.default_rng(seed)
    found: dict = {}
    while len(found) < count:
        state = TTT.initial_state()
        while not TTT.is_terminal(state) and TTT.legal_mask(state).sum() > empty:
            state = TTT.apply(state, int(rng.choice(TTT.legal_actions(state))))
        if not TTT.is_terminal(state):
            found.setdefault(state, state)
    return list(found.values())


@pytest.mark.parametrize("batch_size", [1, 4])
def test_solver_proves_endgames_exactly(batch_size):
    # 30 positions with 5 empty cells (at most 325 nodes below each): every value the solver
    # proves is the exact negamax value, it proves most roots in 600 simulations (a draw needs
    # every move proven; all 30 at 10,000), and the move it plays is optimal
    proofs = roots = 0
    for state in endgame_positions(30, 5, seed=0):
        mcts = MCTS(TTT, RandomRolloutEvaluator(TTT, seed=2), simulations=600,
                    batch_size=batch_size, solve=True)  # fmt: skip
        result = mcts.search(state)
        exact = solved_values(TTT, state)
        if mcts.root.proven is not None:
            assert mcts.root.proven == np.nanmax(exact)
            roots += 1
        known = ~np.isnan(result.proven)
        assert known.any() or mcts.root.proven is None
        np.testing.assert_array_equal(result.proven[known], exact[known])
        assert exact[best_move(result)] == np.nanmax(exact)
        assert result.visit_counts.sum() == 600  # proven subtrees still take their visits
        proofs += known.sum()
    assert roots >= 25 and proofs > 60


def test_without_the_solver_only_finished_games_are_proven():
    state = position("1425")  # X to move: 3 wins at once, the other moves are open
    plain = MCTS(TTT, RandomRolloutEvaluator(TTT, seed=1), simulations=600).search(state)
    assert plain.proven[2] == 1.0 and np.isnan(np.delete(plain.proven, 2)).all()
    solver = MCTS(TTT, RandomRolloutEvaluator(TTT, seed=1), simulations=600, solve=True)
    solver.search(state)
    assert solver.root.proven == 1.0


def test_solver_backs_up_exact_values_instead_of_estimates():
    # O to move at "152" loses unless it blocks at 3; after the blocking move the rest is a draw
    # (solved_values). An evaluator that calls every position a sure win for its mover would
    # mislead the plain search; the solver's proven values override it.
    class Optimist:
        def evaluate(self, states):
            return np.full((len(states), 9), 1 / 9, np.float32), np.ones(len(states), np.float32)

    state = position("152")
    exact = solved_values(TTT, state)
    mcts = MCTS(TTT, Optimist(), simulations=3000, batch_size=1, solve=True)
    result = mcts.search(state)
    assert mcts.root.proven == np.nanmax(exact) == 0.0
    assert best_move(result) == 2
    losing = exact == -1.0
    assert (result.proven[losing] == -1.0).all()


def test_best_move_worked_examples():
    def result(counts, proven):
        counts = np.array(counts, np.int64)
        zeros = np.zeros(len(counts))
        return SearchResult(counts, zeros, 0.0, zeros, np.array(proven, np.float64))

    nan = math.nan
    assert best_move(result([10, 50, 3], [nan, nan, 1.0])) == 2  # a proven win beats visits
    assert best_move(result([10, 50, 3], [nan, -1.0, nan])) == 0  # a proven loss is avoided
    assert best_move(result([10, 50, 3], [-1.0, -1.0, -1.0])) == 1  # all lose: most visited
    assert best_move(result([10, 50, 0], [-1.0, -1.0, nan])) == 1  # the open move has no visit
    assert best_move(result([10, 50, 3], [0.0, nan, 1.0])) == 2
