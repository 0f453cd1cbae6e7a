"""The Ray connection's bad input, through the library and the CLI: ray not installed, an address
nobody answers on, more workers than CPUs, algorithms without a Ray path. Each is one `error:`
line, exit status 2, and no run directory; none of them starts Ray."""

from __future__ import annotations

import os
import sys
import time

import pytest

from bellman import config as configs
from bellman.algos.a2c import A2CConfig
from bellman.algos.ppo import PPOConfig
from bellman.algos.reinforce import REINFORCEConfig
from bellman.distributed import cluster
from bellman.errors import ConfigError
from tests.conftest import assert_user_error

RAY_PPO = ["train", "ppo", "--env", "CartPole-v1", "--steps", "256", "--set", "backend=ray"]


def test_without_ray_installed_the_library_and_the_cli_say_how_to_install_it(
    monkeypatch, bellman, tmp_path
):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"needs the ray package: pip install 'bellman\[ray\]'"):
        cluster.connect("", 1)
    shim = tmp_path / "shim"
    (shim / "ray").mkdir(parents=True)
    (shim / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    monkeypatch.setenv("PYTHONPATH", f"{shim}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = bellman(*RAY_PPO, "--run-dir", "run")
    assert_user_error(result, "backend = ray needs the ray package", "pip install 'bellman[ray]'")
    assert not (tmp_path / "run").exists()


def test_an_unreachable_ray_address_fails_fast_with_one_line(bellman, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    start = time.monotonic()
    result = bellman(*RAY_PPO, "--set", "ray_address=127.0.0.1:1", "--run-dir", "run")
    assert_user_error(result, "ray_address 127.0.0.1:1", "no Ray cluster answers there",
                      "ray start --head")  # fmt: skip
    assert time.monotonic() - start < 60  # no waiting on ray.init's own timeouts
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="ray_address must be HOST:PORT"):
        cluster.connect("head-without-port", 1)


def test_more_workers_than_cpus_is_refused_before_ray_starts(bellman, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    too_many = (os.cpu_count() or 1) + 1
    result = bellman(*RAY_PPO, "--set", f"n_envs={too_many}", "--set", f"workers={too_many}",
                     "--set", f"minibatch_size={too_many * 32}",
                     "--run-dir", "run")  # fmt: skip
    assert_user_error(result, f"workers = {too_many}", f"{too_many - 1} CPUs")
    assert not (tmp_path / "run").exists()


def test_settings_that_cannot_work_on_ray_name_the_fix():
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from bellman.algos.onpolicy import make_train_env

    with pytest.raises(ConfigError, match="reinforce has no Ray path.*with one: a2c, .*ppo"):
        configs.resolve(REINFORCEConfig, "reinforce", "CartPole-v1", None, ["backend=ray"])
    with pytest.raises(ConfigError, match="normalize_observations = false or backend = local"):
        configs.resolve(PPOConfig, "ppo", "CartPole-v1", None,
                        ["backend=ray", "normalize_observations=true"])  # fmt: skip
    with pytest.raises(ConfigError, match="must be one of local, ray"):
        configs.resolve(A2CConfig, "a2c", "CartPole-v1", None, ["backend=spark"])
    config, _ = configs.resolve(
        A2CConfig, "a2c", "CartPole-v1", None, ["backend=ray", "n_envs=2", "workers=3"]
    )
    with pytest.raises(ConfigError, match="workers = 3 but n_envs = 2"):
        make_train_env(config)  # refused before connecting
