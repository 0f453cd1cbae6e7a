"""Environments: the lectures' finite MDPs registered with gymnasium, and `make_env`.

Ours are registered under the `bellman/` namespace, so `gymnasium.make("bellman/Recycling-v0")`
works as soon as `bellman` is imported. `make_env` wraps `gymnasium.make` with the errors a user
needs: an unknown id gets a "did you mean" and the list of ids, a deprecated one names its
replacement.

Atari games come from ale-py under ids like `ALE/Pong-v5`. ale-py registers them when it is
imported, which `make_env` does the first time it sees an `ALE/` id (so `import bellman` stays
free of the emulator); `bellman.envs.atari.make_atari_env` adds DeepMind's preprocessing.

The deep algorithms step a gymnasium vector env that resets finished environments in the same
step (`AutoresetMode.SAME_STEP`): the observation an episode ended on is then in
`infos["final_obs"]` (`final_observations`) and the episode's raw return in
`infos["final_info"]["episode"]` (from `RecordEpisodeStatistics`, `log_episodes`). Their
normalisation wrappers share one `RunningMeanStd` across the N envs.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
from gymnasium.wrappers.utils import RunningMeanStd as _GymnasiumRunningMeanStd

from bellman.errors import ConfigError, unknown

#: id -> (entry point, max_episode_steps); the time limits are the lectures' episode lengths.
LECTURE_ENVS = {
    "bellman/Recycling-v0": ("bellman.envs.lectures:RecyclingEnv", 3),
    "bellman/Corridor-v0": ("bellman.envs.lectures:CorridorEnv", 100),
    "bellman/MineField-v0": ("bellman.envs.lectures:MineFieldEnv", 100),
    "bellman/ExplorationTrap-v0": ("bellman.envs.lectures:ExplorationTrapEnv", 1),
}
#: id -> entry point of the hard-exploration tasks (episodes end by themselves; no P table).
EXPLORATION_ENVS = {"bellman/DeepSea-v0": "bellman.envs.deep_sea:DeepSeaEnv"}

#: Action names of gymnasium's finite envs, for readable tables (ours carry their own).
ACTION_NAMES = {
    "Taxi": ["south", "north", "east", "west", "pickup", "dropoff"],
    "FrozenLake": ["left", "down", "right", "up"],
    "FrozenLake8x8": ["left", "down", "right", "up"],
    "CliffWalking": ["up", "right", "down", "left"],
}


def register_envs() -> None:
    """Register the lectures' environments with gymnasium (idempotent)."""
    for env_id, (entry_point, max_steps) in LECTURE_ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=max_steps)
    for env_id, entry_point in EXPLORATION_ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point)


register_envs()


def make_env(env_id: str, **kwargs) -> gym.Env:
    """`gymnasium.make(env_id, **kwargs)` with clear errors for unknown or deprecated ids.

    `ALE/` ids register ale-py's games first (see `bellman.envs.atari`).

    Raises:
        ConfigError: the id is unknown or deprecated (the message names the replacement), or an
            Atari id without ale-py installed.
    """
    if env_id not in gym.registry and env_id.startswith("ALE/"):
        from bellman.envs.atari import register_atari

        register_atari()
    if env_id not in gym.registry:
        if not env_id.startswith("ALE/") and _is_atari_game(f"ALE/{env_id}"):
            raise ConfigError(
                f"unknown environment '{env_id}' (did you mean 'ALE/{env_id}'?); "
                f"Atari games are named ALE/<Game>-v5"
            )
        name, _, version = env_id.rpartition("-v")
        versions = sorted(
            int(key.rpartition("-v")[2])
            for key in gym.registry
            if key.rpartition("-v")[0] == name and key.rpartition("-v")[2].isdigit()
        )
        if name and version.isdigit() and versions:
            replacement = f"{name}-v{versions[-1]}"
            status = "deprecated" if int(version) < versions[-1] else "not a known version"
            raise ConfigError(
                f"environment '{env_id}' is {status} in gymnasium {gym.__version__}; "
                f"use {replacement}"
            )
        raise unknown("environment", env_id, _candidates(env_id), hint="see `bellman envs`")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return gym.make(env_id, **kwargs)
    except gym.error.DeprecatedEnv as error:
        raise ConfigError(f"environment '{env_id}' is deprecated: {error}") from None
    except gym.error.DependencyNotInstalled as error:
        raise ConfigError(f"environment '{env_id}' needs a missing package: {error}") from None


def _is_atari_game(env_id: str) -> bool:
    """True when ale-py is installed and registers `env_id` (imports ale-py: error paths only)."""
    from bellman.envs.atari import atari_available

    return atari_available() and env_id in gym.registry


def _is_ale(env_id: str) -> bool:
    """True for every id ale-py registers: `ALE/...-v5` and the legacy `Pong-v4` family."""
    entry_point = gym.registry[env_id].entry_point
    return isinstance(entry_point, str) and entry_point.startswith("ale_py")


def _candidates(env_id: str) -> list[str]:
    """The ids to suggest for an unknown `env_id`: Atari ids for `ALE/...`, the others otherwise."""
    if env_id.startswith("ALE/"):
        return [key for key in gym.registry if key.startswith("ALE/")]
    return [key for key in gym.registry if not _is_ale(key)]


