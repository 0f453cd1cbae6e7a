"""The deep algorithms: DQN, REINFORCE, A2C and PPO (what A2C and PPO share is in
`onpolicy.py`), and the one check their learners' restores share."""

from __future__ import annotations

import numpy as np

from bellman.seeding import CUDA_RNG
from bellman.torch_state import check_arrays


def check_checkpoint_arrays(
    arrays: dict[str, np.ndarray], live: dict[str, np.ndarray], where: str
) -> None:
    """Every array of a checkpoint against the ones the live learner would save: the same keys,
    shapes and dtypes, so that nothing is missing, nothing unknown is carried along, and no
    float16 or int8 re-save passes. Two kinds are left to their own loaders: the optimizer's
    `optim/*` state (none before the first step; `torch_state.load_optimizer` checks it against
    the live parameters) and the CUDA generator (there when the run was on a GPU).

    Raises:
        CheckpointError: naming the missing or unexpected keys, or the first array that differs.
    """

    def kept(named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v for k, v in named.items() if not k.startswith("optim/") and k != CUDA_RNG}

    expected = {key: (value.shape, value.dtype) for key, value in kept(live).items()}
    check_arrays(kept(arrays), expected, where)
