"""Gumbel MuZero's root (Danihelka et al. 2022) in the one MCTS: Gumbel-top-k, sequential
halving on a hand-made bandit whose Q values are known, the improved policy by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bellman.games import make_game
from bellman.search.gumbel import GumbelRoot
from bellman.search.mcts import MCTS
from tests.search.test_mcts_rewards import HashEvaluator, Rules

REWARDS = [0.0, 1.0, 0.5, 0.25]


class FourArms:
    """A learned model of a bandit: action a from the root pays REWARDS[a], nothing after."""

    def initial_inference(self, states):
        return np.full((len(states), 4), 0.25), np.zeros(len(states)), ["root"] * len(states)

    def recurrent_inference(self, latents, actions):
        size = len(latents)
        rewards = [
            REWARDS[a] if h == "root" else 0.0 for h, a in zip(latents, actions, strict=True)
        ]
        return np.full((size, 4), 0.25), np.zeros(size), ["after"] * size, np.array(rewards)


def test_sequential_halving_on_a_bandit_by_hand():
    mcts = MCTS(Rules(4), FourArms(), simulations=8, two_player=False, normalize_q=True,
                batch_size=1, virtual_loss=0.0, gumbel=True)  # fmt: skip
    result = mcts.search("s")  # no noise: g = 0, all four arms considered (m = 4, 2 phases)
    # phase 1: 8 // (2 * 4) = 1 visit each; the better half by l + sigma(q^) is arms 1 and 2;
    # the last phase spends the 4 simulations left on them, 2 each
    assert result.visit_counts.tolist() == [1, 3, 3, 1]
    assert result.q_values.tolist() == REWARDS
    assert result.selected == 1
    # pi' = softmax(log 0.25 + (50 + max N) q^), q^ = Q (the bounds are 0 and 1)
    logits = [53.0 * q for q in REWARDS]
    expected = np.exp(np.array(logits) - max(logits))
    assert result.improved_policy == pytest.approx(expected / expected.sum(), abs=1e-12)


def test_gumbel_top_k_considers_m_actions_and_noise_is_seeded():
    root = GumbelRoot([0.1] * 10, 16, np.random.default_rng(3), max_considered=4)
    assert len(root.considered) == 4 and root.phases == 2
    again = GumbelRoot([0.1] * 10, 16, np.random.default_rng(3), max_considered=4)
    assert again.considered == root.considered  # the same seed, the same arms
    # without noise the m arms of largest prior are considered
    plain = GumbelRoot([0.05, 0.4, 0.05, 0.3, 0.2], 8, None, max_considered=2)
    assert sorted(plain.considered) == [1, 3]
    assert math.isclose(sum(plain.improved_policy(np.zeros(5), [0] * 5, 0.5)), 1.0)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_alphazero_with_a_gumbel_root(batch_size):
    game = make_game("tictactoe")
    mcts = MCTS(game, HashEvaluator(game), simulations=32, gumbel=True, max_considered=4,
                batch_size=batch_size, seed=1)  # fmt: skip
    state = game.apply(game.initial_state(), 4)
    result = mcts.search(state, add_noise=True)
    assert result.visit_counts.sum() == 32
    assert (result.visit_counts > 0).sum() <= 4  # only the considered moves are visited
    assert result.visit_counts[4] == 0 and result.improved_policy[4] == 0
    assert result.visit_counts[result.selected] > 0
    assert result.improved_policy.sum() == pytest.approx(1.0)


def test_alphazero_self_play_with_a_gumbel_root():
    from bellman.zero.selfplay import SelfPlaySettings, play_self_play_game

    game = make_game("tictactoe")
    settings = SelfPlaySettings(
        game="tictactoe", simulations=16, c_puct=1.25, dirichlet_alpha=1.0,
        dirichlet_fraction=0.25, temperature_moves=4, search_batch_size=4, virtual_loss=1.0,
        blocks=1, channels=8, value_hidden=8, torch_threads=1, gumbel=True, max_considered=4,
    )  # fmt: skip
    record = play_self_play_game(game, HashEvaluator(game), settings, np.random.SeedSequence(0))
    # the targets are improved policies: a softmax over every legal move (visit counts would
    # leave the unvisited moves at 0, and at most 4 moves are visited per search)
    first = record.policies[0]
    assert (first > 0).sum() == 9 and first.sum() == pytest.approx(1.0, abs=1e-6)
    assert record.moves >= 5
