"""The scale run (``just scale``, ``benchmarks/scale.py``): the whole system at full size,
measured and checked against the simulator's truth (docs/scaling.md)."""

from .run import run_scale

__all__ = ["run_scale"]
