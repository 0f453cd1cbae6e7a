"""Gumbel MuZero's root: Gumbel-top-k sampling, sequential halving, the improved policy.

Danihelka, Guez, Schrittwieser and Silver, "Policy improvement by planning with Gumbel", ICLR
2022 (Algorithm 2 and section 4). At the root of a search of n simulations, with the network's
logits l(a):

    1. Sample g(a) ~ Gumbel(0, 1) for every legal action (g = 0 without exploration noise);
       consider the m = min(`max_considered`, legal) actions with the largest g(a) + l(a).
    2. Sequential halving: in each of ceil(log2 m) phases, visit every action still considered
       about n / (ceil(log2 m) |considered|) times (at least once), then keep the better half by
           g(a) + l(a) + sigma(q^(a)),   sigma(q) = (c_visit + max_b N(b)) c_scale q
       with q^ the root's Q normalised to [0, 1]. The last phase takes whatever budget is left.
    3. Play A_{n+1} = argmax over the actions still considered of g(a) + l(a) + sigma(q^(a)).
    4. Train the policy towards the improved policy
           pi'(a) = softmax(l(a) + sigma(completedQ(a))),
       completedQ(a) = q^(a) for visited actions, and for the others the mixed value
           v_mix = (v^ + (sum_b N(b)) / (sum_{b: N(b) > 0} pi(b)) sum_{b: N(b) > 0} pi(b) q^(b))
                   / (1 + sum_b N(b)),
       v^ the network's value of the root (normalised like q^) and pi = softmax(l).

Below the root the search is unchanged (PUCT); the paper's deterministic non-root selection is
not used here. `GumbelRoot` is driven by `bellman.search.mcts.MCTS` (`gumbel=True`).
"""

from __future__ import annotations

import math

import numpy as np


class GumbelRoot:
    """Steps 1-4 for one search's root (the edges are the root's legal actions, by index).

    Args:
        prior: `[L]` the root's priors P(s, a) over its legal actions (l = log P).
        simulations: n, the search's simulations.
        rng: draws g; None for g = 0 (no exploration: evaluation).
        max_considered: m at most (the paper: 16).
        c_visit, c_scale: sigma's constants (the paper: 50 and 1.0).
    """

    def __init__(self, prior, simulations: int, rng, *, max_considered=16, c_visit=50.0,
                 c_scale=1.0):  # fmt: skip
        size = len(prior)
        self.logits = np.log(np.maximum(np.asarray(prior, np.float64), 1e-30))
        self.gumbel = rng.gumbel(size=size) if rng is not None else np.zeros(size)
        self.c_visit, self.c_scale = float(c_visit), float(c_scale)
        m = min(max_considered, size)
        order = np.argsort(-(self.gumbel + self.logits), kind="stable")
        self.considered = [int(i) for i in order[:m]]  # 1. Gumbel-top-k
        self.phases = max(1, math.ceil(math.log2(m))) if m > 1 else 1
        self.left = int(simulations)
        self.phase = 0
        self.queue: list[int] = []

    def sigma(self, q_hat: np.ndarray, visit_counts) -> np.ndarray:
        """sigma(q) = (c_visit + max_b N(b)) c_scale q."""
        return (self.c_visit + float(max(visit_counts))) * self.c_scale * q_hat

    def scores(self, q_hat: np.ndarray, visit_counts) -> np.ndarray:
        """g(a) + l(a) + sigma(q^(a)) for every edge."""
        return self.gumbel + self.logits + self.sigma(q_hat, visit_counts)

    def next_index(self, q_hat: np.ndarray, visit_counts) -> int:
        """Step 2: the edge the next simulation takes at the root."""
        if not self.queue:
            if self.phase > 0 and len(self.considered) > 1:  # halve by the scores
                scores = self.scores(q_hat, visit_counts)
                ranked = sorted(self.considered, key=lambda i: (-scores[i], i))
                self.considered = ranked[: max(1, math.ceil(len(ranked) / 2))]
            last = self.phase >= self.phases - 1 or len(self.considered) == 1
            remaining_phases = max(1, self.phases - self.phase)
            each = max(1, self.left // (remaining_phases * len(self.considered)))
            if last:  # the last phase spends what is left, round-robin
                each = max(1, math.ceil(self.left / len(self.considered)))
            self.queue = [i for _ in range(each) for i in self.considered]
            self.phase += 1
        self.left -= 1
        return self.queue.pop(0)

    def selected(self, q_hat: np.ndarray, visit_counts) -> int:
        """Step 3: the edge to play."""
        scores = self.scores(q_hat, visit_counts)
        return max(self.considered, key=lambda i: (scores[i], -i))

    def improved_policy(self, q_hat: np.ndarray, visit_counts, root_value_hat: float):
        """Step 4: pi' over the edges `[L]`."""
        counts = np.asarray(visit_counts, np.float64)
        pi = np.exp(self.logits - self.logits.max())
        pi /= pi.sum()
        visited = counts > 0
        total = counts.sum()
        if visited.any():
            weighted = (pi[visited] * q_hat[visited]).sum() / pi[visited].sum()
            v_mix = (root_value_hat + total * weighted) / (1.0 + total)
        else:
            v_mix = root_value_hat
        completed = np.where(visited, q_hat, v_mix)
        logits = self.logits + self.sigma(completed, visit_counts)
        policy = np.exp(logits - logits.max())
        return policy / policy.sum()
