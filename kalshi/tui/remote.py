"""Read a running service's ``/health`` and ``/metrics`` over HTTP, for ``kalshi status``.

A deliberate, read-only exception to ``net/`` owning every socket: two GETs on (usually)
loopback, with httpx errors translated here to :class:`~kalshi.errors.NetError` /
:class:`~kalshi.errors.HttpError` so the screen can show them and retry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from kalshi.errors import DecodeError, HttpError, NetError

__all__ = ["Remote", "health_url", "metrics_url", "open_remote"]


def health_url(url: str) -> str:
    """``http://host:8080`` -> ``http://host:8080/health`` (unchanged if it already ends so)."""
    return url if url.rstrip("/").endswith("/health") else url.rstrip("/") + "/health"


def metrics_url(url: str) -> str:
    """``http://host:9090`` -> ``http://host:9090/metrics`` (unchanged if it already ends so)."""
    return url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"


class Remote:
    """The two documents of one service. Methods raise ``NetError`` (unreachable),
    ``HttpError`` (an unexpected status) or ``DecodeError`` (not a JSON object)."""

    def __init__(self, client: httpx.AsyncClient, health: str, metrics: str | None) -> None:
        self._client = client
        self.health_url = health
        self.metrics_url = metrics

    async def _get(self, url: str, ok: tuple[int, ...]) -> httpx.Response:
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise NetError(f"cannot reach {url}: {exc}") from exc
        if response.status_code not in ok:
            raise HttpError(response.status_code, f"{url} answered {response.reason_phrase}")
        return response

    async def health(self) -> dict[str, Any]:
        # 503 is a health answer too: the service is up and says it is degraded.
        response = await self._get(self.health_url, (200, 503))
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"{self.health_url}: not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise DecodeError(f"{self.health_url}: not a JSON object")
        return document

    async def metrics(self) -> str:
        if self.metrics_url is None:
            raise ValueError("no metrics URL")
        return (await self._get(self.metrics_url, (200,))).text


@asynccontextmanager
async def open_remote(
    url: str, *, metrics: str | None = None, request_timeout: float = 5.0
) -> AsyncIterator[Remote]:
    """A :class:`Remote` for the service at ``url`` (``/health`` appended when missing)
    and, optionally, its metrics server at ``metrics``."""
    async with httpx.AsyncClient(timeout=request_timeout) as client:
        yield Remote(client, health_url(url), metrics_url(metrics) if metrics else None)
