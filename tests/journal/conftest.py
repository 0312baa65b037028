"""Journal fixtures: a real S3 server (SeaweedFS), started once per session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kalshi.testing.s3server import S3Server, find_weed


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    try:
        find_weed()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    data = Path(tempfile.mkdtemp(prefix="kalshi-s3-"))
    server = S3Server(data)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
