"""What the Ray tests share: one local Ray per test process (pytest-xdist's workers each start
their own), started by the first test that asks for it and shut down at the end of the session,
instead of one start (5-8 s on 2 cores) per module."""

from __future__ import annotations

import pytest

from bellman.distributed import cluster


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray on 2 CPUs (a second `connect` with the same address is a no-op)."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    cluster.connect("", 2)
    yield
    cluster.shutdown()
