"""TuiState -> one compact log line: the screen when stdout is not a terminal. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from kalshi.tui import _doc
from kalshi.tui import _format as fmt
from kalshi.tui.state import TuiState

__all__ = ["summary_line"]


def summary_line(state: TuiState) -> str:
    """One compact log line (used when stdout is not a terminal)."""
    if state.error is not None:
        return f"error: {state.error}"
    health = state.health
    parts: list[str] = []
    if "status" in health:
        parts.append(f"status={health['status']}")
    if "uptime_s" in health:
        parts.append(f"uptime={fmt.duration(health['uptime_s'])}")
    connections = _doc.records(health.get("connections"))
    if connections:
        live = sum(1 for c in connections if c.get("state") == "live")
        parts.append(f"conns={live}/{len(connections)}")
    if isinstance(health.get("channels"), Mapping):
        parts.append(f"msgs/s={fmt.rate(state.channels.total(list(health['channels'])))}")
    tables = health.get("tables")
    if isinstance(tables, Mapping):
        parts.append(f"rows/s={fmt.rate(state.tables.total(list(tables)))}")
        for key, label in (("queue", "queue"), ("spool_rows", "spool")):
            if any(isinstance(t, Mapping) and key in t for t in tables.values()):
                parts.append(f"{label}={fmt.count(_doc.total(tables.values(), key))}")
    for key in ("gaps", "resnapshots"):
        if key in health:
            parts.append(f"{key}={fmt.count(health[key])}")
    if connections:
        parts.append(f"reconnects={fmt.count(_doc.total(connections, 'reconnects'))}")
    markets = health.get("markets")
    if isinstance(markets, Mapping) and "tracked" in markets:
        parts.append(f"markets={fmt.count(markets['tracked'])}")
    db = health.get("db")
    if isinstance(db, Mapping) and "state" in db:
        parts.append(f"db={db['state']}")
    return " ".join(parts) if parts else "no data"
