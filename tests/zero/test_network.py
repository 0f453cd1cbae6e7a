"""AlphaZero's network as the search sees it: shapes, one forward per batch, the frozen copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bellman.games import make_game
from bellman.nets import AlphaZeroNetwork
from bellman.zero.network import NetworkEvaluator

torch.set_num_threads(1)


@pytest.mark.parametrize("name", ["tictactoe", "connect4", "go9"])
def test_network_shapes(name):
    game = make_game(name)
    network = AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=2, channels=8)
    planes = torch.zeros((5, *game.observation_shape))
    logits, values = network(planes)
    assert logits.shape == (5, game.action_size)
    assert values.shape == (5,)
    assert (values.abs() < 1).all()
    # the tower: stem + 2 blocks of 2 convolutions, plus the two 1x1 head convolutions
    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 2 + 2


class CountingNetwork(torch.nn.Module):
    """Wraps a network and records the batch size of every forward call."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, planes):
        self.batches.append(len(planes))
        return self.inner(planes)


def test_evaluator_makes_one_forward_per_batch():
    game = make_game("connect4")
    torch.manual_seed(0)
    network = CountingNetwork(
        AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=1, channels=8)
    )
    evaluator = NetworkEvaluator(game, network)
    states = [game.initial_state()]
    for column in range(6):
        states.append(game.apply(states[-1], column))
    priors, values = evaluator.evaluate(states)
    assert network.batches == [7]
    assert priors.shape == (7, 7) and values.shape == (7,)
    np.testing.assert_allclose(priors.sum(axis=1), 1.0, rtol=1e-5)
    # the same numbers as one state at a time (eval mode: BatchNorm does not mix the batch)
    single = np.concatenate([evaluator.evaluate([s])[1] for s in states])
    np.testing.assert_allclose(values, single, rtol=1e-5, atol=1e-6)


def test_search_batches_leaves():
    game = make_game("connect4")
    network = CountingNetwork(
        AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=1, channels=8)
    )
    evaluator = NetworkEvaluator(game, network)
    from bellman.search import MCTS

    MCTS(game, evaluator, simulations=64, batch_size=16).search(game.initial_state())
    assert evaluator.calls == len(network.batches) <= 1 + 64 // 16 + 1
    assert max(network.batches) > 8


def test_frozen_evaluator_matches_the_network():
    game = make_game("connect4")
    torch.manual_seed(0)
    network = AlphaZeroNetwork(game.observation_shape, game.action_size, blocks=2, channels=8)
    network.eval()
    states = [game.initial_state()]
    for column in [3, 3, 2, 4, 0, 6]:
        states.append(game.apply(states[-1], column))
    eager = NetworkEvaluator(game, network).evaluate(states)
    frozen = NetworkEvaluator(game, network, frozen=True).evaluate(states)
    np.testing.assert_allclose(frozen[0], eager[0], atol=1e-5)
    np.testing.assert_allclose(frozen[1], eager[1], atol=1e-5)
