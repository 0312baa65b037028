"""An S3 endpoint that refuses the first request fails the export at once; one that answered
and then refuses keeps every try (outside tester pbreak8 F9: `kalshi export` against a
refused endpoint took 54 s, 8 tries, before its error)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kalshi.config import S3Config
from kalshi.dedup import S3Target
from kalshi.errors import ExportError
from kalshi.testing.s3server import S3Server


def _refused_endpoint() -> str:
    """An http address on this host where nothing listens (a port bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_a_refused_first_request_is_not_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = _refused_endpoint()
    s3 = S3Config(
        enabled=True, endpoint=endpoint, access_key="k", secret_key="s", bucket="kalshi-f9"
    )
    target = S3Target(s3, attempts=3, backoff=0.01)
    with pytest.raises(ExportError) as caught:
        await target.keys("raw/")
    assert str(caught.value) == (
        "cannot list s3://kalshi-f9/raw/: Could not connect to the endpoint URL:"
        f' "{endpoint}/kalshi-f9"'
        " (the endpoint never answered: not tried again)"
    )
    assert (target.health.failures, target.health.up) == (1, False)
    assert [r.getMessage() for r in caplog.records if r.name == "kalshi.dedup.export"] == [
        "export to s3://kalshi-f9/ failing (not tried again): cannot list s3://kalshi-f9/raw/:"
        f' Could not connect to the endpoint URL: "{endpoint}/kalshi-f9"'
    ]


async def test_a_refusal_after_the_endpoint_answered_keeps_every_try(tmp_path: Path) -> None:
    server = S3Server(tmp_path / "s3")
    server.start()
    try:
        target = S3Target(server.config("kalshi-f9"), attempts=3, backoff=0.01)
        assert await target.keys("raw/") == []  # answered: the bucket made, empty
    finally:
        server.stop()
    with pytest.raises(ExportError) as caught:
        await target.keys("raw/")
    assert str(caught.value) == (
        "cannot list s3://kalshi-f9/raw/: Could not connect to the endpoint URL:"
        f' "{server.endpoint}/kalshi-f9?list-type=2&prefix=raw%2F&encoding-type=url"'
        " (gave up after 3 tries)"
    )
    assert (target.health.failures, target.health.up) == (3, False)
