"""The fault-injection soak: the simulator, two gatherers, the deduplicator, PostgreSQL and
an S3 server under a fault schedule, checked against the simulator's ground truth.
See ``docs/reliability.md``."""

from benchmarks.soak.run import SoakReport, run_soak

__all__ = ["SoakReport", "run_soak"]
