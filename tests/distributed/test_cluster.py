"""The Ray connection: a run joins a cluster started with `ray start --head`; and its bad input,
through the library and the CLI: ray not installed, an address nobody answers on, more workers
than CPUs, algorithms without a Ray path. Each is one `error:` line, exit status 2, and no run
directory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bellman import config as configs
from bellman.algos.a2c import A2CConfig
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
    with pytest.raises(ConfigError, match="must be one of local, ray"):
        configs.resolve(A2CConfig, "a2c", "CartPole-v1", None, ["backend=spark"])
    config, _ = configs.resolve(
        A2CConfig, "a2c", "CartPole-v1", None, ["backend=ray", "n_envs=2", "workers=3"]
    )
    with pytest.raises(ConfigError, match="workers = 3 but n_envs = 2"):
        make_train_env(config)  # refused before connecting


def _processes_of(temp_dir: str) -> list[int]:
    """The ids of the processes of a Ray started with --temp-dir=temp_dir, and their children."""
    found, parents = set(), {}
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if temp_dir.encode() in command:
            found.add(int(entry.name))
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        grown = bool(children)
        found |= children
    return sorted(found)


@pytest.fixture
def head_node():
    """A one-CPU Ray cluster from `ray start --head` on a free port; stopped by killing its own
    processes (`ray stop` would stop every Ray on the machine)."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    temp_dir = tempfile.mkdtemp(prefix="bellman-ray-", dir="/tmp")  # unix sockets: a short path
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_command = str(Path(sys.executable).parent / "ray")
    started = subprocess.run(
        [ray_command, "start", "--head", f"--port={port}", "--num-cpus=1",
         f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    try:
        if started.returncode != 0:
            pytest.skip(f"`ray start --head` failed here: {started.stderr.strip()[-300:]}")
        yield f"127.0.0.1:{port}"
    finally:
        for pid in _processes_of(temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_run_joins_a_cluster_started_with_ray_start(head_node, bellman):
    on_cluster = ["train", "ppo", "--env", "CartPole-v1", "--steps", "256", "--set", "backend=ray",
                  "--set", f"ray_address={head_node}", "--set", "n_envs=2", "--set", "n_steps=64",
                  "--set", "minibatch_size=128", "--quiet"]  # fmt: skip
    trained = bellman(*on_cluster, "--set", "workers=1", "--run-dir", "run")
    assert trained.returncode == 0, trained
    assert "trained ppo on CartPole-v1 for 256 steps" in trained.stdout
    # the cluster's CPUs are known once joined: a process that only connects (no torch)
    joined = subprocess.run(
        [sys.executable, "-c", "from bellman.distributed import connect\n"
         f"connect('{head_node}', 1)\nconnect('{head_node}', 2)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "ConfigError: workers = 2 but the Ray cluster has 1 CPUs" in joined.stderr, joined.stderr
