"""Imports every command module so each registers itself on ``app``."""

from kalshi.cli import (  # noqa: F401
    check,
    db,
    dedup,
    demo,
    gather,
    replay,
    sim,
    snapshot,
    status,
)
