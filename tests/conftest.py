"""Shared fixtures: one real local Ray cluster for the tests that need it."""

import pytest

pytest_plugins = ["catalog_fixtures"]  # a real two-architecture catalog: `finished`


@pytest.fixture(scope="session")
def ray_cluster():
    """Start a local Ray cluster with 2 CPUs for the session; yields its address for drivers."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def reference_run(ray_cluster, tmp_path_factory):
    """One uninterrupted run of the interruptible config: what interrupted runs must reach."""
    from helpers import CONFIG

    from mothray.experiment import run

    storage = tmp_path_factory.mktemp("reference")
    record = run(CONFIG, str(storage), progress=False)
    return storage, record
