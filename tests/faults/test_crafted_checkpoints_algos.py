"""Crafted checkpoints of the deep algorithms (DQN, REINFORCE, A2C, PPO): arrays that do not fit
the live networks, optimizer, statistics, replay memory or generators, with the JSON's sha256
updated to match (so only the contents give them away), and garbage generator states or
counters in the JSON. Every `--resume` must refuse them with exit status 2 and one `error:`
line, never a SIGSEGV, a glibc abort or a traceback, and leave the run directory byte for byte
as it was.

Before the checks, tiny `optim/*` arrays made REINFORCE die in glibc ("corrupted double-linked
list") and DQN with SIGSEGV, A2C and PPO printed tracebacks, and a (31,) tensor for a (32,)
parameter was accepted by the optimizer's state.

All the crafted copies of one algorithm's run are resumed in one Python process
(`run_in_one_process`: through `bellman.cli.main`, as the `bellman` command runs), so the
module pays for torch's import once per algorithm; a crash of that process fails every case of
the algorithm.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from tests.conftest import assert_user_error, run_in_one_process, run_process
from tests.test_cli_errors import assert_unchanged, snapshot

#: algo -> (steps, settings): a run with checkpoints at steps / 2 and steps, after some updates
#: (DQN: one every 4 steps, not the CartPole config's 128 every 256, which took 26,000 updates
#: and most of the module's time), with 32-unit layers (a (32,) tensor to shrink).
RUNS = {
    "dqn": (1000, ["learning_starts=200", "buffer_size=1000", "train_frequency=4",
                   "gradient_steps=1", "batch_size=32", "hidden_size=32",
                   "target_update_interval=100"]),
    "reinforce": (1000, ["hidden_size=32"]),
    "a2c": (1000, ["n_envs=2", "n_steps=5", "hidden_size=32"]),
    "ppo": (1024, ["n_envs=2", "n_steps=64", "minibatch_size=64", "n_epochs=1", "hidden_size=32",
                   "normalize_observations=true", "normalize_rewards=true"]),
}  # fmt: skip
NETWORK = {"dqn": "q/", "reinforce": "policy/", "a2c": "policy/", "ppo": "policy/"}


# ---- crafts: (arrays, state, algo) -> None, in place ------------------------------------------
def _optim(arrays, kind=None):
    return sorted(k for k in arrays if k.startswith("optim/") and (kind is None or arrays[k].ndim))


def _network(arrays, algo):
    return sorted(k for k in arrays if k.startswith(NETWORK[algo]))


def optim_tiny(arrays, state, algo):
    """Every optimizer array replaced by one zero of its dtype (the issue's SIGSEGV)."""
    for key in _optim(arrays):
        arrays[key] = np.zeros((1,), arrays[key].dtype)


def optim_moment_31(arrays, state, algo):
    """One moment of a (.., 32) parameter cut to (.., 31)."""
    key = next(k for k in _optim(arrays, "moments") if arrays[k].shape[-1] == 32)
    arrays[key] = np.ascontiguousarray(arrays[key][..., :31])


def weight_31(arrays, state, algo):
    """A (.., 32) network tensor cut to (.., 31)."""
    key = next(k for k in _network(arrays, algo) if arrays[k].shape[-1] == 32)
    arrays[key] = np.ascontiguousarray(arrays[key][..., :31])


def float16_resave(arrays, state, algo):
    """Every float32 network and optimizer array re-saved as float16."""
    for key in [*_network(arrays, algo), *_optim(arrays)]:
        if arrays[key].dtype == np.float32:
            arrays[key] = arrays[key].astype(np.float16)


def optim_float16(arrays, state, algo):
    """Only the optimizer's moments as float16 (the network untouched)."""
    for key in _optim(arrays, "moments"):
        arrays[key] = arrays[key].astype(np.float16)


def int8_weight(arrays, state, algo):
    key = _network(arrays, algo)[0]
    arrays[key] = arrays[key].astype(np.int8)


def missing_weight(arrays, state, algo):
    del arrays[_network(arrays, algo)[-1]]


def extra_weight(arrays, state, algo):
    arrays[NETWORK[algo] + "extra.weight"] = np.zeros((3,), np.float32)


def extra_array(arrays, state, algo):
    arrays["unknown/x"] = np.zeros((3,), np.float32)


def missing_optim(arrays, state, algo):
    del arrays[_optim(arrays)[0]]


def torch_rng_short(arrays, state, algo):
    arrays["torch_rng"] = np.ascontiguousarray(arrays["torch_rng"][:100])


def garbage_numpy_rng(arrays, state, algo):
    state["numpy_rng"] = {"bit_generator": "PCG64", "state": 5}


def garbage_python_rng(arrays, state, algo):
    state["python_rng"] = [3, [1, 2, 3], None]


def garbage_counter(arrays, state, algo):
    state["updates" if algo == "dqn" else "iterations"] = "abc"


def negative_counter(arrays, state, algo):
    state["updates" if algo == "dqn" else "iterations"] = -3


def statistics_negative_variance(arrays, state, algo):
    arrays["normalize/obs_var"] = -np.abs(arrays["normalize/obs_var"]) - 1.0


def replay_position_out_of_ring(arrays, state, algo):
    arrays["replay/position"] = np.full_like(arrays["replay/position"], 10**9)


def replay_frames_float16(arrays, state, algo):
    arrays["replay/frames"] = arrays["replay/frames"].astype(np.float16)


COMMON = [optim_tiny, optim_moment_31, weight_31, float16_resave, optim_float16, int8_weight,
          missing_weight, extra_weight, extra_array, missing_optim, torch_rng_short,
          garbage_numpy_rng, garbage_python_rng, garbage_counter, negative_counter]  # fmt: skip
ONLY = {
    "dqn": [replay_position_out_of_ring, replay_frames_float16],
    "ppo": [statistics_negative_variance],
}
CASES = [(algo, craft) for algo in RUNS for craft in COMMON + ONLY.get(algo, [])]


# ---- the runs -----------------------------------------------------------------------------
def _train(root: Path, algo: str) -> Path:
    steps, settings = RUNS[algo]
    args = ["train", algo, "--env", "CartPole-v1", "--steps", str(steps), "--quiet",
            "--set", f"checkpoint_every={steps // 2}", "--set", f"log_every={steps // 4}",
            "--run-dir", "run"]  # fmt: skip
    for setting in settings:
        args += ["--set", setting]
    completed = run_process(args, root)
    assert completed.returncode == 0, completed.stderr
    return root / "run"


def _craft(run: Path, algo: str, craft) -> None:
    """Point `latest` at the first checkpoint (its logs would be truncated by a resume) and apply
    `craft` to it, sha256 updated."""
    checkpoints = run / "checkpoints"
    steps = sorted(int(path.stem.partition("-")[2]) for path in checkpoints.glob("step-*.json"))
    assert len(steps) >= 2, steps
    name = f"step-{steps[0]}"
    (checkpoints / "latest").write_text(name + "\n")
    arrays = dict(load_arrays((checkpoints / f"{name}.safetensors").read_bytes()))
    meta = json.loads((checkpoints / f"{name}.json").read_text())
    craft(arrays, meta["state"], algo)
    blob = save_arrays(arrays)
    (checkpoints / f"{name}.safetensors").write_bytes(blob)
    meta["sha256"] = hashlib.sha256(blob).hexdigest()
    (checkpoints / f"{name}.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """algo -> {craft name: (result, run dir, snapshot before)}, computed for all the
    algorithm's crafts at once on first use."""
    cache: dict[str, dict] = {}

    def results(algo: str) -> dict:
        if algo in cache:
            return cache[algo]
        root = tmp_path_factory.mktemp(algo)
        finished = _train(root, algo)
        before = {}
        for a, craft in CASES:
            if a == algo:
                run = Path(shutil.copytree(finished, root / craft.__name__))
                _craft(run, algo, craft)
                before[craft.__name__] = snapshot(run)
        commands = [(root, ["train", "--resume", name, "--quiet"]) for name in before]
        found = dict(zip(before, run_in_one_process(commands), strict=True))
        cache[algo] = {name: (found[name], root / name, before[name]) for name in before}
        return cache[algo]

    return results


@pytest.mark.parametrize(("algo", "craft"), CASES, ids=[f"{a}-{c.__name__}" for a, c in CASES])
def test_a_crafted_checkpoint_is_one_error_line_and_changes_nothing(resumed, algo, craft):
    result, run, before = resumed(algo)[craft.__name__]
    assert_user_error(result)
    assert_unchanged(run, before)
