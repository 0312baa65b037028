"""The exchange's URL paths (kalshi-api.md §1: hosts and paths; signed as the full path)."""

from __future__ import annotations

from typing import Final

__all__ = ["REST_ROOT", "WS_PATH"]

REST_ROOT: Final = "/trade-api/v2"
"""Path prefix of every REST endpoint."""

WS_PATH: Final = "/trade-api/ws/v2"
"""Path of the WebSocket endpoint (also what a WebSocket handshake signs)."""