def env_catalog() -> list[tuple[str, str, str]]:
    """(id, family, note) for every environment bellman can train on, ours first: the lectures'
    MDPs, the board games (family "board game", the names `bellman train alphazero --env` and
    `bellman play` take), then gymnasium's.

    Atari games (family "atari", `ALE/...-v5` only) are listed when ale-py is installed; the
    legacy `Pong-v4`/`PongNoFrameskip-v4` ids it also registers are left out.
    """
    from bellman.envs.atari import atari_available

    rows = []
    for env_id in LECTURE_ENVS:
        rows.append((env_id, "lectures", "finite MDP (bellman plan works)"))
    for env_id in EXPLORATION_ENVS:
        rows.append((env_id, "exploration", "sparse reward: try ppo with intrinsic = rnd"))
    from bellman.games import GAMES

    for name in GAMES:
        rows.append((name, "board game", "two-player: alphazero, play, move"))
    has_atari = atari_available()
    for env_id, spec in sorted(gym.registry.items()):
        ours = env_id in LECTURE_ENVS or env_id in EXPLORATION_ENVS
        if ours or not isinstance(spec.entry_point, str) or _is_ale(env_id):
            continue
        module = spec.entry_point.split(":")[0]
        family = module.split(".")[2] if module.startswith("gymnasium.envs.") else module
        if family == "functional_jax_env" or "jax" in env_id.lower() or "phys2d" in module:
            continue
        if "toy_text" in module and env_id.startswith(("Blackjack",)):
            note = "finite observations (no P table)"
        elif "toy_text" in module:
            note = "finite MDP (bellman plan works)"
        else:
            note = ""
        rows.append((env_id, family, note))
    if has_atari:
        for env_id in sorted(key for key in gym.registry if key.startswith("ALE/")):
            rows.append((env_id, "atari", "Atari 2600 (ale-py)"))
    return rows


# ---- vector envs --------------------------------------------------------------------------
def check_vector_settings(config) -> None:
    """ConfigError for vector-env settings that cannot work (called by the algorithms' config
    validation, before anything is built): `env_threads` above this machine's cores,
    `env_overlap` where there is no Atari backend or an odd `n_envs`."""
    from bellman.envs.atari_vector import check_counts

    overlap = getattr(config, "env_overlap", False)
    if overlap and not (config.env.startswith("ALE/") and config.atari_backend == "ale_vector"):
        raise ConfigError(
            f"env_overlap steps the Atari backend's games in two groups, but '{config.env}' "
            f"{'runs on the gymnasium path' if config.env.startswith('ALE/') else 'is no ALE game'}"
            f": use an ALE/... id with atari_backend = ale_vector, or env_overlap = false"
        )
    check_counts(getattr(config, "n_envs", 1), config.env_threads, 0, 2 if overlap else 1)


def make_vector_env(config, one_env, *, training: bool = True) -> gym.vector.VectorEnv:
    """THE choice of vector env for a training run's `n_envs` environments.

    `ALE/...` ids (with `atari_backend = "ale_vector"`, the default) get ale-py's
    `AtariVectorEnv` with DeepMind's preprocessing (`envs.atari_vector.AtariVector`: C++
    threads, `env_threads`); every other env, and Atari with `atari_backend =
    "gymnasium"`, gets gymnasium's SyncVectorEnv of `one_env()` (a zero-argument env factory)
    with same-step autoreset. Both give `infos["final_obs"]` and `infos["final_info"]["episode"]`
    as `final_observations` and `log_episodes` read them.

    Args:
        config: a deep config: `env`, `frame_stack`, `env_threads`, `atari_backend`, and
            `n_envs` (1 when it has none).
        one_env: builds one env of the gymnasium path.
        training: life loss terminal and clipped rewards (Atari backend), as `one_env` does.
    """
    n_envs = getattr(config, "n_envs", 1)
    if config.env.startswith("ALE/") and config.atari_backend == "ale_vector":
        make_env(config.env).close()  # a clear error (did you mean ...) for an unknown game
        from bellman.envs.atari_vector import AtariVector

        return AtariVector(
            config.env, n_envs, training=training, frame_stack=config.frame_stack,
            env_threads=config.env_threads,
            groups=2 if getattr(config, "env_overlap", False) else 1,
        )  # fmt: skip
    return gym.vector.SyncVectorEnv(
        [one_env] * n_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


def final_observations(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """s_t+1 as each step ended: for envs reset in this step, gymnasium's `final_obs`."""
    if "_final_obs" not in infos or not infos["_final_obs"].any():
        return next_obs
    final = next_obs.copy()
    for e in np.flatnonzero(infos["_final_obs"]):
        final[e] = infos["final_obs"][e]
    return final


def log_episodes(run, step: int, infos: dict) -> None:
    """Hand the episodes that finished in this step (whole games with raw scores for Atari, from
    RecordEpisodeStatistics) to `run.log_episode(step, return, length)`."""
    final = infos.get("final_info")
    if not final or "episode" not in final:
        return
    episode = final["episode"]
    for e in np.flatnonzero(final["_episode"]):
        run.log_episode(step, float(episode["r"][e]), int(episode["l"][e]))


class RunningMeanStd(_GymnasiumRunningMeanStd):
    """gymnasium's running mean, variance and count (what NormalizeObservation/NormalizeReward
    keep), with a fast path for the one-sample batches those wrappers feed it on every step.

    The same parallel-variance update (Chan et al.) with a batch of one, x:
        delta = x - mean,  n' = n + 1,  mean' = mean + delta / n',
        var' = (var n + delta^2 n / n') / n'
    in a handful of numpy operations instead of np.mean and np.var (8x faster per step).
    Give one instance to the wrappers of all N envs and they share one set of statistics.
    """

    def update(self, x) -> None:
        x = np.asarray(x)
        if len(x) != 1:
            super().update(x)
            return
        delta = x[0] - self.mean
        total = self.count + 1
        self.mean = self.mean + delta / total
        self.var = (self.var * self.count + delta * delta * (self.count / total)) / total
        self.count = total
