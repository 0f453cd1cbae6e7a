"""PPO and A2C with their envs on Ray actors: bit for bit the single-process run with the same
n_envs (normalisation statistics included), through a killed actor and through a checkpoint and
--resume. One local Ray (2 CPUs at most) serves the whole module."""

from __future__ import annotations

import functools
import itertools
import os
import signal

import gymnasium
import numpy as np
import pytest
import torch

from bellman import api
from bellman.envs import make_env
from bellman.errors import ConfigError
from tests.conftest import _final_state

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'bellman[ray]'")

from bellman.distributed import cluster  # noqa: E402
from bellman.distributed.rollout import RayVectorEnv  # noqa: E402

torch.set_num_threads(1)

STEPS = 1024
PPO = ["n_envs=4", "n_steps=32", "minibatch_size=64", "n_epochs=2", "hidden_size=16",
       "anneal=false", "log_every=128", "checkpoint_every=512",
       "normalize_observations=true", "normalize_rewards=true"]  # fmt: skip
ON_RAY = ["backend=ray", "workers=2"]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The reference: PPO on CartPole, 4 envs in one process, 1024 steps, observations and
    rewards normalised with statistics the 4 envs share."""
    run_dir = tmp_path_factory.mktemp("local") / "run"
    api.train("ppo", "CartPole-v1", overrides=[*PPO, f"steps={STEPS}"], run_dir=run_dir,
              quiet=True)  # fmt: skip
    return _final_state(run_dir, STEPS)


def assert_same_run(state, expected) -> None:
    """Every array of the final checkpoint equal (torch.equal), metrics.csv rows equal except the
    timing columns, episodes.csv equal."""
    arrays, metrics, episodes = state
    assert set(arrays) == set(expected[0])
    for key, value in expected[0].items():
        assert torch.equal(torch.from_numpy(arrays[key]), torch.from_numpy(value)), key
    assert metrics == expected[1]
    assert episodes == expected[2]


def test_ppo_on_ray_actors_is_the_single_process_run_bit_for_bit(
    local_ray, single_process, tmp_path
):
    run = api.train("ppo", "CartPole-v1", overrides=[*PPO, *ON_RAY, f"steps={STEPS}"],
                    run_dir=tmp_path / "ray", quiet=True)  # fmt: skip
    assert run.config.backend == "ray"
    assert {"normalize/obs_mean", "normalize/return_var"} <= set(single_process[0])
    assert_same_run(_final_state(tmp_path / "ray", STEPS), single_process)
    cluster.connect("", 2)  # connected already: a no-op
    with pytest.raises(ConfigError, match="workers = 3 but the Ray cluster has 2 CPUs"):
        cluster.connect("", 3)


def test_a_killed_actor_is_restarted_and_the_run_goes_on_unchanged(
    local_ray, single_process, tmp_path, monkeypatch, capfd
):
    step, calls = RayVectorEnv.step, itertools.count()

    def step_and_kill(self, actions):  # SIGKILL actor 1's process before the 100th step
        if next(calls) == 100:
            os.kill(self.actor_pids()[1], signal.SIGKILL)
        return step(self, actions)

    monkeypatch.setattr(RayVectorEnv, "step", step_and_kill)
    api.train("ppo", "CartPole-v1", overrides=[*PPO, *ON_RAY, f"steps={STEPS}"],
              run_dir=tmp_path / "ray", quiet=True)  # fmt: skip
    assert "warning: Ray actor 1 (envs 2-3) was lost" in capfd.readouterr().err
    # its envs were reset with their seeds and replayed: the run is the one nothing happened to
    assert_same_run(_final_state(tmp_path / "ray", STEPS), single_process)


def test_a_ray_run_resumed_from_its_checkpoint_ends_as_the_run_that_never_stopped(
    local_ray, single_process, tmp_path
):
    run_dir = tmp_path / "ray"
    api.train("ppo", "CartPole-v1", overrides=[*PPO, *ON_RAY, f"steps={STEPS // 2}"],
              run_dir=run_dir, quiet=True)  # fmt: skip
    api.resume(run_dir, steps=STEPS, quiet=True)
    # the uninterrupted Ray run is the single-process run (the first test)
    assert_same_run(_final_state(run_dir, STEPS), single_process)


def test_a2c_steps_its_envs_on_ray_as_in_one_process(local_ray, tmp_path):
    # 3 envs on 2 actors: blocks of 2 and 1 envs, put back together in env order
    overrides = ["n_envs=3", "n_steps=8", "hidden_size=16", "steps=480", "log_every=240",
                 "checkpoint_every=480"]  # fmt: skip
    api.train("a2c", "CartPole-v1", overrides=overrides, run_dir=tmp_path / "one", quiet=True)
    api.train("a2c", "CartPole-v1", overrides=[*overrides, "backend=ray", "workers=2"],
              run_dir=tmp_path / "ray", quiet=True)  # fmt: skip
    assert_same_run(_final_state(tmp_path / "ray", 480), _final_state(tmp_path / "one", 480))


def test_an_env_the_actors_cannot_build_is_one_error(local_ray):
    # registered in this process only: the actors' processes do not know the id
    env_id = "bellman-test/DriverOnly-v0"
    gymnasium.register(env_id, entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    message = f"the Ray actors could not build the env: .*unknown environment '{env_id}'"
    with pytest.raises(ConfigError, match=message):
        RayVectorEnv(functools.partial(make_env, env_id), 2, 2)


# ---- acting = actors: the actors run pi_theta for the whole rollout ------------------------
ACTORS = [*ON_RAY, "acting=actors"]


@pytest.fixture(scope="module")
def on_actors(local_ray, tmp_path_factory):
    """PPO's 4 envs on 2 actors that run pi_theta themselves, 1024 steps, as `single_process`."""
    run_dir = tmp_path_factory.mktemp("actors") / "run"
    api.train("ppo", "CartPole-v1", overrides=[*PPO, *ACTORS, f"steps={STEPS}"], run_dir=run_dir,
              quiet=True)  # fmt: skip
    return _final_state(run_dir, STEPS)


