"""Evaluation: run a policy for N seeded episodes and summarise the returns.

Episode i starts from `env.reset(seed=seed + i)`, so two policies evaluated with the same seed
face exactly the same start states (and, in stochastic envs, the same random streams as far as
their actions agree). Returns are the environment's own rewards, summed without discounting.

`TrainingEvaluation` is evaluation during training: every `eval_every` env steps a deep
algorithm's loop evaluates its policy this way on an env of its own, logs the mean, and (with
`stop_when_solved`) stops once it reaches the env's reward threshold.

`record_gif` plays one such episode and writes what `env.render()` shows as an animated GIF.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from bellman.checkpoint import atomic_write
from bellman.errors import ConfigError
from bellman.loop import crossed

#: A GIF keeps at most this many frames; longer episodes keep every k-th frame (see record_gif).
MAX_GIF_FRAMES = 500


def run_episode(policy: Callable[[Any], int], env: gym.Env, seed: int) -> tuple[float, int]:
    """Play one episode from `env.reset(seed=seed)`; returns (return, length)."""
    obs, _ = env.reset(seed=seed)
    total, length = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += float(reward)
        length += 1
        if terminated or truncated:
            return total, length


def evaluate(policy: Callable[[Any], int], env: gym.Env, *, episodes: int, seed: int = 0):
    """Mean, std, min and max of the return over `episodes` seeded episodes.

    Returns:
        {"mean", "std", "min", "max", "episodes", "seed", "length_mean", "returns"}.
    """
    results = [run_episode(policy, env, seed + i) for i in range(episodes)]
    returns = np.array([r for r, _ in results], dtype=np.float64)
    lengths = np.array([n for _, n in results], dtype=np.float64)
    return {
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "episodes": int(episodes),
        "seed": int(seed),
        "length_mean": float(lengths.mean()),
        "returns": returns.tolist(),
    }


# ---- evaluation during training -----------------------------------------------------------
def reward_threshold(config, eval_env: gym.Env | None) -> float | None:
    """The return at which the env counts as solved, when `config.stop_when_solved` asks for it."""
    if not config.stop_when_solved:
        return None
    threshold = eval_env.spec.reward_threshold if eval_env.spec is not None else None
    if threshold is None:
        raise ConfigError(
            f"stop_when_solved: gymnasium gives '{config.env}' no reward_threshold; "
            "turn stop_when_solved off and choose steps instead"
        )
    return float(threshold)


def evaluate_during_training(policy, eval_env: gym.Env, config) -> float:
    """Mean return of `policy` over `config.eval_episodes` episodes, seeded apart from the
    training episodes and the same at every evaluation of a run (so evaluations compare)."""
    seed = 1_000_000 + config.seed * 1000
    return evaluate(policy, eval_env, episodes=config.eval_episodes, seed=seed)["mean"]


class TrainingEvaluation:
    """Evaluation during training: every `config.eval_every` env steps (0: never), the mean return
    of `config.eval_episodes` episodes on an env of its own; the metrics columns
    `eval_return_mean` and `eval_seconds`; and, with `config.stop_when_solved`, whether that mean
    reached the env's reward threshold.

    Args:
        config: has eval_every, eval_episodes, stop_when_solved, seed and env.
        make_eval_env: builds the evaluation env (called once, only when eval_every > 0).
    """

    def __init__(self, config, make_eval_env: Callable[[], gym.Env]):
        self.config = config
        self.env = make_eval_env() if config.eval_every else None
        self.threshold = reward_threshold(config, self.env)
        self.seconds = 0.0
        #: The mean return of the evaluation at the current step; None when there was none.
        self.result: float | None = None

    def due(self, before: int, after: int) -> bool:
        """Whether a multiple of eval_every lies in (before, after]: call once per step of the
        loop, before `run` (it forgets the previous step's result)."""
        self.result = None
        return self.env is not None and crossed(before, after, self.config.eval_every) > 0

    def run(self, policy) -> float:
        """Evaluate `policy` (obs -> action) now; the mean return."""
        started = time.perf_counter()
        self.result = evaluate_during_training(policy, self.env, self.config)
        self.seconds += time.perf_counter() - started
        return self.result

    def columns(self) -> dict[str, float]:
        """This step's evaluation columns (eval_return_mean NaN when it had no evaluation);
        nothing when evaluation is off, so every row of a run has the same columns."""
        if self.env is None:
            return {}
        result = math.nan if self.result is None else self.result
        return {"eval_return_mean": result, "eval_seconds": self.seconds}

    def solved(self) -> bool:
        """Whether the evaluation at this step reached the reward threshold (stop_when_solved)."""
        return (
            self.threshold is not None
            and self.result is not None
            and (self.result >= self.threshold)
        )

    def solved_note(self, step: int) -> str:
        """The line the CLI prints when the run stops because it solved the env."""
        return (
            f"solved: evaluation mean {self.result:g} >= reward threshold {self.threshold:g} "
            f"of {self.config.env} at step {step}"
        )

    def close(self) -> None:
        if self.env is not None:
            self.env.close()


# ---- GIFs ----------------------------------------------------------------------------------
def check_gif_path(path: Path) -> None:
    """Raise ConfigError unless `path` ends in .gif and its directory exists."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ConfigError(f"GIF path '{path}' must end in .gif")
    if not path.parent.is_dir():
        raise ConfigError(
            f"cannot write GIF '{path}': directory '{path.parent}' does not exist; create it first"
        )


def _check_gif_args(env: gym.Env, path: Path, max_frames: int, fps: int) -> None:
    """Raise ConfigError for a GIF that cannot be recorded, before playing anything."""
    check_gif_path(path)
    if env.render_mode != "rgb_array":
        raise ConfigError(
            f"recording a GIF needs an env made with render_mode='rgb_array', "
            f"got render_mode={env.render_mode!r}; "
            f"make it with make_env(id, render_mode='rgb_array')"
        )
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2:
        raise ConfigError(f"max_frames must be an integer >= 2, got {max_frames!r}")
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 100:
        raise ConfigError(f"fps must be an integer in [1, 100], got {fps!r}")


def _render(env: gym.Env) -> np.ndarray:
    """`env.render()` as a uint8 [H, W, 3] array (checked: a wrong render is a clear error)."""
    frame = env.render()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ConfigError(
            f"env.render() must return an RGB array [H, W, 3] to record a GIF, got {type(frame)}"
            + (f" of shape {frame.shape}" if isinstance(frame, np.ndarray) else "")
        )
    return np.ascontiguousarray(frame[:, :, :3], dtype=np.uint8)


def _palette_image(frame: np.ndarray):
    """A frame as a 256-colour Pillow image (what a GIF stores; a third of the RGB memory).

    Fast octree quantisation: about 4x faster than Pillow's default adaptive palette, and exact
    for game screens, which use far fewer than 256 colours.
    """
    from PIL import Image

    return Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.FASTOCTREE)


def record_gif(
    policy: Callable[[Any], Any],
    env: gym.Env,
    path: str | Path,
    *,
    seed: int = 0,
    max_frames: int = 2000,
    fps: int = 30,
) -> dict[str, Any]:
    """Play one episode from `env.reset(seed=seed)` and write its rendered frames as a GIF.

    The frames are `env.render()` after the reset and after every step (for Atari envs the
    full-colour game screen, not the agent's grey 84x84 view). Recording stops when the episode
    ends or after `max_frames` frames. To keep the file small a GIF holds at most
    `MAX_GIF_FRAMES` (500) frames: when an episode is longer, only every k-th frame is kept (k a
    power of two, doubled whenever the kept frames would exceed the limit, so memory stays bounded
    too) plus the final one, and each kept frame is shown k times as long, so the GIF still plays
    at the episode's real speed. The file is built in memory and written atomically.

    Args:
        policy: observation -> action.
        env: made with `render_mode="rgb_array"`.
        path: where to write; must end in `.gif` and its directory must exist.
        seed: the reset seed, as in `evaluate`.
        max_frames: the most frames to play (the reset frame included).
        fps: playback speed of the episode (GIF delays are whole hundredths of a second).

    Returns:
        {"frames": frames kept for the GIF, "steps": steps played, "return": undiscounted
        return, "path": str(path)}. (Pillow stores identical consecutive frames once, with the
        summed delay, so the file's `n_frames` can be smaller than "frames".)

    Raises:
        ConfigError: a path that does not end in .gif or whose directory is missing, an env not
            rendering RGB arrays, or bad max_frames/fps.
    """
    path = Path(path)
    _check_gif_args(env, path, max_frames, fps)
    obs, _ = env.reset(seed=seed)
    kept = [_palette_image(_render(env))]  # frames 0, stride, 2 * stride, ... of the episode
    stride, steps, total = 1, 0, 0.0
    while steps + 1 < max_frames:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += float(reward)
        steps += 1
        frame = _render(env)
        if steps % stride == 0:
            kept.append(_palette_image(frame))
            if len(kept) > MAX_GIF_FRAMES:  # too many: keep every 2nd, double the stride
                kept, stride = kept[::2], stride * 2
        if terminated or truncated:
            break
    if steps % stride != 0:  # the final frame is off the stride: show how it ended anyway
        kept.append(_palette_image(frame))
        if len(kept) > MAX_GIF_FRAMES:
            del kept[-2]
    buffer = io.BytesIO()
    kept[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=kept[1:],
        duration=max(10, round(1000 * stride / fps)),
        loop=0,
    )
    atomic_write(path, buffer.getvalue())
    return {"frames": len(kept), "steps": steps, "return": total, "path": str(path)}
