"""The connection to Ray: a local Ray on this machine's cores, or a cluster at HOST:PORT.

`connect(ray_address, workers)` is what every `backend = ray` path calls first. It imports ray
there and then (the local path never imports it), fails fast with one ConfigError line for the
three things a user gets wrong (ray not installed, an address nobody answers on, more workers than
the cluster has CPUs), and is idempotent: a process keeps one connection, so a second call with
the same address only checks `workers`.

A local Ray starts without its dashboard (on 2 cores the dashboard doubles the 5 s start); a
cluster started with `ray start --head` has one, and its address is printed on stderr.

On a cluster:
    head$   ray start --head --port=6379
    other$  ray start --address=HEAD:6379
    any$    bellman train ppo --env CartPole-v1 --set backend=ray --set ray_address=HEAD:6379
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from bellman.errors import ConfigError

#: Seconds to wait for a TCP connection to a cluster's address before giving up.
CONNECT_TIMEOUT = 3.0
#: The object store of a local Ray: small, since only observations and actions travel.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20

_address: str | None = None  # the ray_address this process is connected with


def import_ray():
    """The ray module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        message = "backend = ray needs the ray package: pip install 'bellman[ray]'"
        raise ConfigError(message) from None
    return ray


def _host_port(ray_address: str) -> tuple[str, int]:
    """("HOST", PORT) of "HOST:PORT", or a ConfigError naming the expected form."""
    host, sep, port = ray_address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"ray_address must be HOST:PORT (e.g. 10.0.0.1:6379), got '{ray_address}'; "
            f"leave it empty for a local Ray"
        )
    return host.strip("[]"), int(port)


def check_reachable(ray_address: str) -> None:
    """ConfigError unless something accepts a TCP connection at `ray_address` within
    CONNECT_TIMEOUT seconds (checked before ray.init, which would otherwise wait a minute)."""
    host, port = _host_port(ray_address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            f"ray_address {ray_address}: no Ray cluster answers there ({reason}); start one "
            f"with `ray start --head` on that machine, or leave ray_address empty for a local Ray"
        ) from None


def _use_token_if_any() -> None:
    """Join with token authentication when this machine has a Ray token (~/.ray/auth_token,
    RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH) and RAY_AUTH_MODE does not say otherwise: `ray start
    --head` turns token authentication on by default, and ray.init, unlike `ray start
    --address`, does not look for the token when it joins a cluster (Ray 2.60)."""
    try:
        from ray._private.authentication import authentication_token_setup as setup
    except ImportError:  # a Ray without token authentication
        return
    quiet = logging.getLogger(setup.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its "token authentication is enabled" warning
    try:
        setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


def cluster_cpus() -> int:
    """CPUs of the connected cluster, summed over its nodes."""
    return int(import_ray().cluster_resources().get("CPU", 0))


def _check_workers(workers: int, cpus: int, where: str) -> None:
    if workers > cpus:
        raise ConfigError(
            f"workers = {workers} but {where} has {cpus} CPUs; set workers <= {cpus} "
            f"(or join a bigger cluster with ray_address)"
        )


def connect(ray_address: str, workers: int) -> None:
    """Connect this process to Ray: `ray_address` "" starts a local Ray on this machine's cores,
    "HOST:PORT" joins a running cluster. A second call with the same address (or any call
    after the caller started Ray itself) keeps the connection and only checks `workers`.

    Raises:
        ConfigError: ray is not installed, nothing answers at `ray_address`, the process is
            already connected elsewhere, or `workers` exceeds the cluster's CPUs.
    """
    global _address
    ray = import_ray()
    if ray_address:
        _host_port(ray_address)  # a malformed address is refused whatever is connected
    if ray.is_initialized():
        if _address is not None and _address != ray_address:
            raise ConfigError(
                f"this process is connected to Ray at '{_address or 'a local Ray'}'; it cannot "
                f"also join '{ray_address or 'a local Ray'}'"
            )
        _check_workers(workers, cluster_cpus(), "the Ray cluster")
        return
    if ray_address:
        check_reachable(ray_address)
        _use_token_if_any()
    else:  # a local Ray gets this machine's cores: refuse before paying for its start
        _check_workers(workers, os.cpu_count() or 1, "this machine")
    options = dict(log_to_driver=False, configure_logging=True, logging_level="ERROR")
    try:
        if ray_address:
            context = ray.init(address=ray_address, **options)
        else:
            context = ray.init(
                address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options,
            )  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as error:
        ray.shutdown()
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = (
            "; a cluster started by `ray start` wants its token (Ray's default): copy the head's "
            "~/.ray/auth_token to this machine or set RAY_AUTH_TOKEN"
            if ray_address
            else ""
        )
        raise ConfigError(
            f"cannot connect to Ray at '{ray_address or 'local'}': {first}{hint}"
        ) from None
    _address = ray_address
    try:
        _check_workers(workers, cluster_cpus(), "the Ray cluster")
    except ConfigError:
        shutdown()
        raise
    if context.dashboard_url:
        print(f"ray: dashboard at http://{context.dashboard_url}", file=sys.stderr)


def shutdown() -> None:
    """Disconnect from Ray (a local Ray stops); the next `connect` starts afresh."""
    global _address
    _address = None
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