def test_the_moments_an_actor_returns_are_those_of_what_it_saw():
    from bellman.distributed.rollout import new_moments, statistics
    from bellman.envs import RunningMeanStd

    rng = np.random.default_rng(0)
    rms, seen = RunningMeanStd(shape=(3,)), rng.normal(2.0, 3.0, (50, 3))
    rms.update(rng.normal(size=(200, 3)))
    base = statistics({"obs": rms})["obs"]
    for x in seen:  # one observation a step, as NormalizeObservation feeds it
        rms.update(x[None])
    mean, var, count = new_moments(base, statistics({"obs": rms})["obs"])
    assert count == 50
    np.testing.assert_allclose(mean, seen.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(var, seen.var(axis=0), rtol=1e-9)
    assert new_moments(base, base) is None


def test_actors_that_act_count_every_observation_once(on_actors, single_process):
    arrays, metrics, episodes = on_actors
    # not the one-process run (the actions come from the actors' generators) ...
    assert not np.array_equal(arrays["policy/value_head.weight"],
                              single_process[0]["policy/value_head.weight"])  # fmt: skip
    # ... but every observation went into the statistics once, as there: the 1024 steps' and
    # the first ones of every episode (autoresets and the 4 envs' seeded resets at steps 0 and
    # 512, the checkpoint); every reward into the return statistics once
    for arrays_, episodes_ in ((arrays, episodes), (single_process[0], single_process[2])):
        finished = len(episodes_.strip().splitlines()) - 1
        assert arrays_["normalize/obs_count"] == pytest.approx(STEPS + finished + 2 * 4 + 1e-4)
        assert arrays_["normalize/return_count"] == pytest.approx(STEPS + 1e-4)
    # episodes logged at steps of the 4 envs, in order, their lengths within the run
    rows = [line.split(",") for line in episodes.strip().splitlines()[1:]]
    steps = [int(row[1]) for row in rows]
    assert steps == sorted(steps) and all(step % 4 == 0 for step in steps)
    assert len(rows) > 20 and sum(int(row[3]) for row in rows) <= STEPS
    assert [int(row["step"]) for row in metrics][-1] == STEPS


def test_actors_that_act_resume_from_a_checkpoint_as_the_run_that_never_stopped(
    on_actors, tmp_path
):
    run_dir = tmp_path / "ray"
    api.train("ppo", "CartPole-v1", overrides=[*PPO, *ACTORS, f"steps={STEPS // 2}"],
              run_dir=run_dir, quiet=True)  # fmt: skip
    api.resume(run_dir, steps=STEPS, quiet=True)
    # a seeded run is reproducible, and a resumed one the run that never stopped, bit for bit
    assert_same_run(_final_state(run_dir, STEPS), on_actors)


def test_ppo_learns_cartpole_with_actors_that_act_through_a_killed_actor(
    local_ray, tmp_path, monkeypatch, capfd
):
    from bellman.distributed.rollout import RayActingEnv

    run_policy, calls = RayActingEnv.run_policy, itertools.count()

    def kill_then_run(self, learner, rollout, run):  # SIGKILL actor 0 before the 3rd rollout
        if next(calls) == 2:
            os.kill(self.actor_pids()[0], signal.SIGKILL)
        return run_policy(self, learner, rollout, run)

    monkeypatch.setattr(RayActingEnv, "run_policy", kill_then_run)
    # the tuned config's 8 envs on 2 actors: 12k steps from a random policy's ~22 a game
    run = api.train("ppo", "CartPole-v1", overrides=[*ACTORS, "steps=12000", "log_every=4096"],
                    run_dir=tmp_path / "ray", quiet=True)  # fmt: skip
    assert "warning: Ray actor 0 (envs 0-3) was lost" in capfd.readouterr().err
    assert run.episode_return_mean > 80, run.episode_return_mean  # seed 0: 108.0
    metrics = _final_state(tmp_path / "ray", 12032)[1]
    assert [int(row["step"]) for row in metrics][-1] == 12032


def test_acting_by_actors_needs_ray_and_the_host_rollout(tmp_path):
    with pytest.raises(ConfigError, match="acting = actors runs the policy in Ray actors"):
        api.train("ppo", "CartPole-v1", overrides=["acting=actors"], run_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="device_rollout keeps the rollout"):
        api.train("ppo", "CartPole-v1", overrides=[*ACTORS, "device_rollout=true"],
                  run_dir=tmp_path / "b")  # fmt: skip
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
