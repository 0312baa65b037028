"""A skewed local clock: a refused signature says the clock is off and by how much
(issue 18 item 6), over REST and over the WebSocket handshake, against the simulator."""

from __future__ import annotations

import pytest
import trio

from kalshi.auth import Signer, load_private_key
from kalshi.errors import AuthError, HttpError
from kalshi.net import RestClient, get_transport
from kalshi.net.clock import clock_hint
from kalshi.testing import PINNED_START_US, sim

NOW_US = PINNED_START_US  # the exchange's clock, held still: its Date header is exact
AHEAD = "; the local clock is 3600 s ahead of the exchange's (its Date header): correct the system clock (NTP)"  # noqa: E501


async def test_rest_401_from_a_clock_an_hour_ahead_names_the_skew() -> None:
    async with sim(markets=3, rate=1.0, port=0, clock=lambda: NOW_US) as exchange:
        signer = Signer(exchange.key_id, load_private_key(exchange.private_key_pem.decode()))
        ahead = RestClient(
            exchange.rest_url, signer, attempts=1, wall_us=lambda: NOW_US + 3_600_000_000
        )
        with trio.fail_after(30):
            async with ahead:
                with pytest.raises(HttpError) as caught:
                    await ahead.get("/markets")
    assert caught.value.status == 401
    assert str(caught.value).endswith("timestamp outside the allowed window" + '"}}' + AHEAD), str(
        caught.value
    )


async def test_websocket_401_from_a_clock_behind_names_the_skew() -> None:
    async with sim(markets=3, rate=1.0, port=0, clock=lambda: NOW_US) as exchange:
        signer = Signer(exchange.key_id, load_private_key(exchange.private_key_pem.decode()))
        behind_us = NOW_US - 90_000_000
        headers = signer.headers("GET", exchange.ws_url, behind_us // 1000)
        connect = get_transport("trio-websocket")
        with trio.fail_after(30), pytest.raises(AuthError) as caught:
            async with connect(exchange.ws_url, headers, 1 << 20):
                pass
    error = caught.value
    assert str(error) == "websocket handshake rejected with HTTP 401"
    assert "timestamp outside the allowed window" in error.body
    assert clock_hint(error.server_date, error.body, behind_us) == (
        "; the local clock is 90 s behind the exchange's (its Date header):"
        " correct the system clock (NTP)"
    )


def test_a_401_with_a_right_clock_blames_nothing() -> None:
    assert clock_hint("Wed, 25 Nov 2026 12:00:00 GMT", '{"error":"bad signature"}', NOW_US) == ""
    assert clock_hint("", "the timestamp is too old", NOW_US) == (
        "; the exchange says the request timestamp is outside its window:"
        " check the local clock (NTP)"
    )
