"""Shared test setup: hypothesis profiles and fixture paths.

Every run uses the fast profile ("ci") unless asked for another: `pytest --hypothesis-profile=thorough`
(or HYPOTHESIS_PROFILE=thorough) runs the thorough one. CI and a newcomer's first run are the same run.
"""
import os
import pathlib
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
CONFORMANCE = FIXTURES / "conformance"

settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "thorough", max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))   # --hypothesis-profile overrides this


@pytest.fixture
def compile_cache_dir(tmp_path, monkeypatch):
    """A private, empty on-disk compile cache for one test (KCOMPILE_CACHE_DIR)."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("KCOMPILE_CACHE_DIR", str(directory))
    monkeypatch.setenv("KCOMPILE_CACHE", "1")
    return directory


def assert_trains_like(compiled, eager, x, y, steps):
    """`steps` train_on_batch calls give the compiled model the eager one's losses and weights
    (the reference interpreter runs the eager one; both start from the same weights)."""
    eager.set_weights(compiled.get_weights())
    for _ in range(steps):
        lc, le = compiled.train_on_batch(x, y), eager.train_on_batch(x, y)
        assert abs(lc - le) < 1e-4 * max(1.0, abs(le))
    for wc, we in zip(compiled.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(wc, we, rtol=1e-4, atol=1e-5)


def run_in_threads(workers, jobs):
    """Run `workers` threads at once, thread i running jobs[i % len(jobs)]; fail with every error
    any of them raised."""
    errors = []

    def run(job):
        try:
            job()
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(jobs[i % len(jobs)],)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
