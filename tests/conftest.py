"""Shared test setup: hypothesis profiles and fixture paths.

CI (the environment variable CI is set) uses the fast profile; a local run uses the thorough one
unless HYPOTHESIS_PROFILE names another.
"""
import os
import pathlib

from hypothesis import HealthCheck, settings

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
CONFORMANCE = FIXTURES / "conformance"

settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "thorough", max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "thorough"))
