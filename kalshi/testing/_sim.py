"""Launching the simulated exchange from tests (one key pair per process: RSA key
generation costs ~0.1 s, and a test suite opens many exchanges)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kalshi.auth import Signer, generate_rsa_key_pem, load_private_key
from kalshi.clock import system_wall_us
from kalshi.sim import SimExchange, open_sim_exchange
from kalshi.sim.server import WS_PATH

__all__ = ["PINNED_START_US", "shared_key_pem", "signed_headers", "sim"]

# The universe epoch of every test exchange (2026-11-25T12:00:00Z): tickers, statuses and
# anything hashed from them are the same whatever day the tests run.
PINNED_START_US = 1_795_608_000_000_000


@functools.cache
def shared_key_pem() -> bytes:
    """One RSA private key (PEM) shared by every test exchange of this process."""
    return generate_rsa_key_pem()[0]


@asynccontextmanager
async def sim(markets: int = 50, rate: float = 500.0, seed: int = 1, **options: object
              ) -> AsyncIterator[SimExchange]:  # fmt: skip
    """:func:`open_sim_exchange` with the shared test key and the pinned universe date
    (same arguments)."""
    options.setdefault("private_key_pem", shared_key_pem())
    options.setdefault("start_us", PINNED_START_US)
    async with open_sim_exchange(markets, rate, seed, **options) as exchange:  # type: ignore[arg-type]
        yield exchange


def signed_headers(
    exchange: SimExchange, path: str = WS_PATH, method: str = "GET", now_ms: int | None = None
) -> dict[str, str]:
    """The three ``KALSHI-ACCESS-*`` headers for ``method path`` with the exchange's key."""
    signer = Signer(exchange.key_id, load_private_key(exchange.private_key_pem.decode()))
    return signer.headers(method, path, system_wall_us() // 1000 if now_ms is None else now_ms)
