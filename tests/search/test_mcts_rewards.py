"""The one MCTS generalised for MuZero: rewards and discounts on edges, min-max normalised Q,
MuZero's pUCT constants, the sign flip for two players, legal moves with a learned model, and
AlphaZero's searches unchanged bit for bit (a golden file written by the search before the
generalisation)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bellman.errors import ConfigError
from bellman.games import make_game
from bellman.search.mcts import (
    MCTS,
    MinMaxStats,
    Node,
    RandomRolloutEvaluator,
    search_together,
)

GOLDEN = Path(__file__).parent / "data" / "alphazero_search_golden.json"


class HashEvaluator:
    """A deterministic stand-in for a network: priors and value drawn from a hash of the
    position's planes (the generator of the golden file)."""

    def __init__(self, game):
        self.game = game

    def evaluate(self, states):
        size = self.game.action_size
        priors = np.zeros((len(states), size), np.float32)
        values = np.zeros(len(states), np.float32)
        for i, state in enumerate(states):
            planes = self.game.observation(state).ravel()
            key = int(abs(np.sum(planes * np.arange(1, planes.size + 1))) * 7919) % (2**32)
            rng = np.random.default_rng(key)
            priors[i] = rng.dirichlet(np.ones(size))
            values[i] = rng.uniform(-1, 1)
        return priors, values


def _golden_searches() -> list[dict]:
    """Searches of every AlphaZero feature: batches of 1, 4 and 8, virtual loss 1 and 0.5,
    the solver, a negative fpu, root noise, tree reuse over 4 moves, two evaluators, two games,
    and three trees searched together."""
    results = []
    for name in ("tictactoe", "connect4"):
        game = make_game(name)
        for knobs in [dict(batch_size=1), dict(batch_size=8), dict(batch_size=8, virtual_loss=0.5),
                      dict(batch_size=4, solve=True), dict(batch_size=8, fpu=-0.5)]:  # fmt: skip
            for kind in ("hash", "rollout"):
                evaluator = (
                    HashEvaluator(game) if kind == "hash" else RandomRolloutEvaluator(game, seed=3)
                )
                mcts = MCTS(game, evaluator, simulations=60, seed=5, **knobs)
                state = game.initial_state()
                for move in range(4):
                    r = mcts.search(state, add_noise=move % 2 == 0)
                    results.append(dict(
                        game=name, kw=knobs, ev=kind, move=move, visits=r.visit_counts.tolist(),
                        q=[float(x).hex() for x in r.q_values], value=float(r.value).hex(),
                        priors=[float(x).hex() for x in r.priors],
                    ))  # fmt: skip
                    action = int(np.argmax(r.visit_counts))
                    state = game.apply(state, action)
                    mcts.advance(action)
        searches = [MCTS(game, HashEvaluator(game), simulations=40, batch_size=4, seed=s)
                    for s in range(3)]  # fmt: skip
        start = game.initial_state()
        states = [start, game.apply(start, 0), game.apply(start, 1)]
        for r in search_together(searches, states, HashEvaluator(game), add_noise=True):
            results.append(dict(
                game=name, kw="together", visits=r.visit_counts.tolist(),
                q=[float(x).hex() for x in r.q_values], value=float(r.value).hex(),
            ))  # fmt: skip
    return results


def test_alphazero_searches_are_unchanged_bit_for_bit():
    expected = json.loads(GOLDEN.read_text())
    found = json.loads(json.dumps(_golden_searches()))
    assert len(found) == len(expected) == 86
    for number, (got, want) in enumerate(zip(found, expected, strict=True)):
        assert got == want, f"search {number} differs"


# --- a tiny MDP as a learned model ------------------------------------------------------------


class Rules:
    """What the search needs of the real environment for a learned model: the actions and
    whether the real state is over (never, here)."""

    name = "chain"

    def __init__(self, action_size=2):
        self.action_size = action_size

    def is_terminal(self, state):
        return False

    def legal_actions(self, state):
        return list(range(self.action_size))


class ChainModel:
    """A learned model whose predictions are a hand-made MDP. From the root, action 0 gives
    reward 0.25 and enters the chain "good" (reward 1 on every later step, so its value is
    exactly 1 / (1 - gamma) = 2 for gamma = 1/2), action 1 gives reward 1.5 and enters "bad"
    (reward 0 forever, value 0). Every later state of a chain is its chain again, so any path
    backs up the same return: the root's Q values are known exactly whatever the visits,
        Q(root, 0) = 0.25 + 0.5 * 2 = 1.25,   Q(root, 1) = 1.5 + 0.5 * 0 = 1.5.
    With two players the child's value is the opponent's and the chains alternate signs."""

    def __init__(self, two_player=False):
        self.two_player = two_player
        self.calls = []

    def initial_inference(self, states):
        self.calls.append(("initial", len(states)))
        return np.full((len(states), 2), 0.5), np.zeros(len(states)), ["root"] * len(states)

    def recurrent_inference(self, latents, actions):
        self.calls.append(("recurrent", len(latents)))
        nexts, rewards, values = [], [], []
        for latent, action in zip(latents, actions, strict=True):
            chain = ("good" if action == 0 else "bad") if latent == "root" else latent
            first = latent == "root"
            reward = (0.25 if action == 0 else 1.5) if first else (1.0 if chain == "good" else 0.0)
            nexts.append(chain)
            rewards.append(reward)
            values.append(2.0 if chain == "good" else 0.0)
        priors = np.full((len(latents), 2), 0.5)
        return priors, np.array(values), nexts, np.array(rewards)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_edge_rewards_and_discount_give_the_known_q_values(batch_size):
    model = ChainModel()
    mcts = MCTS(Rules(), model, simulations=30, discount=0.5, two_player=False, normalize_q=True,
                c_base=19652.0, batch_size=batch_size, virtual_loss=0.0)  # fmt: skip
    result = mcts.search("real state")
    assert result.visit_counts.sum() == 30
    assert result.q_values.tolist() == [1.25, 1.5]  # exact
    n0, n1 = result.visit_counts.tolist()
    assert result.value == pytest.approx((1.25 * n0 + 1.5 * n1) / 30, abs=1e-15)
    assert n1 > n0  # the better edge gets the visits once Q is normalised
    assert model.calls[0] == ("initial", 1)  # h at the root, g for everything else
    assert all(kind == "recurrent" for kind, _ in model.calls[1:])


