"""The one S3 client of each :class:`~kalshi.config.S3Config` (boto3, thread-safe) and the
errors an S3 call raises.

botocore's own retries (``standard`` mode: throttling, 5xx and connection errors, with
jittered backoff) and timeouts are on; callers add :func:`kalshi.retry.retry` for outages
longer than one call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kalshi.config import S3Config

__all__ = ["CONNECT_TIMEOUT", "READ_TIMEOUT", "S3_ATTEMPTS", "s3_client", "s3_errors"]

CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection to the S3 endpoint."""
READ_TIMEOUT = 60.0
"""Seconds to wait for any bytes of an answer."""
S3_ATTEMPTS = 3
"""Tries of one S3 request by botocore's ``standard`` retry mode (first one included)."""


@functools.cache
def s3_client(s3: S3Config, on_retry: Callable[[], None] | None = None) -> Any:
    """The boto3 S3 client for ``s3`` (built once per config and ``on_retry``; boto3 clients
    are thread-safe). ``on_retry`` is called for every request botocore tries again (a
    connection error, a throttle or a 5xx answer), so its retries are counted too. Raises
    ``botocore.exceptions.BotoCoreError`` on a bad endpoint."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint or None,
        aws_access_key_id=s3.access_key or None,
        aws_secret_access_key=s3.secret_key or None,
        region_name=s3.region,
        config=Config(
            retries={"mode": "standard", "max_attempts": S3_ATTEMPTS},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
        ),
    )
    if on_retry is not None:
        count = on_retry

        def counted(caught_exception: Exception | None = None, response: Any = None, **_: Any
                    ) -> None:  # fmt: skip
            status = response[0].status_code if response else 0
            if caught_exception is not None or status == 429 or status >= 500:
                count()

        client.meta.events.register("needs-retry.s3", counted)
    return client


def s3_errors() -> tuple[type[BaseException], ...]:
    """What an S3 call raises when it fails: boto3's and botocore's errors and ``OSError``
    (a local file). Imported lazily: boto3 is slow to import."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (Boto3Error, BotoCoreError, ClientError, OSError)
