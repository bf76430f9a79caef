"""Settings every test shares.

Hypothesis: no per-example deadline and no "too slow" health check. The suite runs in parallel
workers on a busy 2-core machine, where an example can wait its turn for the CPU far longer
than Hypothesis' 200 ms default; the properties themselves are unchanged (a test that needs a
time bound says so itself)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "tandem",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("tandem")
