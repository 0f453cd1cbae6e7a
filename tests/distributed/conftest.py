"""What the Ray tests share: one local Ray, started by the first test that asks for it and shut
down when the tests of this package are done, instead of one start (5-8 s on 2 cores) per
module. The package's tests run on one pytest-xdist worker, one after another (tests/conftest.py
`shared_fixture_scope`); an idle Ray's ten processes use about 3% of a core, which the rest of
the suite then has."""

from __future__ import annotations

import pytest

from bellman.distributed import cluster


@pytest.fixture(scope="package")
def local_ray():
    """A local Ray on 2 CPUs (a second `connect` with the same address is a no-op)."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    cluster.connect("", 2)
    yield
    cluster.shutdown()