def test_two_players_flip_the_sign_of_the_childs_value():
    # a round of 2 descents with a virtual loss: one visit per edge, each backs up
    # Q = r - gamma v(child), the child's value being the opponent's
    mcts = MCTS(Rules(), ChainModel(), simulations=2, discount=0.5, two_player=True,
                batch_size=2, virtual_loss=1.0)  # fmt: skip
    result = mcts.search("s")
    assert result.visit_counts.tolist() == [1, 1]
    assert result.q_values.tolist() == [0.25 - 0.5 * 2.0, 1.5 - 0.5 * 0.0]
    # deeper: the bad chain's later rewards and values are 0, so edge 1 stays exactly 1.5
    deep = MCTS(Rules(), ChainModel(), simulations=25, discount=0.5, two_player=True,
                normalize_q=True, c_base=19652.0, batch_size=1)  # fmt: skip
    result = deep.search("s")
    assert result.q_values[1] == 1.5  # the bad chain: rewards and values 0 below
    assert result.visit_counts.sum() == 25


def test_muzero_scores_hand_computed():
    mcts = MCTS(Rules(), ChainModel(), normalize_q=True, c_base=19652.0, c_puct=1.25)
    node = Node(Rules(), None, learned=True)
    node.prior, node.visit_counts = [0.5, 0.3, 0.2], [1.0, 3.0, 0.0]
    node.q_values = [1.25, 1.5, 0.0]
    node.visits = 5.0
    mcts.bounds.update(1.0)
    mcts.bounds.update(2.0)
    c = 1.25 + math.log((5 + 19652 + 1) / 19652)
    expected = [0.25 + c * 0.5 * math.sqrt(5) / 2, 0.5 + c * 0.3 * math.sqrt(5) / 4,
                0.0 + c * 0.2 * math.sqrt(5) / 1]  # fmt: skip
    assert mcts.scores(node) == pytest.approx(expected, abs=1e-15)


def test_min_max_stats():
    stats = MinMaxStats()
    assert stats.normalize([3.0, 0.0], [1, 0], fpu=0.0) == [3.0, 0.0]  # no bounds yet: raw
    stats.update(-1.0)
    stats.update(3.0)
    assert stats.normalize([3.0, 1.0, -1.0, 7.0], [1, 2, 1, 0], fpu=0.25) == [1.0, 0.5, 0.0, 0.25]
    # known bounds (board games: -1, 1): two close values are not stretched to 0 and 1
    known = MinMaxStats((-1.0, 1.0))
    known.update(0.1)
    known.update(0.2)
    assert known.normalize([0.1, 0.2], [1, 1], fpu=0.0) == pytest.approx([0.55, 0.6])
    known.update(3.0)  # a value outside widens them
    assert known.normalize([3.0, -1.0], [1, 1], fpu=0.0) == [1.0, 0.0]


class MaskedRules(Rules):
    """Action 1 is illegal in the real state "s"; "s" after action 0 is "t" where only 1 is."""

    def __init__(self):
        super().__init__(action_size=3)

    def legal_actions(self, state):
        return {"s": [0, 2], "t": [1]}.get(state, [0, 1, 2])

    def apply(self, state, action):
        return "t" if state == "s" else "u"


class ThreeActions(ChainModel):
    def initial_inference(self, states):
        return np.full((len(states), 3), 1 / 3), np.zeros(len(states)), ["root"] * len(states)

    def recurrent_inference(self, latents, actions):
        size = len(latents)
        return np.full((size, 3), 1 / 3), np.zeros(size), ["x"] * size, np.zeros(size)


@pytest.mark.parametrize("in_tree", [False, True])
def test_legal_moves_at_the_root_and_optionally_in_the_tree(in_tree):
    mcts = MCTS(MaskedRules(), ThreeActions(), simulations=40, two_player=False,
                normalize_q=True, tree_legal_moves=in_tree, batch_size=1)  # fmt: skip
    result = mcts.search("s")
    assert result.visit_counts[1] == 0 and result.priors[1] == 0
    assert result.visit_counts.sum() == 40
    child = mcts.root.children[0]
    assert child.actions == ((1,) if in_tree else (0, 1, 2))


def test_learned_model_knob_errors():
    with pytest.raises(ConfigError, match="solve"):
        MCTS(Rules(), ChainModel(), solve=True)
    with pytest.raises(ConfigError, match="discount"):
        MCTS(Rules(), ChainModel(), discount=1.5)
    with pytest.raises(ConfigError, match="c_base"):
        MCTS(Rules(), ChainModel(), c_base=-1.0)
