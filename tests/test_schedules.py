"""Schedules: exact values at hand-picked steps."""

import pytest

from bellman.schedules import make_schedule


def test_linear_anneals_over_the_fraction_then_holds():
    schedule = make_schedule("linear", 1.0, 0.1, 0.5, 1000)  # anneals over 500 steps
    assert schedule(0) == 1.0
    assert schedule(250) == pytest.approx(0.55)
    assert schedule(500) == pytest.approx(0.1)
    assert schedule(900) == pytest.approx(0.1)


def test_exponential_is_geometric():
    schedule = make_schedule("exponential", 1.0, 0.01, 1.0, 100)
    assert schedule(50) == pytest.approx(0.1)
    assert schedule(100) == pytest.approx(0.01)


def test_constant_and_unknown():
    assert make_schedule("constant", 0.3, 0.0, 1.0, 10)(7) == 0.3
    with pytest.raises(ValueError, match="unknown schedule kind 'cosine'"):
        make_schedule("cosine", 1.0, 0.0, 1.0, 10)
