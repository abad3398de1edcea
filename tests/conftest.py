"""Shared fixtures: one real local Ray cluster for the tests that need it."""

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """Start a local Ray cluster with 2 CPUs for the session; yields its address for drivers."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
